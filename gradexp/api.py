"""gradexp from Python (a notebook, a script): the CLI's configs, composed by Hydra's compose
API, trained in this process, read back as Runs.

    run = gradexp.experiment("optimizer=adam", "batch=full", epochs=50)
    runs = gradexp.sweep("optimizer.lr=0.01,0.1", "seed=range(3)")
    runs = gradexp.load("outputs/multirun/…")

Each call composes its configs inside its own `initialize_config_dir` context, so nothing of
Hydra's global state is left behind and it can be called again; the run's log lines go to
stderr (a notebook shows them under the cell) and to the run dir's gradexp.log."""

from __future__ import annotations

import itertools
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from gradexp import CONF_DIR, VERSION_BASE
from gradexp.study.runs import Run, find
from gradexp.study.runs import load as load_run

log = logging.getLogger("gradexp")


class ExperimentError(ValueError):
    """Bad input to the Python API: the one line the CLI would print."""


def experiment(*overrides: str, **settings) -> Run:
    """Train one run, as `python -m gradexp OVERRIDES` would, and return it. Overrides are the
    CLI's strings; keyword settings are top-level keys (epochs=50, seed=1, max_steps=None).
    A bad value raises ExperimentError with the CLI's one line, before anything is written."""
    from gradexp import run
    from gradexp.vector.jobs import save

    given = arguments(overrides, settings)
    cfg = composed(given)
    run_dir = Path(str(cfg.hydra.run.dir)).absolute()
    refuse_used(cfg, "hydra.run.dir", [run_dir], run_dir)
    task, choices, member = job(cfg, run_dir, 0, given)
    save(member)
    with logging_to(run_dir):
        summary = run.main(task, run_dir, choices, member.overrides)
    if summary.get("stop_reason") == "config_error":
        raise ExperimentError(summary["error"])
    return load_run(run_dir)


def sweep(*overrides: str, vectorized: bool = False, **settings) -> list[Run]:
    """Every combination of the sweep overrides (comma lists, range(...), as with -m), each
    job in its own directory <sweep dir>/<num>_<overrides>, one after another in this
    process; vectorized=True trains the jobs that differ only in numbers as one batched model
    (hydra/launcher=vectorized). A job that fails is a Run with status 'failed', as in a CLI
    sweep; a bad override raises ExperimentError before any job runs."""
    given = arguments(overrides, settings)
    jobs = expand(given)
    first = composed(jobs[0])
    sweep_dir = Path(str(first.hydra.sweep.dir)).absolute()
    configs = [first, *(composed(j) for j in jobs[1:])]
    dirs = [run_dir_of(c, sweep_dir, i, j) for i, (c, j) in enumerate(zip(configs, jobs))]
    held = sorted(d for d in sweep_dir.iterdir() if d.is_dir()) if sweep_dir.is_dir() else []
    refuse_used(first, "hydra.sweep.dir", held, sweep_dir)
    with logging_to(sweep_dir):
        if vectorized:
            _vectorized(configs, dirs, jobs)
        else:
            _sequential(configs, dirs, jobs)
    from gradexp.study.table import table, write

    log.info("%s\nsweep table: %s", table(write(sweep_dir)), sweep_dir / "summary.csv")
    return [load_run(d) or Run(d, {"status": "failed"}, {}) for d in dirs]


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


def arguments(overrides: tuple, settings: dict) -> list[str]:
    for o in overrides:
        if not isinstance(o, str):
            raise ExperimentError(f"{o!r}: an override is a string such as 'optimizer=adam'")
    return [*overrides, *(f"{k}={value_text(v)}" for k, v in settings.items())]


