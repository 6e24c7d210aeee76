"""Composition root, the only module that reads the DictConfig: validate, build, train, report."""

from __future__ import annotations

import logging
import math
import os
import sys
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from hydra.errors import InstantiationException
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf

from gradexp import data as datasets
from gradexp import resume
from gradexp.batches import Batches
from gradexp.checkpoint import Checkpointer, restore
from gradexp.checks import check_groups
from gradexp.errors import ConfigError, check_choice, check_number
from gradexp.function import ObjectiveLoss, objective_data
from gradexp.history import History
from gradexp.logger import Logger, rewind, write_summary
from gradexp.outdir import writable
from gradexp.probes.function import FunctionGradients
from gradexp.signals import StopSignals
from gradexp.train import Outcome, evaluate, train
from gradexp.watch import GrowthWatch

log = logging.getLogger("gradexp")
DTYPES = {"float32": torch.float32, "float64": torch.float64}
SPLIT_KEYS = ("eval_fraction", "standardize", "split_seed")


@dataclass
class Knobs:
    """The run-level values, checked."""

    device: torch.device
    dtype: torch.dtype
    epochs: int
    max_steps: float
    log_every: int
    eval_every: int | None
    flush_secs: float
    l2: float
    grad_tol: float | None
    loss_tol: float | None
    time_limit: float | None


def check_knobs(cfg: DictConfig) -> Knobs:
    """Every run-level value, before anything is built: errors name the key and what is allowed."""
    check_number("seed", cfg.seed, low=0, integer=True, strict=False)
    check_number("epochs", cfg.epochs, low=1, integer=True, strict=False)
    if cfg.max_steps is not None:
        check_number("max_steps", cfg.max_steps, low=1, integer=True, strict=False)
    check_number("log_every", cfg.log_every, low=1, integer=True, strict=False)
    if cfg.eval_every is not None:
        check_number("eval_every", cfg.eval_every, low=1, integer=True, strict=False)
    check_number("flush_secs", cfg.flush_secs, low=0, strict=False)
    check_number("l2", cfg.l2, low=0, strict=False)
    for key in ("grad_tol", "loss_tol", "time_limit"):
        if cfg.stop[key] is not None:
            check_number(f"stop.{key}", cfg.stop[key], low=0)
    check_number("optimizer.lr", cfg.optimizer.lr, low=0)
    if cfg.batch.size is not None:
        check_number("batch.size", cfg.batch.size, low=1, integer=True, strict=False)
    check_number("batch.accumulate", cfg.batch.accumulate, low=1, integer=True, strict=False)
    check_number("data.eval_fraction", cfg.data.eval_fraction, low=0, high=0.9, strict=False)
    check_choice("dtype", cfg.dtype, DTYPES)
    check_groups(plain(cfg))
    return Knobs(
        resolve_device(str(cfg.device)),
        DTYPES[cfg.dtype],
        cfg.epochs,
        math.inf if cfg.max_steps is None else cfg.max_steps,
        cfg.log_every,
        cfg.eval_every,
        cfg.flush_secs,
        float(cfg.l2),
        cfg.stop.grad_tol,
        cfg.stop.loss_tol,
        cfg.stop.time_limit,
    )


def plain(cfg: DictConfig) -> dict:
    """The run's config as plain Python values, without the hydra node."""
    return OmegaConf.to_container(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]),
                                  resolve=True)  # fmt: skip


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = name.partition(":")[2]
        if count == 0:
            raise ConfigError("device", name, "CUDA is not available here; use device=auto or cpu")
        if index and not (index.isdigit() and int(index) < count):
            raise ConfigError("device", name, f"no such GPU; choose cuda:0 … cuda:{count - 1}")
        return torch.device(name)
    raise ConfigError("device", name, "choose auto, cpu, cuda or cuda:N")


