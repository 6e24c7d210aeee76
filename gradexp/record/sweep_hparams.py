"""At the end of a sweep: one HParams experiment at the sweep root (gradexp/record/hparams.py)
built from every job's summary.json and metrics.jsonl, so that TensorBoard's HPARAMS tab shows
the final eval loss, eval accuracy and train loss first and keeps every run in its parallel
coordinates view."""

from __future__ import annotations

from pathlib import Path

from hydra.experimental.callback import Callback


def write_experiment(sweep_dir: Path) -> Path | None:
    """The experiment's event file in sweep_dir (None: no finished job to describe)."""
    from gradexp.record import hparams as sessions  # TensorBoard's protos: only at the end
    from gradexp.record.events import EventFile
    from gradexp.study.runs import find, load

    found, _ = find([sweep_dir])
    runs = [r for r in map(load, (p for p in found if p != sweep_dir)) if r is not None]
    runs = [r for r in runs if isinstance(r.summary.get("hparams"), dict)]
    if not runs:
        return None
    tags = [set().union(*(p.keys() for p in r.points), *(e.keys() for e in r.epochs))
            for r in runs]  # fmt: skip
    common = sorted(set.intersection(*tags) - {"step", "time", "epoch"})
    for old in sweep_dir.glob("events.out.tfevents.*"):  # an earlier launch's record
        old.unlink()  # (a sweep root holds no run of its own: only these)
    events = EventFile(sweep_dir)
    events.add_summary(sessions.experiment([r.summary["hparams"] for r in runs], common))
    events.close()
    return events.path


class SweepHParams(Callback):
    """Hydra instantiates it at every start: it imports only Hydra until a sweep ends."""

    def on_multirun_end(self, config, **kwargs) -> None:
        from gradexp.durable.outdir import accepted

        sweep_dir = Path(str(config.hydra.sweep.dir))
        if sweep_dir.is_dir() and accepted(sweep_dir):  # Hydra 1.4 calls it after a refusal too
            write_experiment(sweep_dir)
