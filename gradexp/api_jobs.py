"""The Python API's machinery (gradexp/api.py): overrides from Python values, Hydra's compose
API in a context of its own per call, sweeps expanded as Hydra's BasicSweeper expands them, each
job's .hydra/ files, and the log handlers a call adds for its length."""

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
from gradexp.errors import ExperimentError

log = logging.getLogger("gradexp")


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
        if not o.is_sweep_override():  # as Hydra's BasicSweeper writes it (progress=False)
            lists.append([f"{o.get_key_element()}={o.get_value_element_as_str()}"])
            continue
        key = o.get_key_element()
        try:
            lists.append([f"{key}={v}" for v in o.sweep_string_iterator()])
        except HydraException:  # interval(), glob(): a sweeper's search space, not a list
            raise ExperimentError(
                f"{o.input_line}: gradexp.sweep runs lists and range(…); an interval or glob "
                "needs a sweeper: run it with `python -m gradexp -m …`"
            ) from None
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


def run_dirs(configs: list[DictConfig], sweep_dir: Path, jobs: list[list[str]],
             command_line: list[str]) -> list[Path]:  # fmt: skip
    """Each job's directory, named as the CLI's launchers name it (gradexp/durable/jobdirs.py);
    where nothing is swept, by Hydra's own <num>_<override_dirname>."""
    from gradexp.durable.jobdirs import job_dirs
    from gradexp.vector.jobs import dirname, output_dir

    for cfg in configs:
        with open_dict(cfg):
            cfg.hydra.sweep.dir = str(sweep_dir)
    names = job_dirs(configs[0], jobs, 0, command_line=command_line)
    return [sweep_dir / name if name else Path(output_dir(cfg, i, dirname(overrides, cfg)))
            for i, (cfg, overrides, name) in enumerate(zip(configs, jobs, names))]  # fmt: skip


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


def sequential(configs, dirs, jobs) -> None:
    from gradexp import run
    from gradexp.vector.jobs import save

    for i, (cfg, run_dir, overrides) in enumerate(zip(configs, dirs, jobs)):
        task, choices, member = job(cfg, run_dir, i, overrides)
        save(member)
        done = run.main(task, run_dir, choices, member.overrides, dir_key="hydra.sweep.dir")
        stop_if_interrupted([done])


def vectorized_groups(configs, dirs, jobs) -> None:
    from gradexp.vector.jobs import plan, save
    from gradexp.vector.run import Job, run_group

    for idxs in plan(jobs):
        group = []
        for i in idxs:
            task, choices, member = job(configs[i], dirs[i], i, jobs[i])
            group.append(Job(task, dirs[i], choices, member.overrides, config_yaml=save(member)))
        stop_if_interrupted(run_group(group))


def stop_if_interrupted(summaries: list[dict]) -> None:
    """A Ctrl-C (a notebook's interrupt) stops the sweep, as it stops the CLI's: the jobs so
    far keep their checkpoints and logs, the rest do not start."""
    if any(s.get("status") == "interrupted" for s in summaries):
        raise KeyboardInterrupt


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
