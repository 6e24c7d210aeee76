"""A group's members built from their composed configs, and stacked: member 0 is built as a
sequential run would be (data, loss, batches); the others get their own model, optimizer and
schedule on the same data, initialised from their own seed exactly as their own runs would be."""

from __future__ import annotations

import numpy as np
import torch
from omegaconf import DictConfig

from gradexp.build import Experiment, build, build_member
from gradexp.errors import ConfigError
from gradexp.probes.noise import Noise
from gradexp.runtime import available_bytes
from gradexp.vector import backprop
from gradexp.vector.batches import VectorBatches
from gradexp.vector.noise import ROWS_ELEMENTS, StackedNoise
from gradexp.vector.optim import VectorOptimizer, kind_of
from gradexp.vector.probes import StackedSharpness, thresholds
from gradexp.vector.probes import why_not as probes_why_not
from gradexp.vector.stack import Stack, why_not
from gradexp.vector.train import Group


def unsupported(exp: Experiment, cfg: DictConfig) -> str | None:
    """Why this run cannot be a group's member (None: it can)."""
    if exp.is_function:
        return "model=function compares its gradients (and draws its path) one point at a time"
    if exp.probes and (why := probes_why_not(exp.probes)):
        names = ", ".join(cfg.get("probes") or {})
        return f"probes=[{names}]: {why}"
    if kind_of(exp.optimizer) is None:
        return f"the optimizer {type(exp.optimizer).__name__} has no batched update here"
    return why_not(exp.model, exp.loss_fn)


def members(configs: list[DictConfig], choices: dict) -> list[Experiment]:
    """Every member's experiment; raises the first member's ConfigError (the caller builds one
    at a time to say which job it belongs to)."""
    base = build(configs[0], choices)
    return [base, *(build_member(c, choices, base) for c in configs[1:])]


def lr_table(exps: list[Experiment]) -> np.ndarray:
    """[steps, K]: the lr each member's sequential run uses at each step, base × λ(step − 1)
    (what LambdaLR puts in param_groups before each step), in float64."""
    total = exps[0].total
    columns = []
    for e in exps:
        if e.scheduler is None:
            columns.append(np.full(total, float(e.optimizer.param_groups[0]["lr"])))
        else:
            lam, base = e.scheduler.lr_lambdas[0], e.scheduler.base_lrs[0]
            columns.append(np.array([base * lam(t) for t in range(total)], dtype=np.float64))
    return np.stack(columns, axis=1)


def stacked(probe, exps: list[Experiment]):
    """The group's form of one of member 0's probes (vector.probes.why_not has let it in)."""
    if isinstance(probe, Noise):
        return StackedNoise(probe, len(exps), exps[0].knobs.device)
    betas = thresholds([e.optimizer for e in exps])
    return StackedSharpness(probe, betas, len(exps), exps[0].knobs.device)


def stack(exps: list[Experiment], seeds: list[int], probes: list | None = None) -> Group:
    """The group the loop trains, with `probes` (default: exps[0]'s): a sweep's first job is the
    one built with them (build_member builds none), and a later piece has other members."""
    base = exps[0]
    model_stack = Stack([e.model for e in exps])
    data, dtype = base.data, base.knobs.dtype
    labels = data.y_train if data.task == "classification" else None
    held_out = None
    if len(data.x_eval):
        target = base.loss_fn.targets(data.y_eval, data.num_classes, dtype)
        held_out = (data.x_eval, target, data.y_eval if labels is not None else None)
    l2 = None
    if any(e.knobs.l2 for e in exps):
        l2 = torch.tensor([e.knobs.l2 for e in exps], dtype=dtype, device=base.knobs.device)
    k = len(exps)
    return Group(
        model=base.model, loss_fn=base.loss_fn, stack=model_stack,
        batches=VectorBatches(base.batches, seeds),
        optimizer=VectorOptimizer([e.optimizer for e in exps], model_stack.flat),
        lrs=lr_table(exps), l2=l2, held_out=held_out,
        train_set=(base.batches.x, base.batches.y, labels),
        alive=torch.ones(k, 1, dtype=torch.bool, device=base.knobs.device), examples=[None] * k,
        widest=max((max(m.in_features, m.out_features) for m in base.model.modules()
                    if isinstance(m, torch.nn.Linear)), default=0),
        probes=[stacked(p, exps) for p in (base.probes if probes is None else probes)],
        written_out=backprop.supported(base.model, base.loss_fn),
    )  # fmt: skip


def member_bytes(exp: Experiment) -> tuple[int, int, int]:
    """(bytes each member needs; activations per member of the noise probe's full-gradient
    pass, every layer's width over the training set; their cap for the whole group, a chunk of
    rows being sized so that its widest layer holds ROWS_ELEMENTS):
    parameters, gradients and two optimizer moments, the widest activations of a batch
    (forward and backward), of an evaluation chunk, of the noise probe's batch, and of the
    sharpness probe's batch (its graph of gradients kept for the Hessian-vector products)."""
    size = torch.finfo(exp.knobs.dtype).bits // 8
    params = sum(p.numel() for p in exp.model.parameters())
    widths = [p.shape[0] for n, p in exp.model.named_parameters() if n.endswith("weight")] or [1]
    batch = exp.batches.size * exp.batches.accumulate
    rows = min(8192, max(exp.data.n_train, len(exp.data.x_eval)))
    per_member = size * (4 * params + 4 * batch * sum(widths) + 2 * rows * max(widths))
    full = cap = 0
    for probe in exp.probes:  # the sharpness probe's double backward keeps ~3× its activations
        if isinstance(probe, Noise):  # a and δ of the batch, G and the batch's mean gradient
            per_member += size * (4 * batch * sum(widths) + 2 * params)
            full = exp.data.n_train * sum(widths)
            cap = ROWS_ELEMENTS * sum(widths) // max(widths)
            continue
        probed = {"current": batch, None: exp.data.n_train}.get(probe.batch, probe.batch)
        per_member += size * 6 * int(probed) * sum(widths)
    return per_member, full, cap


def fitting(exp: Experiment) -> int:
    """How many members fit in half the memory free on the run's device (member_bytes), with
    the noise probe's pass over the training set for G: each layer's input, output and their
    gradients (4×) of a chunk of rows, which is capped whatever the group's size."""
    per_member, full, cap = member_bytes(exp)
    size = torch.finfo(exp.knobs.dtype).bits // 8

    def need(k: int) -> int:
        return k * per_member + size * 4 * min(cap, k * full)

    budget = available_bytes(exp.knobs.device) // 2
    if need(1) > budget:
        raise ConfigError("hydra.launcher.max_members", "null", f"one member needs "
                          f"{need(1) / 1e9:.3g} GB, more than half the {2 * budget / 1e9:.3g}"
                          f" GB free on {exp.knobs.device}")  # fmt: skip
    low, high = 1, 4096  # need() grows with k: the most members within the budget
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if need(mid) <= budget else (low, mid - 1)
    return low
