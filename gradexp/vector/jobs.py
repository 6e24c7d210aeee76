"""A sweep's jobs as Hydra hands them to hydra/launcher=vectorized: grouped by what they share
(jobs that differ only in member keys, the seed, the optimizer's and the schedule's numbers and
l2, form a group), one job per group composed by Hydra and the others derived from it by setting
their own values (tested equal to composing them), their .hydra/ files, their JobReturns."""

from __future__ import annotations

import copy
import logging
import os
import re
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus, configure_log
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

log = logging.getLogger("gradexp")
MEMBER_KEYS = {"seed", "l2"} | {f"optimizer.{k}" for k in (
    "lr", "momentum", "dampening", "betas", "eps", "weight_decay", "alpha", "lr_decay",
    "initial_accumulator_value")} | {f"schedule.{k}" for k in (
    "warmup_steps", "step_size", "gamma", "min_factor")}  # fmt: skip


def is_member(override) -> bool:
    """A plain key=value override of a member key with a number (or list of numbers) value."""
    if override.is_delete() or override.is_add() or override.is_force_add():
        return False
    value = override.value()
    numbers = value if isinstance(value, list) else [value]
    plain = all(isinstance(v, int | float) and not isinstance(v, bool) for v in numbers)
    return override.key_or_group in MEMBER_KEYS and plain


def plan(job_overrides) -> list[list[int]]:
    """The jobs (by index) of each group, in the order their first job comes."""
    parser = OverridesParser.create()
    groups: dict[tuple, list[int]] = {}
    for i, overrides in enumerate(job_overrides):
        parsed = parser.parse_overrides(list(overrides))
        fixed = tuple(sorted(o.input_line for o in parsed if not is_member(o)))
        keys = frozenset(o.key_or_group for o in parsed if is_member(o))
        groups.setdefault((fixed, keys), []).append(i)
    return list(groups.values())


def dirname(overrides, config: DictConfig) -> str:
    """hydra.job.override_dirname, as Hydra makes it from a job's own overrides."""
    spec = config.hydra.job.config.override_dirname
    parsed = OverridesParser.create().parse_overrides(list(overrides))
    kept = [o for o in parsed if not o.is_hydra_override()]
    lines = sorted(o.input_line for o in kept if o.key_or_group not in spec.exclude_keys)
    return re.sub("=", spec.kv_sep, spec.item_sep.join(lines))


def derive(base: DictConfig, overrides, idx: int) -> DictConfig:
    """Another member's config from its group's composed one: its own member values set as
    Hydra sets an override (OmegaConf.update with merge), its own overrides recorded."""
    config = copy.deepcopy(base)
    for o in OverridesParser.create().parse_overrides(list(overrides)):
        if is_member(o):
            OmegaConf.update(config, o.key_or_group, o.value(), merge=True)
    with open_dict(config.hydra):
        config.hydra.overrides.task = list(overrides)
        config.hydra.job.override_dirname = dirname(overrides, config)
    return numbered(config, idx)


def numbered(config: DictConfig, idx: int) -> DictConfig:
    with open_dict(config):
        config.hydra.job.id = idx
        config.hydra.job.num = idx
    subdir = str(OmegaConf.select(config, "hydra.sweep.subdir"))
    output = os.path.abspath(os.path.join(str(config.hydra.sweep.dir), subdir))
    with read_write(config.hydra.runtime), open_dict(config.hydra.runtime):
        config.hydra.runtime.output_dir = output
    return config


def save(config: DictConfig) -> tuple[DictConfig, DictConfig]:
    """.hydra/{config,hydra,overrides}.yaml in the job's directory, as Hydra's run_job writes
    them; the task config (without hydra) and the hydra config, for the job's JobReturn."""
    task = copy.deepcopy(config)
    with read_write(task), open_dict(task):
        del task["hydra"]
    hydra_cfg = OmegaConf.masked_copy(config, "hydra")
    out = Path(config.hydra.runtime.output_dir) / str(config.hydra.output_subdir)
    out.mkdir(parents=True, exist_ok=True)
    for name, node in (("config", task), ("hydra", hydra_cfg),
                       ("overrides", config.hydra.overrides.task)):  # fmt: skip
        (out / f"{name}.yaml").write_text(OmegaConf.to_yaml(node))
    return task, hydra_cfg


def console_logging(config: DictConfig) -> None:
    """Hydra's job logging without its per-job file (each member writes its own gradexp.log)."""
    logging_cfg = copy.deepcopy(config.hydra.job_logging)
    with open_dict(logging_cfg):
        logging_cfg.handlers.pop("file", None)
        logging_cfg.root.handlers = [h for h in logging_cfg.root.handlers if h != "file"]
    configure_log(logging_cfg, config.hydra.verbose)


def job_return(overrides, task: DictConfig, hydra_cfg: DictConfig, summary: dict) -> JobReturn:
    ret = JobReturn(overrides=list(overrides), cfg=task, hydra_cfg=hydra_cfg,
                    working_dir=os.getcwd(), task_name="gradexp")  # fmt: skip
    ret.status = JobStatus.COMPLETED
    ret.return_value = summary["objective"]
    return ret
