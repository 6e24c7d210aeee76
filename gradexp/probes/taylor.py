"""Taylor check: does the loss change of a gradient step match its first- and second-order
predictions? J(θ − ηg) − J(θ) against −η‖g‖² and −η‖g‖² + ½η² gᵀHg, on the update's batch."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gradexp.probes.objective import hvp_operator, objective, trainable, unflat, whole_batch
from gradexp.probes.schedule import Scheduled


class Taylor(Scheduled):
    """taylor/actual, taylor/first_order, taylor/second_order for the plain gradient step
    θ − ηg at this step's η (the step SGD without momentum takes; other optimizers move
    elsewhere, so for them this measures the landscape along −g, not their own update).
    For a quadratic J the second-order prediction is exact."""

    def __init__(self, every: int | str = 10, per_decade: int = 10, *, data=None, l2=0.0):
        super().__init__(every, per_decade)
        self.l2 = l2

    def __call__(self, *, model: nn.Module, micro, loss_fn, optimizer) -> dict[str, Tensor]:
        x, y = whole_batch(micro)
        lr = optimizer.param_groups[0]["lr"]
        g, hvp = hvp_operator(model, loss_fn, x, y, self.l2)
        params = trainable(model)
        moved = unflat(-lr * g, [p.shape for p in params.values()])
        with torch.no_grad():
            before = objective(model, loss_fn, x, y, self.l2)
            stepped = {n: p.detach() + d for (n, p), d in zip(params.items(), moved)}
            after = objective(model, loss_fn, x, y, self.l2, stepped)
        first = -lr * g.square().sum()
        second = first + 0.5 * lr**2 * torch.dot(g, hvp(g).detach())
        return {
            "taylor/actual": after - before,
            "taylor/first_order": first,
            "taylor/second_order": second,
        }
