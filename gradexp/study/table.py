"""End of a sweep: a table of all jobs, printed and saved as summary.csv, and the exit status."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

COLUMNS = (
    "job",
    "overrides",
    "status",
    "steps",
    "train_loss",
    "eval_loss",
    "eval_accuracy",
    "wall_time_s",
    "message",
)


def collect(sweep_dir: Path) -> list[dict]:
    """One row per job directory; a job that left no summary.json counts as failed."""
    rows = []
    jobs = [d for d in sweep_dir.iterdir() if (d / ".hydra").is_dir()]
    for job in sorted(jobs, key=lambda d: (len(d.name.split("_")[0]), d.name)):
        file = job / "summary.json"
        s = json.loads(file.read_text()) if file.is_file() else {}
        final = s.get("final", {})
        rows.append({
            "job": job.name.split("_")[0],
            "overrides": " ".join(s.get("overrides", [])) or job.name,
            "status": s.get("status", "failed"),
            "steps": s.get("steps", ""),
            "train_loss": final.get("train/loss", ""),
            "eval_loss": final.get("eval/loss", ""),
            "eval_accuracy": final.get("eval/accuracy", ""),
            "wall_time_s": s.get("wall_time_s", ""),
            "message": s.get("message") or s.get("error") or ("" if s else "no summary.json: died"),
        })  # fmt: skip
    return rows


def table(rows: list[dict]) -> str:
    def fmt(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    shown = [c for c in COLUMNS if c != "message"]
    cells = [[fmt(r[c]) for c in shown] for r in rows]
    widths = [max([len(c), *(len(x[i]) for x in cells)]) for i, c in enumerate(shown)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(shown, widths))]
    lines += ["  ".join(x.ljust(w) for x, w in zip(cell, widths)) for cell in cells]
    lines += [f"job {r['job']}: {r['message']}" for r in rows if r["status"] == "failed"]
    return "\n".join(lines)


def write(sweep_dir: Path) -> list[dict]:
    """The sweep's rows, also written as summary.csv in the sweep dir."""
    rows = collect(sweep_dir)
    with (sweep_dir / "summary.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return rows


class SweepTable(Callback):
    """Prints and saves the sweep's table; exit status 1 if a job failed other than by diverging."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        from gradexp.durable.outdir import accepted

        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir() or not accepted(sweep_dir):  # refused at its start
            return
        if not collect(sweep_dir):  # no job was launched (a launcher refused its settings)
            return
        rows = write(sweep_dir)
        # Printed, not logged: after the jobs, logging in this process is Hydra's, not a job's.
        print(f"\n{table(rows)}\n\nsweep table: {sweep_dir / 'summary.csv'}")
        print(f"tensorboard --logdir {sweep_dir}", flush=True)
        # Interrupted and not-started jobs are not failures: the signal's own exit status
        # stands (Hydra 1.4 runs this callback while that SystemExit is on its way out).
        stopped = ("ok", "diverged", "interrupted", "not_started")
        failed = [r["job"] for r in rows if r["status"] not in stopped]
        if failed:
            print(f"gradexp: {len(failed)} of {len(rows)} jobs failed: {', '.join(failed)}",
                  file=sys.stderr)  # fmt: skip
            _failed.add(str(sweep_dir.absolute()))  # SweepExit, the last to end, exits 1


_failed: set[str] = set()


class SweepExit(Callback):
    """First in the callbacks, so the last to end: exit status 1 if a job failed (other than by
    diverging), once every other end-of-sweep callback (a preset's verdict) has run. At the
    start it forgets what an earlier sweep into the same dir in this process left."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        from gradexp.durable.outdir import forget

        sweep_dir = Path(str(config.hydra.sweep.dir)).absolute()
        _failed.discard(str(sweep_dir))
        forget(sweep_dir)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        if str(Path(str(config.hydra.sweep.dir)).absolute()) in _failed:
            raise SystemExit(1)
