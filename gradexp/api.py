"""gradexp from Python (a notebook, a script): the CLI's configs, composed by Hydra's compose
API, trained in this process, read back as Runs.

    run = gradexp.experiment("optimizer=adam", "batch=full", epochs=50)
    runs = gradexp.sweep("optimizer.lr=0.01,0.1", "seed=range(3)")
    runs = gradexp.load("outputs/multirun/…")

Each call composes its configs inside its own `initialize_config_dir` context, so nothing of
Hydra's global state is left behind and it can be called again; the run's log lines go to
stderr (a notebook shows them under the cell) and to the run dir's gradexp.log."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import OmegaConf

from gradexp.api_jobs import (
    arguments,
    composed,
    expand,
    job,
    logging_to,
    refuse_used,
    run_dirs,  # fmt: skip
    sequential,
    vectorized_groups,
)
from gradexp.errors import ExperimentError
from gradexp.study.runs import Run, find
from gradexp.study.runs import load as load_run

__all__ = ["ExperimentError", "Runs", "experiment", "load", "sweep"]
log = logging.getLogger("gradexp")


def experiment(*overrides: str, **settings) -> Run:
    """Train one run, as `python -m gradexp OVERRIDES` would, and return it. Overrides are the
    CLI's strings; keyword settings are top-level keys (epochs=50, seed=1, max_steps=None).
    A bad value raises ExperimentError with the CLI's one line, before anything is written."""
    from gradexp import run
    from gradexp.vector.jobs import save

    given = arguments(overrides, settings)
    cfg = composed(given)
    if "MULTIRUN" in str(cfg.hydra.get("mode")) or cfg.hydra.sweeper.get("params"):
        raise ExperimentError(
            f"{' '.join(given)}: a sweep (hydra.mode=MULTIRUN or "
            "hydra.sweeper.params); run it with gradexp.sweep"
        )
    run_dir = Path(str(cfg.hydra.run.dir)).absolute()
    refuse_used(cfg, "hydra.run.dir", [run_dir], run_dir)
    task, choices, member = job(cfg, run_dir, 0, given)
    save(member)
    with logging_to(run_dir):
        summary = run.main(task, run_dir, choices, member.overrides)
    if summary.get("stop_reason") == "config_error":
        raise ExperimentError(summary["error"])
    return load_run(run_dir)


def sweep(*overrides: str, vectorized: bool | None = None, **settings) -> Runs:
    """Every combination of the sweep overrides (comma lists, range(...), as with -m), each
    job in its own directory <sweep dir>/<num>_<overrides>, one after another in this
    process; vectorized=True trains the jobs that differ only in numbers as one batched model
    (hydra/launcher=vectorized; None: as the config's launcher says). A preset
    (experiment=stability) runs its own grid and ends with its verdict (Runs.verdict, and
    verdict.json). A job that fails is a Run with status 'failed', as in a CLI sweep; a bad
    override raises ExperimentError before any job runs."""
    given = arguments(overrides, settings)
    jobs = expand(given)
    if not jobs:  # an empty sweep (seed=range(0)) runs nothing, as the CLI's
        return Runs()
    first = composed(jobs[0])
    params = first.hydra.sweeper.get("params") or {}
    if params:  # a preset's own sweep: first, then the call's overrides (as BasicSweeper does)
        mine = {o.partition("=")[0] for o in given}
        jobs = expand([*(f"{k}={v}" for k, v in params.items() if k not in mine), *given])
        first = composed(jobs[0])
    if first.get("verdict"):  # a preset's judge and settings, checked before anything runs
        from gradexp.presets import check_spec
        from gradexp.presets.judge import PRESETS

        spec = OmegaConf.to_container(first.verdict, resolve=True)
        if spec.get("name") not in PRESETS:
            raise ExperimentError(f"verdict.name={spec.get('name')}: no such judge; choose one "
                                  f"of {', '.join(PRESETS)}")  # fmt: skip
        if check_spec(spec):
            raise ExperimentError(check_spec(spec))
    if vectorized is None:  # as the config's launcher, or the preset's, says
        from gradexp.presets import command_line

        vectorized = "hydra/launcher=vectorized" in command_line(given) or str(
            first.hydra.launcher.get("_target_", "")).endswith("VectorizedLauncher")  # fmt: skip
    sweep_dir = Path(str(first.hydra.sweep.dir)).absolute()
    configs = [first, *(composed(j) for j in jobs[1:])]
    held = sorted(d for d in sweep_dir.iterdir() if d.is_dir()) if sweep_dir.is_dir() else []
    refuse_used(first, "hydra.sweep.dir", held, sweep_dir)
    dirs = run_dirs(configs, sweep_dir, jobs, given)
    with logging_to(sweep_dir):
        if vectorized:
            vectorized_groups(configs, dirs, jobs)
        else:
            sequential(configs, dirs, jobs)
        return finished(first, sweep_dir, dirs)


def finished(first, sweep_dir: Path, dirs: list[Path]) -> Runs:
    """The sweep's end, as the CLI's: the table (logged and summary.csv), the HParams record,
    the runs, and a preset's verdict (logged, verdict.json)."""
    from gradexp.record.sweep_hparams import write_experiment
    from gradexp.study.table import table, write

    log.info("%s\nsweep table: %s", table(write(sweep_dir)), sweep_dir / "summary.csv")
    write_experiment(sweep_dir)
    runs = Runs(load_run(d) or Run(d, {"status": "failed"}, {}) for d in dirs)
    runs.dir = sweep_dir
    if first.get("verdict"):
        from gradexp.presets.judge import judge, line

        try:
            runs.verdict = judge(sweep_dir, OmegaConf.to_container(first.verdict, resolve=True))
            log.info("%s", line(runs.verdict))
        except Exception as e:  # the runs stay the caller's; the judge's failure one line
            log.error("gradexp: verdict: %s: not computed (%s: %s)", first.verdict.get("name"),
                      type(e).__name__, e)  # fmt: skip
    return runs


class Runs(list):
    """A sweep's runs, in job order; .dir is the sweep dir, .verdict a preset's verdict."""

    dir: Path | None = None
    verdict: dict | None = None


def load(path: str | Path) -> Run | list[Run]:
    """A finished run back from disk (a run dir), or every run under a sweep dir (in job
    order). Raises ExperimentError for a path that holds no run."""
    path = Path(path)
    found, problems = find([path])
    if problems:
        raise ExperimentError(problems[0])
    runs = [r for r in map(load_run, found) if r is not None]
    if found == [path]:
        if not runs:
            raise ExperimentError(f"{path}: no summary.json yet (still running, or it died)")
        return runs[0]
    return runs
