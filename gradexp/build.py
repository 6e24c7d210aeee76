"""One experiment built from a composed config: data, model, loss, optimizer, schedule, batches,
probes. The CLI, the vectorised launcher and the notebook API build runs through build()."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
from omegaconf import DictConfig
from torch import nn

from gradexp import data as datasets
from gradexp.batches import Batches
from gradexp.errors import ConfigError
from gradexp.knobs import Knobs, check_knobs, plain
from gradexp.parts import (
    build_probes,
    check_memory,
    describe,
    evaluator,
    is_objective,
    load_data,  # fmt: skip
    make,
)
from gradexp.record.history import History
from gradexp.record.stops import Rules
from gradexp.record.watch import GrowthWatch
from gradexp.train import Outcome, Plan, evaluate, train


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
    config = plain(cfg)
    knobs = check_knobs(cfg, config)
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
        knobs, config, data, model, loss_fn, optimizer, scheduler, batches, total, title,
        is_function, evaluator(model, loss_fn, data, knobs.dtype),
        build_probes(cfg, knobs, batches, is_function, model),
        (cfg.explode.factor, cfg.explode.window),
        cfg.diverge.factor,
    )  # fmt: skip


def build_member(cfg: DictConfig, choices: dict, base: Experiment) -> Experiment:
    """Another seed or other optimizer numbers on `base`'s data (a vectorised group's member):
    the model, optimizer and schedule its own build() would make, initialised as that build
    initialises them (the seed, then the model: nothing between consumes torch's generator)."""
    config = plain(cfg)
    knobs = check_knobs(cfg, config)
    torch.manual_seed(cfg.seed)
    model = make("model", cfg.model, base.data.in_features, base.data.out_features,
                 values=config["model"])  # fmt: skip
    model = model.to(device=knobs.device, dtype=knobs.dtype)
    optimizer = make("optimizer", cfg.optimizer, model.parameters(), values=config["optimizer"])
    scheduler = make("schedule", cfg.schedule, optimizer, total_steps=base.total,
                     values=config["schedule"])  # fmt: skip
    title = base.title.replace(f"(lr={base.config['optimizer']['lr']:g})",
                               f"(lr={cfg.optimizer.lr:g})")  # fmt: skip
    return replace(base, knobs=knobs, config=config, model=model, optimizer=optimizer,
                   scheduler=scheduler, title=title, evaluator=None, probes=[],
                   explode=(cfg.explode.factor, cfg.explode.window),
                   diverge=cfg.diverge.factor)  # fmt: skip