def build(group: str, node: DictConfig, *args, **kwargs):
    """instantiate(), then call a `_partial_` with the runtime arguments (sizes, parameters);
    errors name the config group rather than a Python call."""
    try:
        made = instantiate(node)
        return made(*args, **kwargs) if node.get("_partial_") else made
    except InstantiationException as e:
        cause = e.__cause__
        if isinstance(cause, ConfigError):
            raise cause.under(group) from None
        if isinstance(cause, (TypeError, ValueError)):
            raise ConfigError(group, node.get("_target_"), str(cause)) from None
        raise
    except ConfigError as e:
        raise e.under(group) from None
    except (TypeError, ValueError, RuntimeError, ZeroDivisionError, OverflowError) as e:
        # torch's own checks, e.g. "Invalid momentum value"; the first line, not a dump
        raise ConfigError(group, node.get("_target_"), str(e).splitlines()[0]) from None


def load_data(cfg: DictConfig, knobs: Knobs) -> datasets.Data:
    loader = OmegaConf.masked_copy(cfg.data, [k for k in cfg.data if k not in SPLIT_KEYS])
    arrays = build("data", loader)
    split = {k: cfg.data[k] for k in SPLIT_KEYS}
    data = datasets.split(arrays, **split, device=knobs.device, dtype=knobs.dtype)
    if data.n_train == 0:
        rows = len(arrays.x)
        raise ConfigError("data.eval_fraction", cfg.data.eval_fraction,
                          f"leaves none of the {rows} rows for training; lower it")  # fmt: skip
    return data


def run(
    cfg: DictConfig, run_dir: Path, choices: dict, overrides: list[str], interrupt=None
) -> dict:
    """Build everything from the config, train, and return the summary (also on disk)."""
    knobs = check_knobs(cfg)
    torch.manual_seed(cfg.seed)
    # model=function is its own objective: no data set, no loss, one dummy sample per step.
    is_function = is_objective(cfg.model)
    data = objective_data(knobs.device, knobs.dtype) if is_function else load_data(cfg, knobs)
    loss_fn = ObjectiveLoss() if is_function else build("loss", cfg.loss)
    if data.task not in loss_fn.tasks:
        raise ConfigError(
            "loss", choices.get("loss", type(loss_fn).__name__),
            f"needs class labels, but data={choices.get('data', '?')} has a {data.task} target; "
            "use loss=mse",
        )  # fmt: skip
    size = None if is_function else cfg.batch.size
    if size is not None and size > data.n_train:
        raise ConfigError("batch.size", size, f"must be ≤ {data.n_train}, the training set size")
    model = build("model", cfg.model, data.in_features, data.out_features)
    model = model.to(device=knobs.device, dtype=knobs.dtype)
    optimizer = build("optimizer", cfg.optimizer, model.parameters())
    order = torch.Generator(device=knobs.device).manual_seed(cfg.seed)
    batches = Batches(data.x_train, loss_fn.targets(data.y_train, data.num_classes, knobs.dtype),
                      size=size, accumulate=cfg.batch.accumulate, shuffle=cfg.batch.shuffle,
                      drop_last=cfg.batch.drop_last, generator=order)  # fmt: skip
    total = int(min(knobs.max_steps, knobs.epochs * batches.steps_per_epoch))
    scheduler = build("schedule", cfg.schedule, optimizer, total_steps=total)
    evaluator = None
    if len(data.x_eval):
        target = loss_fn.targets(data.y_eval, data.num_classes, knobs.dtype)
        labels = data.y_eval if data.task == "classification" else None
        evaluator = lambda: evaluate(model, loss_fn, data.x_eval, target, labels)  # noqa: E731
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    columns = ["train/loss", *(["train/l2"] if knobs.l2 else [])]
    columns += [f"grad_norm/{n}" for n in names]
    probes = build_probes(cfg, knobs, batches, is_function)
    config = plain(cfg)
    saved = resume.latest(run_dir, config) if cfg.resume else None
    if cfg.resume:
        rewind(run_dir, saved["logs"] if saved else {})  # what came after the checkpoint goes
    logger = Logger(run_dir, purge_step=saved["position"]["step"] + 1 if saved else None)
    watch = GrowthWatch(cfg.explode.factor, cfg.explode.window)
    history = History(logger, columns, knobs.log_every, knobs.grad_tol, knobs.loss_tol, watch)
    saver = Checkpointer(run_dir, cfg.checkpoint_every, model=model, optimizer=optimizer,
                         scheduler=scheduler, batches=batches, history=history, logger=logger,
                         config=config)  # fmt: skip
    start = None
    if saved:
        start = restore(saved, model=model, optimizer=optimizer, scheduler=scheduler,
                        batches=batches, history=history)  # fmt: skip
        logger.tags.update(saved["tags"])
    else:
        logger.text("config", "    " + OmegaConf.to_yaml(cfg).replace("\n", "\n    "))
    if is_function:
        log.info(f"gradexp: {model.extra_repr()} · {choices.get('optimizer', '?')}"
                 f"(lr={cfg.optimizer.lr:g}) · {total} steps on {knobs.device}")  # fmt: skip
    else:
        log.info(describe(cfg, choices, data, batches, knobs, total))
    outcome = None
    try:
        with progress_bar(total, cfg.progress) as bar:
            outcome = train(
                model, loss_fn, optimizer, scheduler, batches, history,
                epochs=knobs.epochs, max_steps=knobs.max_steps, log_every=knobs.log_every,
                eval_every=knobs.eval_every, evaluate=evaluator, flush_secs=knobs.flush_secs,
                l2=knobs.l2, time_limit=knobs.time_limit,
                sync_every_log=knobs.grad_tol is not None or knobs.loss_tol is not None,
                progress=bar, checkpoint=saver, start=start, interrupt=interrupt,
                probes=probes,
            )  # fmt: skip
        finished = {}
        for probe in probes:  # probes that report at the end (plots, checks): one host copy each
            if hasattr(probe, "finish"):
                finished |= probe.finish(run_dir, logger, outcome.steps)
    finally:
        if outcome is None:  # a crash or an interrupt: keep what was measured
            history.flush()
        status = outcome.status if outcome else "failed"
        logger.hparams(hparams(cfg, choices, overrides), status)
        logger.close()
    torch.save(model.state_dict(), run_dir / "model.pt")
    extra = {"elapsed_s": round(history.elapsed(), 3), "warnings": history.warnings}
    if saved:
        extra["resumed_from"] = {"step": start.step, "checkpoint": saved["path"]}
    if finished:
        extra["probes"] = finished
    return summarise(outcome, history, data, knobs) | extra