def value_text(value) -> str:
    """A Python value as an override's value: None → null, True → true, [1, 2] → [1,2]."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | tuple):
        return "[" + ",".join(value_text(v) for v in value) + "]"
    return repr(value) if isinstance(value, float) else str(value)


def composed(overrides: list[str]) -> DictConfig:
    """The job's config with its hydra node, as Hydra composes it for the CLI."""
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), job_name="gradexp", **VERSION_BASE):
            return compose("config", overrides=list(overrides), return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as e:
        from gradexp.hydra_errors import one_line

        raise ExperimentError(one_line(e, list(overrides), CONF_DIR)) from None


def expand(overrides: list[str]) -> list[list[str]]:
    """The jobs of a sweep: the cartesian product of the sweep overrides' values, in order."""
    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException as e:
        from gradexp.hydra_errors import one_line

        raise ExperimentError(one_line(e, list(overrides), CONF_DIR)) from None
    lists = []
    for o in parsed:
        if o.is_sweep_override():
            key = o.get_key_element()
            lists.append([f"{key}={v}" for v in o.sweep_string_iterator()])
        else:  # as Hydra's BasicSweeper writes it (progress=false becomes progress=False)
            lists.append([f"{o.get_key_element()}={o.get_value_element_as_str()}"])
    return [list(combo) for combo in itertools.product(*lists)]


def refuse_used(cfg: DictConfig, key: str, dirs: list[Path], shown: Path) -> None:
    """Dirs that hold runs: refused in one line unless resume=true (emptied by overwrite=true),
    before anything is written into them, as the CLI does."""
    from gradexp.durable.outdir import fresh
    from gradexp.errors import ConfigError

    try:
        fresh(dirs, key, shown, cfg.get("resume") is True, cfg.get("overwrite") is True)
    except ConfigError as e:
        raise ExperimentError(str(e)) from None


def run_dir_of(cfg: DictConfig, sweep_dir: Path, idx: int, overrides: list[str]) -> Path:
    from gradexp.vector.jobs import dirname, output_dir

    with open_dict(cfg):
        cfg.hydra.sweep.dir = str(sweep_dir)
    return Path(output_dir(cfg, idx, dirname(overrides, cfg)))


def job(cfg: DictConfig, run_dir: Path, idx: int, overrides: list[str]):
    """The task config and choices of one job, its .hydra/ files written as Hydra's run_job
    writes them; returns (task config, choices, config text)."""
    from gradexp.vector.jobs import Member

    parsed = OverridesParser.create().parse_overrides(list(overrides))
    own = [o.input_line for o in parsed if not o.is_hydra_override()]
    hydra = OmegaConf.to_container(cfg.hydra, resolve=False, enum_to_str=True)
    hydra["job"]["num"], hydra["job"]["id"] = idx, str(idx)
    hydra["overrides"]["task"] = own
    hydra["overrides"]["hydra"] = [o.input_line for o in parsed if o.is_hydra_override()]
    hydra["runtime"]["output_dir"] = str(run_dir)
    task = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    choices = {k: v for k, v in hydra["runtime"]["choices"].items() if not k.startswith("hydra/")}
    return task, choices, Member(idx, own, task, hydra)


def _sequential(configs, dirs, jobs) -> None:
    from gradexp import run
    from gradexp.vector.jobs import save

    for i, (cfg, run_dir, overrides) in enumerate(zip(configs, dirs, jobs)):
        task, choices, member = job(cfg, run_dir, i, overrides)
        save(member)
        run.main(task, run_dir, choices, member.overrides, dir_key="hydra.sweep.dir")


def _vectorized(configs, dirs, jobs) -> None:
    from gradexp.vector.jobs import plan, save
    from gradexp.vector.run import Job, run_group

    for idxs in plan(jobs):
        group = []
        for i in idxs:
            task, choices, member = job(configs[i], dirs[i], i, jobs[i])
            group.append(Job(task, dirs[i], choices, member.overrides, config_yaml=save(member)))
        run_group(group)


@contextmanager
def logging_to(where: Path) -> Iterator[None]:
    """gradexp's log lines on stderr (unless a handler already shows them) and in
    <where>/gradexp.log, for the length of the call."""
    added = []
    if not log.handlers and not logging.getLogger().handlers:
        added.append(logging.StreamHandler(sys.stderr))
    where.mkdir(parents=True, exist_ok=True)
    file = logging.FileHandler(where / "gradexp.log", delay=True)
    file.setFormatter(logging.Formatter("[%(asctime)s][%(levelname)s] %(message)s"))
    added.append(file)
    level = log.level
    log.setLevel(logging.INFO)
    for handler in added:
        log.addHandler(handler)
    try:
        yield
    finally:
        for handler in added:
            log.removeHandler(handler)
            handler.close()
        log.setLevel(level)
