"""Gradient, parameter and update norms from fused foreach kernels."""

from __future__ import annotations

import torch
from torch import Tensor


def norms(tensors: list[Tensor]) -> Tensor:
    """The L2 norm of each tensor, stacked: one fused kernel, no host sync."""
    return torch.stack(torch._foreach_norm(tensors))


def step_row(loss: Tensor, penalty: Tensor | None, grads: list[Tensor]) -> Tensor:
    """[loss, (λ‖θ‖²), ‖∇J‖, ‖∇J_layer‖…]: what the loop records every step."""
    layer = norms(grads)
    head = [loss.reshape(1)] if penalty is None else [loss.reshape(1), penalty.reshape(1)]
    return torch.cat([*head, torch.linalg.vector_norm(layer).reshape(1), layer])


def update_stats(before: list[Tensor], after: list[Tensor]) -> dict[str, Tensor]:
    """‖θ‖ after the step, ‖Δθ‖ and ‖Δθ‖/‖θ‖."""
    param = torch.linalg.vector_norm(norms(after))
    delta = torch.linalg.vector_norm(norms(torch._foreach_sub(after, before)))
    return {"param/norm": param, "update/norm": delta, "update/ratio": delta / param}