def is_objective(node: DictConfig) -> bool:
    """Whether the model's class declares itself its own objective (model=function)."""
    try:
        return bool(getattr(get_object(node._target_), "is_objective", False))
    except Exception:  # a bad _target_ is reported by build(), naming the key
        return False


def build_probes(cfg: DictConfig, knobs: Knobs, batches: Batches, is_function: bool) -> list:
    """probes=[noise,sharpness,…]: each probe gets the training set and λ besides its config.
    model=function always gets the function probe (gradients side by side, the path plot)."""
    probes = [
        build(f"probes.{name}", node, data=(batches.x, batches.y), l2=knobs.l2)
        for name, node in (cfg.get("probes") or {}).items()
    ]
    if is_function and not any(isinstance(p, FunctionGradients) for p in probes):
        probes.insert(0, FunctionGradients(l2=knobs.l2))
    return probes


def main(cfg: DictConfig, run_dir: Path, choices: dict, overrides: list[str]) -> dict:
    """Run one experiment and always leave summary.json, whatever happens. Never raises."""
    choices = {k: v for k, v in choices.items() if not k.startswith("hydra/")}
    base = {"run_dir": str(run_dir), "overrides": list(overrides), "choices": choices}
    if cfg.get("resume") is True and (done := resume.finished(run_dir)):
        log.info("gradexp: %s already finished (%s): skipped", run_dir, done["status"])
        return done | {"objective": float(done.get("objective", math.inf))}
    started = time.time()
    interrupt = StopSignals()
    try:
        with interrupt, deterministic(cfg.get("deterministic") is True):
            writable(run_dir)
            summary = base | run(cfg, run_dir, choices, overrides, interrupt)
    except ConfigError as e:
        log.error("gradexp: error: %s", e)
        summary = base | {"status": "failed", "stop_reason": "config_error", "error": str(e)}
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
    if summary.get("stop_reason") == "signal":
        summary["exit_code"] = interrupt.exit_code
        log.error("gradexp: %s; checkpoint in %s; to continue, run the same command with "
                  "hydra.run.dir=%s resume=true", summary["message"],
                  shown_path(run_dir / "checkpoints"), shown_path(run_dir))  # fmt: skip
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
    workspace (set before its first use). CPU runs here are bitwise repeatable without it."""
    before = torch.are_deterministic_algorithms_enabled()
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


def objective(summary: dict) -> float:
    """What a sweeper minimises: the final eval loss (train loss without eval data); inf if the
    run failed or diverged, so a search treats it as the worst trial instead of crashing."""
    final = summary.get("final", {})
    value = final.get("eval/loss", final.get("train/loss", math.inf))
    return value if summary["status"] == "ok" and math.isfinite(value) else math.inf


def summarise(outcome: Outcome, history: History, data: datasets.Data, knobs: Knobs) -> dict:
    last = history.last
    return {
        "status": outcome.status,
        "stop_reason": outcome.stop_reason,
        "message": outcome.message,
        "steps": outcome.steps,
        "examples": outcome.examples,
        "epochs": round(outcome.examples / data.n_train, 4),
        "final": {k: last[k] for k in ("train/loss", "train/l2", "eval/loss", "eval/accuracy",
                                       "grad/norm", "param/norm") if k in last},
        "best": dict(history.best),
        "device": str(knobs.device),
        "dtype": str(knobs.dtype).removeprefix("torch."),
        "task": data.task,
        "n_train": data.n_train,
        "n_eval": len(data.x_eval),
    }  # fmt: skip


def hparams(cfg: DictConfig, choices: dict, overrides: list[str]) -> dict:
    """What a sweep varies, for TensorBoard's HPARAMS tab: group choices, key knobs, overrides.
    Named by their config keys, so an override (optimizer.lr=0.1) and the knob are one column, and
    typed from the composed config: `optimizer.lr=0.1` is the number 0.1, not the string "0.1"."""
    hp = {g: choices[g] for g in ("data", "model", "loss", "optimizer", "batch", "schedule")
          if g in choices}  # fmt: skip
    for key in ("optimizer.lr", "batch.size", "batch.accumulate", "seed", "l2"):
        hp[key] = OmegaConf.select(cfg, key)
    for item in overrides:
        if not item.startswith("~"):
            key = item.lstrip("+").partition("=")[0]
            hp.setdefault(key, choices[key] if key in choices else OmegaConf.select(cfg, key))
    return {k: v if v is None or isinstance(v, (int, float, str, bool)) else str(v)
            for k, v in hp.items()}  # fmt: skip


def describe(cfg, choices, data, batches, knobs, total) -> str:
    size = "full" if cfg.batch.size is None else cfg.batch.size
    parts = [f"{choices.get(g, '?')}" for g in ("data", "model", "loss")]
    parts += [f"{choices.get('optimizer', '?')}(lr={cfg.optimizer.lr:g})",
              f"{choices.get('batch', '?')}(size={size}×{cfg.batch.accumulate})"]  # fmt: skip
    return (
        f"gradexp: {' · '.join(parts)} · {data.n_train} train / {len(data.x_eval)} eval · "
        f"{total} steps ({batches.steps_per_epoch}/epoch) on {knobs.device}"
    )


def one_line(s: dict) -> str:
    f = s.get("final", {})
    parts = [f"{s['status']} ({s['message']})", f"{s['steps']} steps", f"{s['wall_time_s']:.1f} s"]
    for key, label in (("train/loss", "train loss"), ("eval/loss", "eval loss")):
        if key in f:
            parts.append(f"{label} {f[key]:.4g}")
    if "eval/accuracy" in f:
        parts.append(f"eval accuracy {100 * f['eval/accuracy']:.1f}%")
    return "gradexp: " + " · ".join(parts)


def shown_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


class progress_bar:
    """tqdm on a terminal (quiet when stderr is not a TTY), or nothing."""

    def __init__(self, total: int, enabled: bool):
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="step", disable=None, file=sys.stderr, leave=False)

    def __enter__(self):
        return self.bar

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()
