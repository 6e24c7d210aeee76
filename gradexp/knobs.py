"""The run-level knobs of a composed config, checked before anything is built."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from omegaconf import DictConfig, OmegaConf

from gradexp.checks import check_groups
from gradexp.errors import ConfigError, check_choice, check_number, nearest

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


def check_knobs(cfg: DictConfig, config: dict | None = None) -> Knobs:
    """Every run-level value, before anything is built: errors name the key and what is allowed.
    `config`: plain(cfg), if the caller has it already."""
    own = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]) if "hydra" in cfg else cfg
    for key in sorted(OmegaConf.missing_keys(own)):  # `???` in a preset: data=file's data.path
        example = {"data.path": "data.path=my.csv", "data.target": "data.target=label"}.get(key)
        why = f"is required: give it on the command line{f', e.g. {example}' if example else ''}"
        raise ConfigError(key, "???", why)
    check_number("seed", cfg.seed, low=0, high=2**63 - 1, integer=True, strict=False)
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
    check_groups(config if config is not None else plain(cfg))
    check_representable(cfg.optimizer, DTYPES[cfg.dtype])
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


def check_representable(optimizer: DictConfig, dtype: torch.dtype) -> None:
    """Optimizer numbers the parameters' dtype can hold: torch refuses lr=1e39 for float32
    parameters only once it steps (a traceback mid-run)."""
    biggest = torch.finfo(dtype).max
    for key, value in optimizer.items():
        if isinstance(value, int | float) and not isinstance(value, bool) and abs(value) > biggest:
            why = f"is beyond what {dtype} can hold (±{biggest:.3g})"
            raise ConfigError(
                f"optimizer.{key}", value, f"{why}; use a smaller value or dtype=float64"
            )


def check_overrides(cfg: DictConfig, overrides: list[str], choices: dict) -> None:
    """A +key=value that adds a key nothing reads (+lr=0.5 trains at optimizer.lr without a
    word) is refused, with the nearest real key. A + under a node with a _target_ passes its
    value to that constructor (+optimizer.amsgrad=true), which is fine."""
    for item in overrides:
        if not item.startswith("+"):
            continue
        key, _, value = item.lstrip("+").partition("=")
        parent = OmegaConf.select(cfg, key.rpartition(".")[0]) if "." in key else None
        if key in choices or (isinstance(parent, DictConfig) and "_target_" in parent):
            continue
        hint = nearest(key, [k for k in dotted(cfg) if k != key])
        raise ConfigError(key, value, "gradexp reads no such key (a + override adds one that "
                          f"nothing uses){f'; did you mean {hint}?' if hint else ''}")  # fmt: skip


def dotted(cfg, prefix: str = "", hydra: bool = False) -> list[str]:
    """Every leaf key of a config as a dotted path (the hydra node left out unless asked)."""
    out = []
    for key in cfg:
        if not prefix and key == "hydra" and not hydra:
            continue
        node = cfg._get_node(key) if isinstance(cfg, DictConfig) else None
        if isinstance(node, DictConfig):
            out += dotted(node, f"{prefix}{key}.", hydra)
        else:
            out.append(f"{prefix}{key}")
    return out


def threads(cfg: DictConfig) -> int:
    """The `threads` knob, checked first: it applies before anything is built."""
    return check_number("threads", cfg.get("threads", 1), low=0, high=1024, integer=True,
                        strict=False)  # fmt: skip


def plain(cfg: DictConfig) -> dict:
    """The run's config as plain Python values, without the hydra node."""
    own = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]) if "hydra" in cfg else cfg
    return OmegaConf.to_container(own, resolve=True)


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
