"""One run from a composed config: build, resume, train, summarise; summary.json in any case."""

from __future__ import annotations

import logging
import math
import os
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from gradexp.build import Experiment, build
from gradexp.durable import resume
from gradexp.durable.checkpoint import Checkpointer, restore
from gradexp.durable.outdir import UsedRunDir, fresh, writable
from gradexp.durable.signals import StopSignals
from gradexp.errors import ConfigError
from gradexp.knobs import check_overrides
from gradexp.knobs import threads as knob_threads
from gradexp.record.logger import Logger, rewind, write_summary
from gradexp.record.progress import check_environment, progress_bar
from gradexp.runtime import defer_dynamo, keep_heap, threads
from gradexp.summary import hparams, objective, one_line, shown_path, summarise

log = logging.getLogger("gradexp")


def main(cfg: DictConfig, run_dir: Path, choices: dict, overrides: list[str],
         dir_key: str = "hydra.run.dir") -> dict:  # fmt: skip
    """Run one experiment and leave summary.json, whatever happens (but in a directory that
    holds another run, which is refused and left as it was). Never raises."""
    choices = {k: v for k, v in choices.items() if not k.startswith("hydra/")}
    base = {"run_dir": str(run_dir), "overrides": list(overrides), "choices": choices}
    if cfg.get("resume") is True and (done := resume.finished(run_dir)):
        log.info("gradexp: %s already finished (%s): skipped", run_dir, done["status"])
        return done | {"objective": float(done.get("objective", math.inf))}
    started = time.time()
    interrupt = StopSignals()
    defer_dynamo()  # torch's compiler: not imported by a run that compiles nothing
    keep_heap()  # big per-step temporaries reuse the heap instead of fresh mmaps
    try:
        with interrupt, deterministic(cfg.get("deterministic") is True), threads(knob_threads(cfg)):
            fresh([run_dir], dir_key, run_dir, cfg.resume is True, cfg.get("overwrite") is True)
            writable(run_dir)
            summary = base | run(cfg, run_dir, choices, overrides, interrupt)
    except ConfigError as e:
        log.error("gradexp: error: %s", e)
        summary = base | {"status": "failed", "stop_reason": "config_error", "error": str(e)}
        if isinstance(e, UsedRunDir):  # the other run's summary.json stays
            return summary | {"objective": math.inf}
    except KeyboardInterrupt:
        log.error("gradexp: interrupted; logs flushed in %s", run_dir)
        summary = base | {"status": "interrupted", "stop_reason": "interrupt", "exit_code": 130}
    except Exception as e:
        resume.safe_write(Path.write_text, run_dir / "traceback.txt", traceback.format_exc())
        log.error("gradexp: failed: %s: %s (traceback in %s)", type(e).__name__, e, run_dir)
        summary = base | {
            "status": "failed",
            "stop_reason": "error",
            "error": f"{type(e).__name__}: {e}",
        }
    return finish(summary, run_dir, started, interrupt, dir_key)


def run(
    cfg: DictConfig, run_dir: Path, choices: dict, overrides: list[str], interrupt=None
) -> dict:
    """Build everything from the config, train, and return the summary (also on disk)."""
    check_overrides(cfg, overrides, choices)
    if cfg.progress:
        check_environment()
    exp = build(cfg, choices)
    saved = resume.latest(run_dir, exp.config, exp.model) if cfg.resume else None
    history, start = exp.history(sink=None), None
    if saved:  # everything restored (or the checkpoint refused) before a log file is touched
        start = restore(saved, model=exp.model, optimizer=exp.optimizer, scheduler=exp.scheduler,
                        batches=exp.batches, history=history, probes=exp.probes)  # fmt: skip
    if cfg.resume:
        rewind(run_dir, saved["logs"] if saved else {})  # what came after the checkpoint goes
    logger = Logger(run_dir, purge_step=saved["position"]["step"] + 1 if saved else None)
    history.sink = logger
    saver = Checkpointer(run_dir, cfg.checkpoint_every, model=exp.model, optimizer=exp.optimizer,
                         scheduler=exp.scheduler, batches=exp.batches, history=history,
                         logger=logger, config=exp.config, probes=exp.probes)  # fmt: skip
    if saved:
        logger.tags.update(saved.get("tags", []))
    else:
        logger.text("config", "    " + OmegaConf.to_yaml(cfg).replace("\n", "\n    "))
    log.info(exp.title)
    outcome, finished = None, {}
    try:
        with progress_bar(exp.total, cfg.progress) as bar:
            outcome = exp.train(history, progress=bar, checkpoint=saver, start=start,
                                interrupt=interrupt)  # fmt: skip
        finished = finish_probes(exp, run_dir, logger, outcome.steps)
    finally:
        if outcome is None:  # a crash or an interrupt: keep what was measured
            history.flush()
        status = outcome.status if outcome else "failed"
        hp = hparams(exp.config, choices, overrides)
        logger.hparams(hp, status)
        logger.close()
    torch.save(exp.model.state_dict(), run_dir / "model.pt")
    extra = {"elapsed_s": round(history.elapsed(), 3), "warnings": history.warnings, "hparams": hp}
    if saved:
        extra["resumed_from"] = {"step": start.step, "checkpoint": saved["path"]}
    if finished:
        extra["probes"] = finished
    knobs = exp.knobs
    return summarise(outcome, history, exp.data, knobs.device, knobs.dtype) | extra


def finish_probes(exp: Experiment, run_dir: Path, logger: Logger, steps: int) -> dict:
    """Probes that report at the end (plots, checks): one host copy each."""
    finished = {}
    for probe in exp.probes:
        if hasattr(probe, "finish"):
            finished |= probe.finish(run_dir, logger, steps, model=exp.model)
    return finished


def finish(summary: dict, run_dir: Path, started: float, interrupt: StopSignals,
           dir_key: str = "hydra.run.dir", say: bool = True) -> dict:  # fmt: skip
    """Exit code, wall time and objective into the summary; summary.json; the closing lines."""
    if summary.get("stop_reason") == "signal":
        summary["exit_code"] = interrupt.exit_code
        again = (f"hydra.run.dir={shown_path(run_dir)} resume=true" if dir_key == "hydra.run.dir"
                 else "resume=true (the same -m sweep, into the same hydra.sweep.dir)")  # fmt: skip
        where = shown_path(run_dir / "checkpoints")
        if dir_key != "hydra.run.dir":  # a sweep's: every stopped job has its own
            where = f"each job's checkpoints/ (such as {where})"
        if say:
            log.error("gradexp: %s; checkpoint in %s; to continue, run the same command with %s",
                      summary["message"], where, again)  # fmt: skip
    summary["wall_time_s"] = round(time.time() - started, 3)
    summary["objective"] = objective(summary)
    resume.safe_write(write_summary, run_dir, summary)
    if summary["status"] in ("ok", "diverged"):
        log.info(one_line(summary))
        log.info("tensorboard --logdir %s", shown_path(run_dir))
    return summary


@contextmanager
def deterministic(enabled: bool):
    """torch.use_deterministic_algorithms for this run only; CUDA's cuBLAS also needs a fixed
    workspace (set before its first use). CPU runs here are bitwise repeatable without it.
    Called only to change the setting: each call imports torch's inductor config (1.6 s)."""
    before = torch.are_deterministic_algorithms_enabled()
    if enabled and not before:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        if enabled and not before:
            torch.use_deterministic_algorithms(False)
