"""hydra/launcher=vectorized's launch: the sweeper's batch run group by group (compose one job,
derive its group's others, write every job's .hydra/, size the groups to the memory, train each
as one model)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import torch
from hydra.core.utils import JobReturn, configure_log, setup_globals
from omegaconf import DictConfig

from gradexp.errors import ConfigError
from gradexp.experiment import build
from gradexp.runtime import available_bytes
from gradexp.vector.jobs import console_logging, derive, job_return, numbered, plan, save
from gradexp.vector.run import Job, run_group

log = logging.getLogger("gradexp")


def launch(launcher, job_overrides, initial_job_idx: int) -> list[JobReturn]:
    """Hydra's Launcher.launch: one JobReturn per job, in the sweeper's order."""
    setup_globals()
    configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)
    Path(str(launcher.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
    if launcher.max_members is not None and (
        isinstance(launcher.max_members, bool) or not isinstance(launcher.max_members, int)
        or launcher.max_members < 1):  # fmt: skip
        fail(ConfigError("hydra.launcher.max_members", launcher.max_members,
                         "must be an integer ≥ 1, or null to size groups by memory"))  # fmt: skip
    try:
        return run_groups(launcher, list(job_overrides), initial_job_idx)
    except ConfigError as e:
        fail(e)


def fail(error: ConfigError):
    print(f"gradexp: error: {error}", file=sys.stderr)
    raise SystemExit(2)


def run_groups(launcher, job_overrides: list, first_idx: int) -> list:
    from hydra_plugins.gradexp_launchers.inprocess import compose_job

    returns = [None] * len(job_overrides)
    for members in plan(job_overrides):
        head = members[0]
        composed = compose_job(launcher.hydra_context, launcher.config, job_overrides[head],
                               first_idx + head)  # fmt: skip
        base = numbered(composed, first_idx + head)
        configs = {head: base} | {i: derive(base, job_overrides[i], first_idx + i)
                                  for i in members[1:]}  # fmt: skip
        console_logging(base)
        saved = {i: save(c) for i, c in configs.items()}
        for chunk in chunks(members, configs, launcher.max_members):
            jobs = [Job(configs[i], Path(configs[i].hydra.runtime.output_dir),
                        dict(configs[i].hydra.runtime.choices), list(job_overrides[i]))
                    for i in chunk]  # fmt: skip
            for i, summary in zip(chunk, run_group(jobs)):
                returns[i] = job_return(job_overrides[i], *saved[i], summary)
            stopped = [r for i, r in zip(chunk, jobs) if r.summary.get("status") == "interrupted"]
            if stopped:  # the user asked everything to stop, as a single job's SIGTERM does
                raise SystemExit(stopped[0].summary.get("exit_code", 130))
    return returns


def chunks(members: list[int], configs: dict[int, DictConfig], limit: int | None):
    """The group split where members' L2 terms differ in kind (λ = 0 logs no train/l2) and
    into pieces of at most `limit` members (null: as many as half the free memory holds)."""
    parts: dict[bool, list[int]] = {}
    for i in members:
        l2 = configs[i].get("l2")
        parts.setdefault(isinstance(l2, int | float) and l2 != 0, []).append(i)
    for part in parts.values():
        size = limit or fitting(configs[part[0]])
        for a in range(0, len(part), size):
            yield part[a : a + size]


def fitting(config: DictConfig) -> int:
    """How many members fit in half the memory free on the run's device: parameters,
    gradients and two optimizer moments, the widest activations of a batch (forward and
    backward), and of an evaluation chunk. A config refused here fails in its group."""
    try:
        exp = build(config, dict(config.hydra.runtime.choices))
    except ConfigError:
        return 1 << 30  # every member of the group says why, in its own summary
    size = torch.finfo(exp.knobs.dtype).bits // 8
    params = sum(p.numel() for p in exp.model.parameters())
    widths = [p.shape[0] for n, p in exp.model.named_parameters() if n.endswith("weight")] or [1]
    batch = exp.batches.size * exp.batches.accumulate
    rows = min(8192, max(exp.data.n_train, len(exp.data.x_eval)))
    per_member = size * (4 * params + 4 * batch * sum(widths) + 2 * rows * max(widths))
    budget = available_bytes(exp.knobs.device) // 2
    if per_member > budget:
        raise ConfigError("hydra.launcher.max_members", "null", f"one member needs "
                          f"{per_member / 1e9:.3g} GB, more than half the {2 * budget / 1e9:.3g}"
                          f" GB free on {exp.knobs.device}")  # fmt: skip
    return max(1, min(4096, budget // per_member))
