"""Per-sample gradients of J_i(θ) = loss(model(x_i), y_i) + λ‖θ‖², whose mean is the batch's ∇J.

The general route is torch.func (functional_call + vmap(grad)): any model of torch layers. The
cheap route, for models whose every parameter sits in an nn.Linear, gets per-sample squared
norms without materialising per-sample gradients: the weight gradient of sample i is δ_i a_iᵀ
(a_i the layer input, δ_i the output gradient), so ‖δ_i a_iᵀ‖² = ‖δ_i‖²‖a_i‖².
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from gradexp.probes.objective import trainable


def per_sample_grads(
    model: nn.Module, loss_fn: nn.Module, x: Tensor, y: Tensor, l2: float
) -> Tensor:
    """(n, P) matrix: row i is ∇J_i flattened in named_parameters order. The reference route."""
    params = {k: v.detach() for k, v in trainable(model).items()}
    buffers = dict(model.named_buffers())

    def one(p: dict[str, Tensor], xi: Tensor, yi: Tensor) -> Tensor:
        # A batch of one through the same loss module: a mean loss of one sample is its loss.
        loss = loss_fn(functional_call(model, (p, buffers), (xi.unsqueeze(0),)), yi.unsqueeze(0))
        if l2:
            loss = loss + l2 * sum(v.square().sum() for v in p.values())
        return loss

    rows = vmap(grad(one), in_dims=(None, 0, 0))(params, x, y)
    return torch.cat([rows[k].reshape(x.shape[0], -1) for k in params], dim=1)


def linear_only(model: nn.Module) -> bool:
    """True if every trainable parameter is the weight or bias of an nn.Linear."""
    owned = {id(p) for m in model.modules() if isinstance(m, nn.Linear) for p in m.parameters()}
    return all(id(p) in owned for p in trainable(model).values())


def linear_sample_norms(
    model: nn.Module, loss_fn: nn.Module, x: Tensor, y: Tensor, l2: float
) -> tuple[Tensor, Tensor]:
    """(‖∇J_i‖² for each i, ∇J of the batch flattened) from one forward and one backward pass
    with hooks. Needs a linear_only model on 2-D inputs and a loss that averages over samples."""
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    inputs, outputs = {}, {}

    def keep(m, args, out):
        inputs[m], outputs[m] = args[0], out

    hooks = [m.register_forward_hook(keep) for m in layers]
    try:
        loss = loss_fn(model(x), y)
    finally:
        for h in hooks:
            h.remove()
    n = x.shape[0]
    deltas = torch.autograd.grad(loss, [outputs[m] for m in layers])
    sq = torch.zeros(n, dtype=x.dtype, device=x.device)
    mean = []
    for m, d in zip(layers, deltas):
        d = d * n  # the mean loss scales each sample's output gradient by 1/n
        a = inputs[m]
        sq = sq + d.square().sum(1) * a.square().sum(1)
        mean.append(d.T @ a / n)
        if m.bias is not None:
            sq = sq + d.square().sum(1)
            mean.append(d.mean(0))
        if l2:  # ‖g_i + c‖² = ‖g_i‖² + 2⟨g_i, c⟩ + ‖c‖² with c = 2λθ, the same for every sample
            cw = 2 * l2 * m.weight.detach()
            sq = sq + 2 * ((a @ cw.T) * d).sum(1) + cw.square().sum()
            mean[-2 if m.bias is not None else -1] += cw
            if m.bias is not None:
                cb = 2 * l2 * m.bias.detach()
                sq = sq + 2 * (d @ cb) + cb.square().sum()
                mean[-1] = mean[-1] + cb
    return sq, torch.cat([g.reshape(-1) for g in mean])
