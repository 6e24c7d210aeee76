"""Gradient, parameter and update norms from fused foreach kernels."""

from __future__ import annotations

import torch
from torch import Tensor


def norms(tensors: list[Tensor]) -> Tensor:
    """The L2 norm of each tensor, stacked: one fused kernel, no host sync."""
    return torch.stack(torch._foreach_norm(tensors))


def step_row(loss: Tensor, penalty: Tensor | None, grads: list[Tensor]) -> list[Tensor]:
    """[loss, (λ‖θ‖²), ‖∇J_layer‖…] as 0-d tensors: what the loop records every step. One fused
    kernel and no stacking; the global norm is composed from the layer norms at flush time."""
    head = [loss] if penalty is None else [loss, penalty]
    return [*head, *torch._foreach_norm(grads)]


@torch.no_grad()
def snapshot(params: list[Tensor]) -> list[Tensor]:
    """Copies of the parameters, in one fused kernel."""
    return torch._foreach_mul(params, 1.0)


@torch.no_grad()
def update_stats(before: list[Tensor], after: list[Tensor]) -> dict[str, Tensor]:
    """‖θ‖ after the step, ‖Δθ‖ and ‖Δθ‖/‖θ‖: one fused norm over θ and Δθ together."""
    layer = norms([*after, *torch._foreach_sub(after, before)]).view(2, -1)
    param, delta = torch.linalg.vector_norm(layer, dim=1).unbind()
    return {"param/norm": param, "update/norm": delta, "update/ratio": delta / param}
