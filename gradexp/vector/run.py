"""A group of jobs trained as one: each job gets the files and the summary its own run would
(summary.json, metrics.jsonl, an event file with the same tags, model.pt of its own state_dict).
A member refused for its config fails alone, in one line; the rest train on."""

from __future__ import annotations

import logging
import math
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from gradexp import run as single
from gradexp.durable import resume
from gradexp.durable.outdir import UsedRunDir, fresh, writable
from gradexp.durable.signals import StopSignals
from gradexp.errors import ConfigError
from gradexp.experiment import Experiment, build, build_member
from gradexp.knobs import check_overrides
from gradexp.knobs import threads as knob_threads
from gradexp.record.logger import Logger
from gradexp.runtime import available_bytes, defer_dynamo, threads
from gradexp.summary import hparams, summarise
from gradexp.vector.members import stack, unsupported
from gradexp.vector.record import GroupRecord
from gradexp.vector.train import train_group

log = logging.getLogger("gradexp")


@dataclass
class Job:
    """One job of a sweep: its composed config, its directory, its group choices, overrides."""

    cfg: DictConfig
    run_dir: Path
    choices: dict
    overrides: list[str]
    summary: dict | None = field(default=None)


def run_group(jobs: list[Job], dir_key: str = "hydra.sweep.dir",
              max_members: int | None = None) -> list[dict]:  # fmt: skip
    """Every job's summary (also on disk), trained as one batched model where they can be (in
    pieces of at most max_members; None: as many as half the free memory holds), one after
    another where they cannot (said once, with the reason). Never raises but for a group that
    cannot fit even one member (a ConfigError naming hydra.launcher.max_members)."""
    started = time.time()
    defer_dynamo()
    interrupt = StopSignals()
    with interrupt, threads(knob_threads(jobs[0].cfg)):
        kept, exps = [], []
        for job in jobs:
            exp = prepare(job, dir_key, exps[0] if exps else None, started, interrupt)
            if exp is not None:
                kept.append(job)
                exps.append(exp)
        why = unsupported(exps[0], kept[0].cfg) if exps else None
        if why:
            log.info("gradexp: %d jobs one after another, not as one model: %s", len(kept), why)
            for job in kept:
                job.summary = single.main(job.cfg, job.run_dir, job.choices, job.overrides,
                                          dir_key)  # fmt: skip
        elif exps:
            for part in pieces(kept, exps, max_members or fitting(exps[0])):
                train(*part, started, interrupt)
    return [job.summary for job in jobs]


def pieces(jobs: list[Job], exps: list[Experiment], size: int):
    """The members split where their L2 terms differ in kind (λ = 0 logs no train/l2), then
    into pieces of at most `size`."""
    kinds: dict[bool, list[int]] = {}
    for i, exp in enumerate(exps):
        kinds.setdefault(exp.knobs.l2 != 0, []).append(i)
    for part in kinds.values():
        for a in range(0, len(part), size):
            chosen = part[a : a + size]
            yield [jobs[i] for i in chosen], [exps[i] for i in chosen]


def fitting(exp: Experiment) -> int:
    """How many members fit in half the memory free on the run's device: parameters,
    gradients and two optimizer moments, the widest activations of a batch (forward and
    backward) and of an evaluation chunk."""
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


def prepare(job: Job, dir_key: str, base: Experiment | None, started, interrupt):
    """The job's experiment, or None with its summary set (refused, or finished before)."""
    cfg = job.cfg
    if cfg.get("resume") is True and (done := resume.finished(job.run_dir)):
        log.info("gradexp: %s already finished (%s): skipped", job.run_dir, done["status"])
        job.summary = done | {"objective": float(done.get("objective", math.inf))}
        return None
    facts = {
        "run_dir": str(job.run_dir),
        "overrides": list(job.overrides),
        "choices": {k: v for k, v in job.choices.items() if not k.startswith("hydra/")},
    }
    try:
        fresh([job.run_dir], dir_key, job.run_dir, cfg.resume is True,
              cfg.get("overwrite") is True)  # fmt: skip
        writable(job.run_dir)
        check_overrides(cfg, job.overrides, job.choices)
        return build(cfg, job.choices) if base is None else build_member(cfg, job.choices, base)
    except ConfigError as e:
        log.error("gradexp: error: %s (%s)", e, job.run_dir.name)
        job.summary = facts | {"status": "failed", "stop_reason": "config_error", "error": str(e)}
        if isinstance(e, UsedRunDir):
            job.summary["objective"] = math.inf
        else:
            single.finish(job.summary, job.run_dir, started, interrupt)
        return None


def train(jobs: list[Job], exps: list[Experiment], started: float, interrupt) -> None:
    """Stack, train, and write each member's files and summary."""
    loggers = []
    try:
        group = stack(exps, [job.cfg.seed for job in jobs])
        loggers = [Logger(job.run_dir) for job in jobs]
        histories = [e.history(lg) for e, lg in zip(exps, loggers)]
        for k, (job, exp, lg) in enumerate(zip(jobs, exps, loggers)):
            lg.text("config", "    " + OmegaConf.to_yaml(job.cfg).replace("\n", "\n    "))
            with member_log(job.run_dir, quiet=True):
                log.info("%s · member %d of %d trained as one model", exp.title, k + 1,
                         len(jobs))  # fmt: skip
        log.info("%s · %d members as one model", exps[0].title, len(exps))
        outcomes = train_group(group, GroupRecord(histories), exps[0].plan(), interrupt=interrupt)
    except Exception as e:  # a crash fails every member, each with the traceback
        for lg in loggers:
            lg.close()
        for job in jobs:
            resume.safe_write(Path.write_text, job.run_dir / "traceback.txt",
                              traceback.format_exc())  # fmt: skip
            job.summary = {"run_dir": str(job.run_dir), "overrides": list(job.overrides),
                           "status": "failed", "stop_reason": "error",
                           "error": f"{type(e).__name__}: {e}"}  # fmt: skip
            single.finish(job.summary, job.run_dir, started, interrupt)
        log.error("gradexp: group failed: %s: %s", type(e).__name__, e)
        return
    elapsed = histories[0].elapsed()
    for k, (job, exp, lg, history, outcome) in enumerate(
        zip(jobs, exps, loggers, histories, outcomes)
    ):
        lg.hparams(hparams(exp.config, job.choices, job.overrides), outcome.status)
        lg.close()
        torch.save(group.stack.member(k), job.run_dir / "model.pt")
        knobs = exp.knobs
        summary = summarise(outcome, history, exp.data, knobs.device, knobs.dtype)
        summary |= {"elapsed_s": round(elapsed, 3), "warnings": history.warnings,
                    "vectorized": {"members": len(jobs), "member": k}}  # fmt: skip
        facts = {
            "run_dir": str(job.run_dir),
            "overrides": list(job.overrides),
            "choices": {c: v for c, v in job.choices.items() if not c.startswith("hydra/")},
        }
        with member_log(job.run_dir):
            job.summary = single.finish(facts | summary, job.run_dir, started, interrupt)


@contextmanager
def member_log(run_dir: Path, quiet: bool = False):
    """What is logged meanwhile also goes to the member's own gradexp.log (as Hydra's job
    logging writes a sequential job's); quiet: to that file only."""
    handler = logging.FileHandler(run_dir / "gradexp.log")
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(levelname)s] %(message)s"))
    log.addHandler(handler)
    propagate, log.propagate = log.propagate, not quiet and log.propagate
    try:
        yield
    finally:
        log.propagate = propagate
        log.removeHandler(handler)
        handler.close()
