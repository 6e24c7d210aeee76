"""The parts of an experiment made from their config nodes: make() (instantiate, errors that
name the group), the data, the probes, the memory a model needs, the one-line description."""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise

import torch
from hydra.errors import InstantiationException
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from gradexp import HYDRA, trusted_targets
from gradexp import data as datasets
from gradexp.batches import Batches
from gradexp.errors import ConfigError
from gradexp.knobs import Knobs
from gradexp.runtime import available_bytes
from gradexp.train import evaluate

SPLIT_KEYS = ("eval_fraction", "standardize", "split_seed")
# Hydra 1.4 asks trusted code for the targets a config may instantiate (1.3 takes no such key).
WHITELIST = {"_execution_whitelist_": trusted_targets()} if HYDRA >= (1, 4) else {}


# A vectorised group's members share their model's node, and most share their optimizer's:
# instantiate() made the same partial anew for each (~2 ms each, a third of a member's build).
PARTIALS: dict[tuple[str, str], object] = {}


def make(group: str, node: DictConfig, *args, values: dict | None = None, **kwargs):
    """instantiate(), then call a `_partial_` with the runtime arguments (sizes, parameters);
    errors name the config group rather than a Python call. `values`: the node as plain data
    (its resolved config), which keys the partial for the next member with the same node."""
    try:
        partial = node.get("_partial_")
        cached = partial and values is not None and not nested_target(values)
        key = (group, repr(values)) if cached else None
        made = PARTIALS.get(key) if key else None
        if made is None:
            made = instantiate(node, **WHITELIST)
            if key:
                if len(PARTIALS) >= 256:
                    PARTIALS.clear()
                PARTIALS[key] = made
        return made(*args, **kwargs) if partial else made
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


def nested_target(values) -> bool:
    """Whether a node holds a `_target_` below its top: instantiate() makes that object once
    for the partial, so a cached partial would hand the same one (a module with parameters, a
    generator) to every member; such a node is instantiated anew for each."""
    if not isinstance(values, dict | list):
        return False
    children = values.values() if isinstance(values, dict) else values
    return any((isinstance(v, dict) and "_target_" in v) or nested_target(v) for v in children)


def check_memory(cfg: DictConfig, data: datasets.Data, knobs: Knobs) -> None:
    """An MLP that cannot fit (model.hidden=[1000000000000]) is refused before torch tries to
    allocate it: parameters, gradients and two optimizer moments, and the widest layer's
    activations over the whole training set (full batches, the final evaluation)."""
    if cfg.model.get("_target_") != "gradexp.models.MLP":
        return
    sizes = [data.in_features, *cfg.model.hidden, data.out_features]
    params = sum((a + 1) * b for a, b in pairwise(sizes))
    size = torch.finfo(knobs.dtype).bits // 8
    need = size * (4 * params + 2 * data.n_train * max(sizes))
    have = available_bytes(knobs.device)
    if need > have:
        raise ConfigError("model.hidden", list(cfg.model.hidden), f"needs about {need / 1e9:.3g} "
                          f"GB ({params:.3g} parameters), more than the {have / 1e9:.3g} GB free "
                          f"on {knobs.device}")  # fmt: skip


def load_data(cfg: DictConfig, knobs: Knobs) -> datasets.Data:
    node = cfg.data
    if isinstance(node.get("n"), int) and isinstance(node.get("features", 2), int):
        need = 8 * 4 * node.n * (node.get("features", 2) + 1)  # x, y; split and standardised
        if need > available_bytes(torch.device("cpu")):
            raise ConfigError("data.n", node.n, f"needs about {need / 1e9:.3g} GB of memory, more "
                              "than is free here")  # fmt: skip
    loader = OmegaConf.masked_copy(cfg.data, [k for k in cfg.data if k not in SPLIT_KEYS])
    arrays = make("data", loader)
    split = {k: cfg.data[k] for k in SPLIT_KEYS}
    data = datasets.split(arrays, **split, device=knobs.device, dtype=knobs.dtype)
    if data.n_train == 0:
        rows = len(arrays.x)
        raise ConfigError("data.eval_fraction", cfg.data.eval_fraction,
                          f"leaves none of the {rows} rows for training; lower it")  # fmt: skip
    return data


def evaluator(model, loss_fn, data: datasets.Data, dtype) -> Callable[[], dict] | None:
    """Loss (and accuracy) of the model on the held-out split; None without one."""
    if not len(data.x_eval):
        return None
    target = loss_fn.targets(data.y_eval, data.num_classes, dtype)
    labels = data.y_eval if data.task == "classification" else None
    return lambda: evaluate(model, loss_fn, data.x_eval, target, labels)


def is_objective(node: DictConfig) -> bool:
    """Whether the model's class declares itself its own objective (model=function)."""
    try:
        return bool(getattr(get_object(node._target_), "is_objective", False))
    except Exception:  # a bad _target_ is reported by make(), naming the key
        return False


def build_probes(cfg: DictConfig, knobs: Knobs, batches: Batches, is_function: bool,
                 model: nn.Module) -> list:  # fmt: skip
    """probes=[noise,sharpness,…]: each probe gets the training set and λ besides its config.
    model=function always gets the function probe (gradients side by side, the path plot)."""
    probes = []
    for name, node in (cfg.get("probes") or {}).items():
        probe = make(f"probes.{name}", node, data=(batches.x, batches.y), l2=knobs.l2)
        if hasattr(probe, "check"):  # fits this model? Before anything is written
            try:
                probe.check(model)
            except ConfigError as e:
                raise e.under(f"probes.{name}") from None
        probes.append(probe)
    if is_function:
        from gradexp.probes.function import FunctionGradients

        if not any(isinstance(p, FunctionGradients) for p in probes):
            probes.insert(0, FunctionGradients(l2=knobs.l2))
    return probes


def describe(cfg, choices, data, batches, knobs, total) -> str:
    size = "full" if cfg.batch.size is None else cfg.batch.size
    parts = [f"{choices.get(g, '?')}" for g in ("data", "model", "loss")]
    parts += [f"{choices.get('optimizer', '?')}(lr={cfg.optimizer.lr:g})",
              f"{choices.get('batch', '?')}(size={size}×{cfg.batch.accumulate})"]  # fmt: skip
    return (
        f"gradexp: {' · '.join(parts)} · {data.n_train} train / {len(data.x_eval)} eval · "
        f"{total} steps ({batches.steps_per_epoch}/epoch) on {knobs.device}"
    )
