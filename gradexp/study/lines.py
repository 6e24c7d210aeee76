"""A sweep's progress on the console: one line per finished job, from its summary.json,
`job 7/32 ok · eval loss 0.081 · 2.1 s · ETA 40 s`. Plain data in, a string out (no torch).
The ETA is the mean wall time per finished job times the jobs left."""

from __future__ import annotations

import json
from pathlib import Path


def read_summary(run_dir: Path) -> dict:
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return {}
    return summary if isinstance(summary, dict) else {}


def job_line(summary: dict, number: int, total: int | None, eta_s: float | None,
             skipped: bool = False) -> str:  # fmt: skip
    """The line for job `number` (1-based) of `total` (None: not known), with the ETA of the
    jobs still to run (None or 0: none left); skipped: it had finished before (resume=true)."""
    final = summary.get("final", {})
    head = f"job {number}/{total}" if total else f"job {number}"
    status = summary.get("status", "failed")
    parts = [f"{head} skipped (finished before: {status})" if skipped else f"{head} {status}"]
    for tag, name in (("eval/loss", "eval loss"), ("train/loss", "train loss")):
        value = final.get(tag)
        if isinstance(value, int | float):
            parts.append(f"{name} {value:.4g}")
            break
    resumed = summary.get("resumed_from")
    if isinstance(resumed, dict) and "step" in resumed:
        parts.append(f"resumed at step {resumed['step']}")
    if summary.get("status") == "failed" and summary.get("error"):
        parts.append(str(summary["error"]))
    if isinstance(summary.get("wall_time_s"), int | float):
        parts.append(f"{summary['wall_time_s']:.1f} s")
    if eta_s:
        parts.append(f"ETA {eta_s:.0f} s")
    return " · ".join(str(p) for p in parts)


def sweep_size(config, known: int) -> int | None:
    """A sweep's number of jobs: Optuna's n_trials where it asks in batches; else the jobs
    launched so far (the basic sweeper launches all of them in one batch)."""
    trials = config.hydra.sweeper.get("n_trials")
    return int(trials) if isinstance(trials, int) else known


def written_before(run_dir: Path, since: float) -> bool:
    """Whether the job's summary.json predates `since`: a finished job a resume skipped."""
    try:
        return (run_dir / "summary.json").stat().st_mtime < since
    except OSError:
        return False
