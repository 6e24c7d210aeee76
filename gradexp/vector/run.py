"""A group of jobs trained as one: each job gets the files and the summary its own run would
(summary.json, metrics.jsonl, an event file with the same tags, model.pt of its own state_dict).
A member refused for its config fails alone, in one line; the rest train on."""

from __future__ import annotations

import logging
import math
import signal
import time
import traceback
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from gradexp import run as single
from gradexp.build import Experiment, build, build_member
from gradexp.durable import resume
from gradexp.durable.outdir import UsedRunDir, fresh, writable
from gradexp.durable.signals import StopSignals
from gradexp.errors import ConfigError
from gradexp.knobs import check_overrides
from gradexp.knobs import threads as knob_threads
from gradexp.record.progress import check_environment, progress_bar
from gradexp.runtime import defer_dynamo, keep_heap, threads
from gradexp.summary import hparams, summarise
from gradexp.vector.checkpoint import GroupCheckpointer, restore
from gradexp.vector.logs import member_log, open_logs
from gradexp.vector.members import fitting, stack, unsupported
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
    saved: dict | None = field(default=None)  # the checkpoint it resumes from
    config_yaml: str | None = field(default=None)  # cfg as YAML, when the launcher has it
    model: int | None = field(default=None)  # which batched model of the group trained it


def run_group(jobs: list[Job], dir_key: str = "hydra.sweep.dir",
              max_members: int | None = None) -> list[dict]:  # fmt: skip
    """Every job's summary (also on disk), trained as one batched model where they can be (in
    pieces of at most max_members; None: as many as half the free memory holds), one after
    another where they cannot (said once, with the reason). Never raises but for a group that
    cannot fit even one member (a ConfigError naming hydra.launcher.max_members)."""
    started = time.time()
    defer_dynamo()
    keep_heap()
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
            log.warning("gradexp: %d jobs one after another, not as one model: %s", len(kept), why)
            for job in kept:
                if interrupt.received:
                    job.summary = not_started(job, interrupt)
                    continue
                job.summary = single.main(job.cfg, job.run_dir, job.choices, job.overrides,
                                          dir_key)  # fmt: skip
                if job.summary.get("stop_reason") == "signal":
                    interrupt.received = signal.Signals(job.summary["exit_code"] - 128)
        elif exps:
            for part in pieces(kept, exps, max_members or fitting(exps[0])):
                if interrupt.received:  # asked to stop: the rest are not started (no files)
                    for job in part[0]:
                        job.summary = not_started(job, interrupt)
                    continue
                train(*part, started, interrupt, dir_key, probes=exps[0].probes)
    return [job.summary for job in jobs]


def pieces(jobs: list[Job], exps: list[Experiment], size: int):
    """The members split where their L2 terms differ in kind (λ = 0 logs no train/l2) or they
    resume from different steps (a crash between two members' checkpoints), then into pieces of
    at most `size`."""
    kinds: dict[tuple, list[int]] = {}
    for i, (job, exp) in enumerate(zip(jobs, exps)):
        at = job.saved["position"]["step"] if job.saved else 0
        kinds.setdefault((exp.knobs.l2 != 0, at), []).append(i)
    for part in kinds.values():
        for a in range(0, len(part), size):
            chosen = part[a : a + size]
            yield [jobs[i] for i in chosen], [exps[i] for i in chosen]


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
        if cfg.progress and base is None:
            check_environment()
        exp = build(cfg, job.choices) if base is None else build_member(cfg, job.choices, base)
        if cfg.resume is True:
            job.saved = resume.latest(job.run_dir, exp.config, exp.model, vector=True)
        return exp
    except ConfigError as e:
        log.error("gradexp: error: %s (%s)", e, job.run_dir.name)
        job.summary = facts | {"status": "failed", "stop_reason": "config_error", "error": str(e)}
        if isinstance(e, UsedRunDir):
            job.summary["objective"] = math.inf
        else:
            single.finish(job.summary, job.run_dir, started, interrupt, dir_key)
        return None


