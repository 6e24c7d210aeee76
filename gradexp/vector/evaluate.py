"""A group's members measured at their current parameters: the mean loss and accuracy of each
on a split, and the sizes of the step just taken."""

from __future__ import annotations

import torch
from torch import Tensor

from gradexp.vector.stack import chunks, forward, losses


@torch.no_grad()
def measure(g, split: tuple, prefix: str, chunk: int = 8192) -> dict[str, Tensor]:
    """Each member's mean loss (and accuracy, for class labels) on a split, [K] each: the
    batched counterpart of gradexp.train.evaluate, in chunks of rows (g: a vector.train.Group)."""
    x, target, labels = split
    n = x.shape[0]
    total = correct = 0.0
    for a in range(0, n, chunk):
        rows = slice(a, a + chunk)
        each, right = [], []
        for _, members in chunks(g, min(n, a + chunk) - a):  # cache-sized pieces of members
            out = forward(g.model, members, x[None, rows])
            each.append(losses(g.loss_fn, out, target[None, rows]) if out.ndim > 1 else out)
            if labels is not None:  # (argmax along a contiguous last dimension: 4× faster)
                right.append((out.contiguous().argmax(2) == labels[None, rows]).double().sum(1))
        part = each[0] if len(each) == 1 else torch.cat(each)
        total = total + (part if n <= chunk else part * (min(n, a + chunk) - a))
        if labels is not None:
            correct = correct + (right[0] if len(right) == 1 else torch.cat(right))
    values = {f"{prefix}/loss": total if n <= chunk else total / n}
    if labels is not None:
        values[f"{prefix}/accuracy"] = correct / n
    return values


@torch.no_grad()
def update_stats(stack, before: Tensor) -> dict[str, Tensor]:
    """‖θ‖ after the step, ‖Δθ‖ and ‖Δθ‖/‖θ‖ per member, composed from the layers' norms."""
    param = torch.linalg.vector_norm(torch.stack(stack.layer_norms(stack.flat)), dim=0)
    delta = torch.linalg.vector_norm(torch.stack(stack.layer_norms(stack.flat - before)), dim=0)
    return {"param/norm": param, "update/norm": delta, "update/ratio": delta / param}
