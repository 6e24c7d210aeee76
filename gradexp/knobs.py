"""The run-level knobs of a composed config, checked before anything is built."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from omegaconf import DictConfig, OmegaConf

from gradexp.checks import check_groups
from gradexp.errors import ConfigError, check_choice, check_number

DTYPES = {"float32": torch.float32, "float64": torch.float64}


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


def threads(cfg: DictConfig) -> int:
    """The `threads` knob, checked first: it applies before anything is built."""
    return check_number("threads", cfg.get("threads", 1), low=0, high=1024, integer=True,
                        strict=False)  # fmt: skip


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