def crashed(jobs: list[Job], e: Exception, started: float, interrupt, dir_key: str) -> None:
    """Every member of a piece that crashed fails, each with the traceback."""
    for job in jobs:
        job.model = None  # not "trained as one batched model": the console says failed
        resume.safe_write(Path.write_text, job.run_dir / "traceback.txt",
                          traceback.format_exc())  # fmt: skip
        job.summary = {"run_dir": str(job.run_dir), "overrides": list(job.overrides),
                       "status": "failed", "stop_reason": "error",
                       "error": f"{type(e).__name__}: {e}"}  # fmt: skip
        single.finish(job.summary, job.run_dir, started, interrupt, dir_key)
    log.error("gradexp: group failed: %s: %s", type(e).__name__, e)


def not_started(job: Job, interrupt: StopSignals) -> dict:
    return {"run_dir": str(job.run_dir), "overrides": list(job.overrides),
            "status": "interrupted", "stop_reason": "signal", "objective": math.inf,
            "exit_code": interrupt.exit_code,
            "message": f"not started: {interrupt.name} came first"}  # fmt: skip


def train(jobs: list[Job], exps: list[Experiment], started: float, interrupt,
          dir_key: str, probes: list | None = None) -> None:  # fmt: skip
    """Stack, restore (resume=true), train, and write each member's files and summary."""
    loggers, record = [], None
    for job in jobs:
        job.model = id(jobs[0])  # the piece's first Job lives as long as the sweep: a unique key
    try:
        group = stack(exps, [job.cfg.seed for job in jobs], probes)
        histories = [e.history(sink=None) for e in exps]
        start = restore(group, [j.saved for j in jobs], histories) if jobs[0].saved else None
        texts = [j.config_yaml or OmegaConf.to_yaml(j.cfg) for j in jobs]
        loggers = [
            open_logs(j.run_dir, j.cfg.resume is True, j.saved, text)
            for j, text in zip(jobs, texts)
        ]  # after restore: a refusal keeps the logs
        for history, lg in zip(histories, loggers):
            history.sink = lg
        for k, (job, exp) in enumerate(zip(jobs, exps)):
            with member_log(job.run_dir, quiet=True):
                log.info("%s · member %d of %d trained as one model", exp.title, k + 1,
                         len(jobs))  # fmt: skip
        log.info("%s · %d member%s as one model%s", exps[0].title, len(exps),
                 "s" if len(exps) > 1 else "",
                 f", resumed at step {start.step}" if start else "")  # fmt: skip
        saver = GroupCheckpointer(jobs[0].cfg.checkpoint_every, group, jobs, exps, histories,
                                  loggers)  # fmt: skip
        record = GroupRecord(histories)
        with progress_bar(exps[0].total, jobs[0].cfg.progress) as bar:  # one bar for the group
            outcomes = train_group(group, record, exps[0].plan(), checkpoint=saver, start=start,
                                   interrupt=interrupt, progress=bar)  # fmt: skip
    except Exception as e:  # a crash fails every member, each with the traceback
        if record is not None:  # what was measured before the crash is kept, as one run's is
            with suppress(Exception):
                record.flush()
        for lg in loggers:
            lg.close()
        crashed(jobs, e, started, interrupt, dir_key)
        return
    elapsed = histories[0].elapsed()
    resumed = {"step": start.step} if start else None
    for k, (job, exp, lg, history, outcome) in enumerate(
        zip(jobs, exps, loggers, histories, outcomes)
    ):
        hp = hparams(exp.config, job.choices, job.overrides)
        lg.hparams(hp, outcome.status)
        lg.close()
        torch.save(group.stack.member(k), job.run_dir / "model.pt")
        knobs = exp.knobs
        summary = summarise(outcome, history, exp.data, knobs.device, knobs.dtype)
        summary |= {"elapsed_s": round(elapsed, 3), "warnings": history.warnings,
                    "hparams": hp, "vectorized": {"members": len(jobs), "member": k}}  # fmt: skip
        if resumed:
            summary["resumed_from"] = resumed | {"checkpoint": job.saved["path"]}
        facts = {
            "run_dir": str(job.run_dir),
            "overrides": list(job.overrides),
            "choices": {c: v for c, v in job.choices.items() if not c.startswith("hydra/")},
        }
        with member_log(job.run_dir):
            # One line for a group stopped by a signal, not one per member.
            say = k == 0 or outcome.stop_reason != "signal"
            job.summary = single.finish(facts | summary, job.run_dir, started, interrupt,
                                        dir_key, say)  # fmt: skip
