"""Backpropagation written out for the stacked MLPs: the chain rule layer by layer, from the
loss's gradient with respect to the outputs down to each Linear layer's weight and bias, with
no autograd graph. Each activation's derivative is torch's own backward kernel (the one autograd
runs for it), the loss's is its closed form; tested against autograd on the same stack and, in
the equivalence matrix, against each member's sequential run.

Why: at one row per member (batch=stochastic) the step is a few dozen tiny kernels, and
autograd's graph (a node per op, the gradients accumulated into the parameters' views) cost
about as much as the arithmetic. With the weight's gradient of one row as an outer product,
forward and backward of 32 digits MLPs took 0.44–0.49 ms against 0.74–0.87 through autograd;
at 64 rows 2.8–3.1 against 3.2, at the full batch 71 against 80 (same process, interleaved)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from gradexp.losses import CrossEntropyLoss, MSELoss
from gradexp.vector.stack import linear_forward as linear
from gradexp.vector.stack import why_not

aten = torch.ops.aten  # the backward kernels autograd itself runs (positional: torch ≥ 2.4)

# Each activation: (forward, derivative(grad, input, output) → grad of the input), the
# derivative being the kernel autograd runs for that module.
ACTIVATIONS: dict[type, tuple[Callable, Callable]] = {
    nn.ReLU: (lambda m, h: torch.relu(h), lambda m, g, x, y: aten.threshold_backward(g, y, 0)),
    nn.Tanh: (lambda m, h: torch.tanh(h), lambda m, g, x, y: aten.tanh_backward(g, y)),
    nn.Sigmoid: (lambda m, h: torch.sigmoid(h), lambda m, g, x, y: aten.sigmoid_backward(g, y)),
    nn.Identity: (lambda m, h: h, lambda m, g, x, y: g),
    nn.GELU: (lambda m, h: F.gelu(h, approximate=m.approximate),
              lambda m, g, x, y: aten.gelu_backward(g, x, approximate=m.approximate)),
    nn.SiLU: (lambda m, h: F.silu(h), lambda m, g, x, y: aten.silu_backward(g, x)),
    nn.LeakyReLU: (lambda m, h: F.leaky_relu(h, m.negative_slope),
                   lambda m, g, x, y: aten.leaky_relu_backward(g, x, m.negative_slope, False)),
    nn.ELU: (lambda m, h: F.elu(h, m.alpha),
             lambda m, g, x, y: aten.elu_backward(g, m.alpha, 1, 1, False, x)),
}  # fmt: skip


def supported(model: nn.Module, loss_fn: nn.Module) -> bool:
    """Whether the step can be written out: an nn.Sequential of Linear layers and the
    activations above (exact types), every parameter trained, with the cross-entropy or the
    mean squared error."""
    if why_not(model, loss_fn) is not None:  # not stacked at all (reduction, weights, …)
        return False
    if not isinstance(model, nn.Sequential) or not isinstance(loss_fn, CrossEntropyLoss | MSELoss):
        return False
    layers = all(type(m) is nn.Linear or type(m) in ACTIVATIONS for m in model)
    trained = [p.requires_grad for p in model.parameters()]
    return layers and any(trained) and all(trained)


@torch.no_grad()
def forward_backward(model: nn.Sequential, params: dict, grads: dict, loss_fn: nn.Module,
                     x: Tensor, y: Tensor, weight: Tensor,
                     write: bool = False) -> Tensor:  # fmt: skip
    """Each member's loss on (x, y), [K], with weight[k]·∇(its loss) added into `grads` (the
    parameters' gradient views), or written over them (write=True: one micro-batch, whose
    gradient is the whole of it; no zero_() pass first, no read of the old values); a member of
    weight 0 (frozen) gets an exact 0 at the outputs."""
    kept, h = [], x
    for name, layer in model._modules.items():  # (named_children skips a repeat)
        if type(layer) is nn.Linear:
            kept.append((name, layer, h, None))
            h = linear(h, params[f"{name}.weight"], params.get(f"{name}.bias"))
        else:
            out = ACTIVATIONS[type(layer)][0](layer, h)
            kept.append((name, layer, h, out))
            h = out
    loss, g = loss_and_grad(loss_fn, h, y)
    g = torch.where(weight[:, None, None] != 0, g * weight.to(g.dtype)[:, None, None], 0)
    lowest = min(i for i, (_, layer, *_) in enumerate(kept) if type(layer) is nn.Linear)
    for i in range(len(kept) - 1, lowest - 1, -1):
        name, layer, a, out = kept[i]
        if out is not None:
            g = ACTIVATIONS[type(layer)][1](layer, g, a, out)
            continue
        w, gw = params[f"{name}.weight"], grads[f"{name}.weight"]
        if g.shape[1] == 1 and write:  # one row: the outer product (5× faster than bmm)
            torch.mul(g.transpose(1, 2), a, out=gw)
        elif g.shape[1] == 1:
            gw.addcmul_(g.transpose(1, 2), a)
        elif write:
            torch.bmm(g.transpose(1, 2), a.expand(g.shape[0], -1, -1), out=gw)
        else:
            gw.add_(torch.bmm(g.transpose(1, 2), a.expand(g.shape[0], -1, -1)))
        if f"{name}.bias" in grads and write:
            torch.sum(g, 1, out=grads[f"{name}.bias"])
        elif f"{name}.bias" in grads:
            grads[f"{name}.bias"].add_(g.sum(1))
        if i > lowest:
            g = torch.bmm(g, w)
    return loss


def loss_and_grad(loss_fn: nn.Module, out: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Each member's mean loss, [K], and its gradient with respect to `out` ([K, B, C])."""
    k, b = out.shape[0], out.shape[1]
    if isinstance(loss_fn, MSELoss):
        diff = out - target
        n = diff[0].numel()
        return diff.square().flatten(1).mean(1), diff * (2 / n)
    labels = target.expand(k, b)
    logits = out.transpose(1, 2)  # [K, C, B]: contiguous where the last layer wrote it so
    logp = F.log_softmax(logits, dim=1)
    eps, classes = loss_fn.label_smoothing, logp.shape[1]
    # 0 − mean, not −mean: an exact 0 is +0.0, as F.cross_entropy's mean gives (not -0.0)
    nll = 0.0 - logp.gather(1, labels.unsqueeze(1)).squeeze(1).mean(1)
    dlogp = torch.full_like(logp, -eps / (classes * b) if eps else 0.0)
    dlogp.scatter_add_(1, labels.unsqueeze(1), torch.full_like(logp[:, :1], -(1 - eps) / b))
    dz = aten._log_softmax_backward_data(dlogp, logp, 1, logp.dtype)
    loss = nll if not eps else (1 - eps) * nll + eps * (-logp.sum(1).mean(1) / classes)
    return loss, dz.transpose(1, 2)
