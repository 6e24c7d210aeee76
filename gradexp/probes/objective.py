"""The objective a probe measures, J(θ) = loss(model(x), y) + λ‖θ‖², and its derivatives as
functions of flat vectors: gradient, Hessian-vector products (double backward), exact Hessian."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call


def trainable(model: nn.Module) -> dict[str, Tensor]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def whole_batch(micro: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """The update's micro-batches as one batch: for mean losses, the loop's weighted sum of
    micro-batch losses is exactly the loss of this concatenation."""
    if len(micro) == 1:
        return micro[0]
    return torch.cat([x for x, _ in micro]), torch.cat([y for _, y in micro])


def flat(tensors) -> Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def unflat(vector: Tensor, shapes: list[torch.Size]) -> list[Tensor]:
    return [v.view(s) for v, s in zip(vector.split([s.numel() for s in shapes]), shapes)]


def objective(
    model: nn.Module,
    loss_fn: nn.Module,
    x: Tensor,
    y: Tensor,
    l2: float,
    params: dict[str, Tensor] | None = None,
) -> Tensor:
    """J at the model's parameters, or at `params` (a dict like named_parameters) if given."""
    out = model(x) if params is None else functional_call(model, params, (x,))
    loss = loss_fn(out, y)
    if l2:
        values = trainable(model).values() if params is None else params.values()
        loss = loss + l2 * sum(p.square().sum() for p in values)
    return loss


def gradient(model, loss_fn, x, y, l2) -> Tensor:
    """∇J as a flat vector, by autograd.grad: the parameters' .grad stays as the loop left it."""
    params = list(trainable(model).values())
    return flat(torch.autograd.grad(objective(model, loss_fn, x, y, l2), params))


def hvp_operator(model, loss_fn, x, y, l2) -> tuple[Tensor, Callable[[Tensor], Tensor]]:
    """(∇J, v ↦ Hv): one forward and backward with create_graph, then each product is one more
    backward through that graph (double backward), so k products cost one graph, not k."""
    params = list(trainable(model).values())
    grads = torch.autograd.grad(objective(model, loss_fn, x, y, l2), params, create_graph=True)

    def hvp(v: Tensor) -> Tensor:
        vs = unflat(v, [p.shape for p in params])
        hv = torch.autograd.grad(grads, params, vs, retain_graph=True, allow_unused=True)
        return flat([torch.zeros_like(p) if h is None else h for h, p in zip(hv, params)])

    return flat(g.detach() for g in grads), hvp


def exact_hessian(model, loss_fn, x, y, l2) -> Tensor:
    """The P×P Hessian of J by torch.func: for small models only."""
    names, params = zip(*trainable(model).items())
    shapes = [p.shape for p in params]

    def j(theta: Tensor) -> Tensor:
        parts = unflat(theta, shapes)
        return objective(model, loss_fn, x, y, l2, dict(zip(names, parts)))

    # Reverse over reverse: torch.func.hessian (forward over reverse) loads deprecated
    # TorchScript decompositions and warns.
    return torch.func.jacrev(torch.func.jacrev(j))(flat(p.detach() for p in params))


def jacobian(model: nn.Module, x: Tensor) -> Tensor:
    """∂ model(x) / ∂θ as an (outputs × P) matrix by torch.func.jacrev: for small models only."""
    names, params = zip(*trainable(model).items())
    shapes = [p.shape for p in params]

    def f(theta: Tensor) -> Tensor:
        parts = unflat(theta, shapes)
        return functional_call(model, dict(zip(names, parts)), (x,)).reshape(-1)

    return torch.func.jacrev(f)(flat(p.detach() for p in params))
