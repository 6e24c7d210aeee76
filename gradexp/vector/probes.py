"""Probes a group measures as one: the sharpness of every member at once (the gradient noise
is gradexp.vector.noise). The Hessian of Σ_k J_k(θ_k) is block-diagonal over the members, so
one double backward through the batched forward gives every member's own Hessian-vector
product H_k v_k; power iteration then runs row by row, each member stopping at the product
its sequential run stops at."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from gradexp.probes.curvature import Sharpness
from gradexp.probes.noise import Noise
from gradexp.vector.stack import forward, losses


def why_not(probes: list) -> str | None:
    """Why these probes cannot be measured on the stack (None: they can)."""
    for probe in probes:
        if isinstance(probe, Noise):
            continue
        if not isinstance(probe, Sharpness):
            return f"{type(probe).__name__} is measured on one model at a time"
        if probe.method != "power":
            return (
                f"sharpness method={probe.method} is measured on one model at a time "
                "(method=power is batched)"
            )
    return None


def thresholds(optimizers: list) -> list[tuple[float, bool]] | None:
    """Each member's (momentum β, nesterov) for its threshold (2+2β)/η, as
    gradexp.probes.curvature.threshold reads them; None for optimizers without one."""
    if not all(isinstance(o, torch.optim.SGD) for o in optimizers):
        return None
    return [(o.param_groups[0].get("momentum", 0.0), bool(o.param_groups[0].get("nesterov")))
            for o in optimizers]  # fmt: skip


def unit_rows(v: Tensor) -> Tensor:
    return v / torch.linalg.vector_norm(v, dim=1, keepdim=True).clamp_min(torch.finfo(v.dtype).tiny)


class StackedSharpness:
    """gradexp.probes.curvature.Sharpness (method=power) for K members: the same schedule,
    batch, warm start (every member from the seeded random vector its own run draws), stopping
    rule and tags, measured on each member's own parameters."""

    def __init__(self, probe: Sharpness, betas: list[tuple[float, bool]] | None, k: int, device):
        self.probe, self.betas, self.k, self.device = probe, betas, k, device
        self.vectors: Tensor | None = None  # [K, P]: each member's warm start

    def due(self, step: int) -> bool:
        return self.probe.due(step)

    def member_state(self, k: int) -> dict:
        """Member k's warm start, as its own run's Sharpness.state_dict() holds it."""
        return {"vector": None if self.vectors is None else self.vectors[k].clone()}

    def load_member(self, k: int, state: dict) -> None:
        vector = state.get("vector")
        if vector is None:
            return
        if self.vectors is None:  # rows not restored yet are overwritten by their own states
            self.vectors = torch.zeros(self.k, vector.numel(), dtype=vector.dtype,
                                       device=self.device)  # fmt: skip
        self.vectors[k] = vector.to(self.vectors)

    def operator(self, g, micro):
        """(∇J stacked [K, P], V ↦ HV row by row) on the update's batch or the fixed one."""
        if self.probe.batch != "current":
            x, y = (t[None] for t in self.probe.fixed)
        elif len(micro) == 1:
            x, y = micro[0]
        else:  # the update's micro-batches as one batch, as gradexp.probes.objective.whole_batch
            x, y = torch.cat([x for x, _ in micro], dim=1), torch.cat([y for _, y in micro], dim=1)
        params = list(g.stack.params.values())
        j = losses(g.loss_fn, forward(g.model, g.stack, x), y)
        if g.l2 is not None:
            j = j + g.l2 * sum(p.square().flatten(1).sum(1) for p in params)
        j = torch.where(g.alive[:, 0], j, 0)  # a frozen member's NaN stays its own
        grads = torch.autograd.grad(j.sum(), params, create_graph=True)
        k = g.stack.members

        def hvp(v: Tensor) -> Tensor:
            parts = [v[:, a:b].view(k, *s) for (a, b), s in zip(g.stack.slices, g.stack.shapes)]
            hv = torch.autograd.grad(grads, params, parts, retain_graph=True, allow_unused=True)
            return torch.cat([torch.zeros_like(p) .flatten(1) if h is None else h.flatten(1)
                              for h, p in zip(hv, params)], dim=1)  # fmt: skip

        return torch.cat([gr.detach().flatten(1) for gr in grads], dim=1), hvp

    def __call__(self, g, micro, lrs: np.ndarray) -> dict[str, Tensor]:
        grad, hvp = self.operator(g, micro)
        if self.vectors is None:  # each member's run draws this one vector
            gen = torch.Generator(device=grad.device).manual_seed(0)
            first = torch.randn(grad.shape[1:], generator=gen, device=grad.device, dtype=grad.dtype)
            self.vectors = first.expand_as(grad).clone()
        value, self.vectors, used = power_rows(hvp, self.vectors, self.probe.iters, self.probe.tol,
                                               g.alive[:, 0])  # fmt: skip
        out = {"curvature/sharpness": value}
        if self.probe.tol:
            out["curvature/sharpness_iters"] = used.to(value.dtype)
        # On the host, in float64 as threshold() computes it, then cast: no sync, and float32
        # members get their runs' numbers to the last bit. (An lr of 0, which the config
        # checks leave only to an underflowing schedule, drops the tag for the whole group.)
        if self.betas is not None and bool((lrs > 0).all()):
            beta = np.array([b for b, _ in self.betas], dtype=np.float64)
            nesterov = np.array([n for _, n in self.betas])
            limit = np.where(
                nesterov, (2 + 2 * beta) / ((1 + 2 * beta) * lrs), (2 + 2 * beta) / lrs
            )
            out["curvature/threshold"] = torch.as_tensor(limit, dtype=value.dtype,
                                                         device=value.device)  # fmt: skip
        return out


def power_rows(hvp, start: Tensor, iters: int, tol: float, alive: Tensor):
    """gradexp.probes.eigen.power_iteration for each row of `start`: ([K] values, [K, P] unit
    vectors, [K] products used), a row that meets the relative tolerance left as it stood."""
    v = unit_rows(start)
    value = previous = torch.zeros(v.shape[0], dtype=v.dtype, device=v.device)
    used = torch.full((v.shape[0],), iters, device=v.device)
    active = alive.clone()
    for k in range(1, iters + 1):
        hv = hvp(v)
        now = (v * hv).sum(1)
        value = torch.where(active, now, value)
        v = torch.where(active[:, None], unit_rows(hv), v)
        if tol and k > 1:
            met = active & ((now - previous).abs() <= tol * now.abs())
            used = torch.where(met, k, used)
            active = active & ~met
            if not bool(active.any()):
                break
        previous = torch.where(active, now, previous)
    return value, v, used
