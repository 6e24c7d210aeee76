"""One experiment built from a composed config: data, model, loss, optimizer, schedule, batches,
probes. The CLI, the vectorised launcher and the notebook API build runs through build()."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
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
from gradexp.knobs import Knobs, check_knobs, plain
from gradexp.record.history import History
from gradexp.record.stops import Rules
from gradexp.record.watch import GrowthWatch
from gradexp.runtime import available_bytes
from gradexp.train import Outcome, Plan, evaluate, train

SPLIT_KEYS = ("eval_fraction", "standardize", "split_seed")
# Hydra 1.4 asks trusted code for the targets a config may instantiate (1.3 takes no such key).
WHITELIST = {"_execution_whitelist_": trusted_targets()} if HYDRA >= (1, 4) else {}


@dataclass
class Experiment:
    """Everything one run trains and measures; plain objects, no config beyond this point."""

    knobs: Knobs
    config: dict  # the composed config as plain data (a checkpoint is checked against it)
    data: datasets.Data
    model: nn.Module
    loss_fn: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object | None
    batches: Batches
    total: int  # the most steps the run takes
    title: str  # what is trained, in one line
    is_function: bool = False
    evaluator: Callable[[], dict] | None = None
    probes: list = field(default_factory=list)
    explode: tuple[float | None, int] = (100.0, 10)
    diverge: float | None = None  # diverge.factor

    def columns(self) -> list[str]:
        """What the loop records every step: the loss, λ‖θ‖², each parameter's gradient norm."""
        names = [n for n, p in self.model.named_parameters() if p.requires_grad]
        return ["train/loss", *(["train/l2"] if self.knobs.l2 else [])] + [
            f"grad_norm/{n}" for n in names
        ]

    def history(self, sink) -> History:
        k = self.knobs
        watch = GrowthWatch(*self.explode)
        rules = Rules(k.grad_tol, k.loss_tol, self.diverge, self.explode[1])
        return History(sink, self.columns(), k.log_every, rules, watch)

    def plan(self) -> Plan:
        k = self.knobs
        exact = k.grad_tol is not None or k.loss_tol is not None  # tolerances read every log
        return Plan(k.epochs, k.max_steps, k.log_every, k.eval_every, k.flush_secs, k.l2,
                    k.time_limit, sync_every_log=exact)  # fmt: skip

    def train(self, history: History, **runtime) -> Outcome:
        """The loop over this experiment (runtime: progress, checkpoint, start, interrupt)."""
        return train(self.model, self.loss_fn, self.optimizer, self.scheduler, self.batches,
                     history, self.plan(), evaluate=self.evaluator, final=self.final,
                     probes=self.probes, **runtime)  # fmt: skip

    def final(self) -> dict:
        """The final parameters on the whole training set: the loss (f itself, for
        model=function), accuracy for class labels, and λ‖θ‖² (what summary.json reports)."""
        labels = self.data.y_train if self.data.task == "classification" else None
        values = evaluate(self.model, self.loss_fn, self.batches.x, self.batches.y, labels)
        out = {f"final/train_{k.removeprefix('eval/')}": v for k, v in values.items()}
        if self.knobs.l2:
            params = [p for p in self.model.parameters() if p.requires_grad]
            out["final/train_l2"] = self.knobs.l2 * sum(p.detach().square().sum() for p in params)
        return out


def build(cfg: DictConfig, choices: dict) -> Experiment:
    """Check the config and build the experiment, seeded: the same config, the same run."""
    knobs = check_knobs(cfg)
    torch.manual_seed(cfg.seed)
    # model=function is its own objective: no data set, no loss, one dummy sample per step.
    is_function = is_objective(cfg.model)
    if is_function:  # SymPy (0.35 s to import) only for the runs that need it
        from gradexp.function import ObjectiveLoss, objective_data

        data, loss_fn = objective_data(knobs.device, knobs.dtype), ObjectiveLoss()
    else:
        data, loss_fn = load_data(cfg, knobs), make("loss", cfg.loss)
    if data.task not in loss_fn.tasks:
        raise ConfigError(
            "loss", choices.get("loss", type(loss_fn).__name__),
            f"needs class labels, but data={choices.get('data', '?')} has a {data.task} target; "
            "use loss=mse",
        )  # fmt: skip
    size = None if is_function else cfg.batch.size
    if size is not None and size > data.n_train:
        raise ConfigError("batch.size", size, f"must be ≤ {data.n_train}, the training set size")
    check_memory(cfg, data, knobs)
    model = make("model", cfg.model, data.in_features, data.out_features)
    model = model.to(device=knobs.device, dtype=knobs.dtype)
    optimizer = make("optimizer", cfg.optimizer, model.parameters())
    order = torch.Generator(device=knobs.device).manual_seed(cfg.seed)
    batches = Batches(data.x_train, loss_fn.targets(data.y_train, data.num_classes, knobs.dtype),
                      size=size, accumulate=cfg.batch.accumulate, shuffle=cfg.batch.shuffle,
                      drop_last=cfg.batch.drop_last, generator=order)  # fmt: skip
    total = int(min(knobs.max_steps, knobs.epochs * batches.steps_per_epoch))
    scheduler = make("schedule", cfg.schedule, optimizer, total_steps=total)
    if is_function:
        title = (f"gradexp: {model.extra_repr()} · {choices.get('optimizer', '?')}"
                 f"(lr={cfg.optimizer.lr:g}) · {total} steps on {knobs.device}")  # fmt: skip
    else:
        title = describe(cfg, choices, data, batches, knobs, total)
    return Experiment(
        knobs, plain(cfg), data, model, loss_fn, optimizer, scheduler, batches, total, title,
        is_function, evaluator(model, loss_fn, data, knobs.dtype),
        build_probes(cfg, knobs, batches, is_function, model),
        (cfg.explode.factor, cfg.explode.window),
        cfg.diverge.factor,
    )  # fmt: skip


def make(group: str, node: DictConfig, *args, **kwargs):
    """instantiate(), then call a `_partial_` with the runtime arguments (sizes, parameters);
    errors name the config group rather than a Python call."""
    try:
        made = instantiate(node, **WHITELIST)
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
