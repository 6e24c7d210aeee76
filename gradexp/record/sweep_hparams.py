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
    from gradexp.study.runs import find, summary_of, tags_of

    found, _ = find([sweep_dir])
    summaries = {p: summary_of(p) for p in found if p != sweep_dir}
    runs = {p: s["hparams"] for p, s in summaries.items()
            if s is not None and isinstance(s.get("hparams"), dict)}  # fmt: skip
    if not runs:
        return None
    tags = [tags_of(p / "metrics.jsonl") for p in runs]
    common = sorted(set.intersection(*tags) - {"step", "time", "epoch"})
    for old in sweep_dir.glob("events.out.tfevents.*"):  # an earlier launch's record
        old.unlink()  # (a sweep root holds no run of its own: only these)
    events = EventFile(sweep_dir)
    events.add_summary(sessions.experiment(list(runs.values()), common))
    events.close()
    return events.path


class SweepHParams(Callback):
    """Hydra instantiates it at every start: it imports only Hydra until a sweep ends."""

    def on_multirun_end(self, config, **kwargs) -> None:
        from gradexp.durable.outdir import accepted

        sweep_dir = Path(str(config.hydra.sweep.dir))
        if sweep_dir.is_dir() and accepted(sweep_dir):  # Hydra 1.4 calls it after a refusal too
            write_experiment(sweep_dir)
