"""K members of one model as one batched model: every parameter a [K, …] view of one [K, P]
buffer (its gradient a view of another), a forward pass over all members at once, and each
member's loss. What cannot be batched says why (the group then runs one job after another)."""

from __future__ import annotations

import sys
import warnings
from itertools import pairwise
from types import SimpleNamespace

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from gradexp import runtime
from gradexp.losses import CrossEntropyLoss, HingeLoss, MSELoss

# The views' gradients are views too, and autograd accumulates into them in place; it warns that
# a non-contiguous parameter cannot follow its preferred gradient layout, which is the point.
warnings.filterwarnings("ignore", message="grad and param do not obey the gradient layout")
ELEMENTWISE = (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.Identity, nn.LeakyReLU, nn.ELU, nn.SiLU)


def function(obj, name: str = "FunctionModel") -> bool:
    """Whether obj is gradexp.function's `name` (FunctionModel, ObjectiveLoss). That module
    is imported only where a model=function run built one: importing it here would load sympy
    (0.3 s of every vectorised sweep's start-up) for the MLPs that never use it."""
    module = sys.modules.get("gradexp.function")
    return module is not None and isinstance(obj, getattr(module, name))


def why_not(model: nn.Module, loss_fn: nn.Module) -> str | None:
    """Why this model or loss cannot be trained as a stack (None: it can)."""
    if function(model):
        return None
    if not isinstance(model, nn.Sequential):
        return f"the model {type(model).__name__} is not an nn.Sequential of Linear layers"
    if type(model).forward is not nn.Sequential.forward:
        return f"the model {type(model).__name__} has a forward of its own (not nn.Sequential's)"
    for layer in model:
        if not isinstance(layer, (nn.Linear, *ELEMENTWISE)):
            return f"its layer {type(layer).__name__} is neither nn.Linear nor elementwise"
    linears = [id(m) for m in model if isinstance(m, nn.Linear)]
    if len(linears) != len(set(linears)):
        return "a Linear layer used twice (tied weights) has no batched form"
    for layer in model:  # one in place before any Linear would write into the data set
        if isinstance(layer, nn.Linear):
            break
        if getattr(layer, "inplace", False):
            return f"its in-place {type(layer).__name__} before the first Linear layer"
    if not isinstance(loss_fn, CrossEntropyLoss | MSELoss | HingeLoss):
        return f"the loss {type(loss_fn).__name__} has no batched form"
    if loss_fn.reduction != "mean":
        return f"the loss's reduction={loss_fn.reduction} has no batched form (only mean)"
    if getattr(loss_fn, "weight", None) is not None:
        return "class weights (loss.weight) have no batched form"
    if getattr(loss_fn, "ignore_index", -100) != -100:
        return f"loss.ignore_index={loss_fn.ignore_index} has no batched form"
    return None


class Stack:
    """The trainable parameters of K models of one architecture, rows of one buffer."""

    def __init__(self, models: list[nn.Module]):
        named = [(n, p) for n, p in models[0].named_parameters() if p.requires_grad]
        self.names = [n for n, _ in named]
        self.shapes = [p.shape for _, p in named]
        sizes = [p.numel() for _, p in named]
        bounds = [sum(sizes[:i]) for i in range(len(sizes) + 1)]
        self.slices = list(pairwise(bounds))
        first = named[0][1]
        k = len(models)
        self.flat = torch.empty(k, bounds[-1], dtype=first.dtype, device=first.device)
        self.grad = torch.zeros_like(self.flat)
        for row, model in enumerate(models):
            own = dict(model.named_parameters())
            for name, (a, b) in zip(self.names, self.slices):
                self.flat[row, a:b] = own[name].detach().reshape(-1)
        self.params: dict[str, Tensor] = {}
        for name, shape, (a, b) in zip(self.names, self.shapes, self.slices):
            view = self.flat[:, a:b].view(k, *shape).requires_grad_()
            view.grad = self.grad[:, a:b].view(k, *shape)
            self.params[name] = view

    @property
    def members(self) -> int:
        return self.flat.shape[0]

    def member(self, k: int) -> dict[str, Tensor]:
        """Member k's state_dict, loadable into the ordinary model."""
        return {n: self.params[n][k].detach().clone() for n in self.names}

    def load_member(self, k: int, state: dict[str, Tensor]) -> None:
        with torch.no_grad():
            for name, (a, b) in zip(self.names, self.slices):
                self.flat[k, a:b] = state[name].reshape(-1).to(self.flat)

    def layer_norms(self, buffer: Tensor) -> list[Tensor]:
        """The L2 norm of each parameter of each member: one [K] tensor per parameter."""
        return [torch.linalg.vector_norm(buffer[:, a:b], dim=1) for a, b in self.slices]


def forward(model: nn.Module, stack: Stack, x: Tensor, kept: list | None = None) -> Tensor:
    """Every member's output: x is [K, B, d] (or [1, B, d], one batch for all); [K, B, out].
    For model=function, f at each member's point: [K]. `kept` collects each nn.Linear's
    (name, input, output), for probes that need them (gradexp.vector.noise)."""
    if function(model):
        point = {s: stack.params[s.name] for s in model.symbols}
        return sys.modules["gradexp.function"].evaluate(model.expression, point)
    h = x
    for name, layer in model._modules.items():  # (named_children skips a repeat)
        if not isinstance(layer, nn.Linear):
            h = layer(h)
            continue
        a = h
        h = StackedLinear.apply(h, stack.params[f"{name}.weight"], stack.params.get(f"{name}.bias"))
        if kept is not None:
            kept.append((name, a, h))
    return h


class StackedLinear(torch.autograd.Function):
    """Every member's h Wₖᵀ + bₖ (h [K or 1, B, in], W [K, out, in], b [K, out] or None), with
    the backward written out so that each product takes its fast shape: the weight's gradient
    as gᵀh ([K, out, B] @ [K, B, in]), where autograd's baddbmm computes (hᵀg)ᵀ, 6× slower for
    the digits MLP's 10-wide output layer (32 members × 64 rows: 0.58 ms against 0.10; 8 × 1,438
    rows: 3.3 against 0.55); the input's only where it is needed (never for the data). Its
    backward is made of torch ops, so it can be differentiated again (the sharpness probe's
    Hessian-vector products)."""

    @staticmethod
    def forward(ctx, h: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        # (not setup_context: its apply binds the arguments by inspect.signature, ~40 µs a call)
        ctx.save_for_backward(h, weight)
        ctx.bias = bias is not None
        return linear_forward(h, weight, bias)

    @staticmethod
    def backward(ctx, g: Tensor):
        h, weight = ctx.saved_tensors
        dh = dw = db = None
        if ctx.needs_input_grad[0]:
            dh = torch.bmm(g, weight)
            dh = dh if h.shape[0] == g.shape[0] else dh.sum(0, keepdim=True)
        if ctx.needs_input_grad[1]:
            dw = torch.bmm(g.transpose(1, 2), h.expand(g.shape[0], -1, -1))
        if ctx.bias and ctx.needs_input_grad[2]:
            db = g.sum(1)
        return dh, dw, db


NARROW = 32  # an output this narrow or narrower is computed as W hᵀ (see linear_forward)


def linear_forward(h: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """Every member's h Wₖᵀ + bₖ, [K, B, out] (h [K or 1, B, in]). A narrow output (the
    classes) is computed as Wₖ hᵀ, [K, out, B], and handed on as its transpose: 3.6× faster for
    the digits MLP's 10-wide layer (32 members × 64 rows: 0.10 ms against 0.38; 8 × 1,438 rows:
    0.9 against 1.8), and the cross-entropy's log-softmax then reads it contiguous. It is written
    into a tensor of its own with those strides, not returned as a view (an in-place activation
    after a custom Function's view is refused by autograd), by out=: so it runs with autograd
    off, as it does inside StackedLinear's forward and gradexp.vector.backprop."""
    h = h.expand(weight.shape[0], -1, -1)
    k, rows, out = weight.shape[0], h.shape[1], weight.shape[1]
    if out <= NARROW and rows > 1:
        y = h.new_empty_strided((k, rows, out), (out * rows, 1, rows))
        if bias is None:
            torch.bmm(weight, h.transpose(1, 2), out=y.transpose(1, 2))
        else:
            torch.baddbmm(bias.unsqueeze(2), weight, h.transpose(1, 2), out=y.transpose(1, 2))
        return y
    if bias is None:
        return torch.bmm(h, weight.transpose(1, 2))
    return torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2))


def losses(loss_fn: nn.Module, out: Tensor, target: Tensor) -> Tensor:
    """Each member's mean loss, [K], as loss_fn would compute it on that member alone."""
    if function(loss_fn, "ObjectiveLoss"):
        return out
    k, b = out.shape[0], out.shape[1]
    if isinstance(loss_fn, MSELoss):
        return (out - target).square().flatten(1).mean(1)
    if isinstance(loss_fn, CrossEntropyLoss):
        return cross_entropy(out, target.expand(k, b), loss_fn.label_smoothing)
    if isinstance(loss_fn, HingeLoss):
        labels = target.expand(k, b).reshape(-1)
        each = F.multi_margin_loss(out.reshape(k * b, -1), labels, p=loss_fn.p,
                                   margin=loss_fn.margin, reduction="none")  # fmt: skip
        return each.view(k, b).mean(1)
    raise TypeError(f"no batched form of {type(loss_fn).__name__}")


def cross_entropy(out: Tensor, labels: Tensor, smoothing: float = 0.0) -> Tensor:
    """Each member's mean softmax cross-entropy (out [K, B, C], labels [K, B]), torch's
    formula, label smoothing included. The log-softmax runs across the classes with the batch
    as the inner, vectorised dimension: along a last dimension of 10 classes, torch's kernel
    (F.cross_entropy) took 5× longer forward and backward ([32, 64, 10]: 0.69 ms against
    0.24). One sample per member keeps torch's own: there it is the faster."""
    k, b = labels.shape
    if b == 1:
        each = F.cross_entropy(out.reshape(k, -1), labels.reshape(-1), reduction="none",
                               label_smoothing=smoothing)  # fmt: skip
        return each.view(k, b).mean(1) + 0.0  # its "none" gives -0.0 where its mean gives +0.0
    logp = F.log_softmax(out.transpose(1, 2), dim=1)  # [K, C, B]
    # 0 − mean, not −mean: an exact 0 is +0.0, as F.cross_entropy's mean gives (not -0.0)
    nll = 0.0 - logp.gather(1, labels.unsqueeze(1)).squeeze(1).mean(1)
    if not smoothing:
        return nll
    # torch's order: the batch means first, then ε/C of the summed log-probabilities (so that
    # logits near overflow give inf exactly where F.cross_entropy does)
    return (1 - smoothing) * nll + smoothing * (-logp.sum(1).mean(1) / logp.shape[1])


# The widest activations of a chunk of members stay about this small: 1.5× the L2 cache. Measured
# (32 digits MLPs, a written-out step, 1 thread, 1 MiB L2): at 1,437 rows a chunk of 2 members
# (1.4 MB) took 39 ms, of 4 45, of 8 (5.9 MB) 49, all 32 at once 55; at 360 rows 4–8 members best.
CACHE_BYTES = 3 * runtime.l2_bytes() // 2


def chunks(g, batch: int):
    """The members in pieces whose widest activations fit the cache (on the CPU: a full batch
    of K members overflows it and each layer then runs from memory, ~1.5× slower): (rows,
    stand-in stack) pairs; one piece, the stack itself, where everything fits or on a GPU."""
    k, stack = g.stack.members, g.stack
    per_member = batch * g.widest * stack.flat.element_size()
    size = max(1, CACHE_BYTES // max(per_member, 1))
    if stack.flat.device.type != "cpu" or size >= k:
        return [(None, stack)]
    return [(slice(a, a + size),
             SimpleNamespace(params={n: p[a : a + size] for n, p in stack.params.items()},
                             members=min(size, k - a)))
            for a in range(0, k, size)]  # fmt: skip


def pick(t: Tensor, rows: slice | None) -> Tensor:
    """The chunk's rows of a per-member tensor ([K, …]); a tensor shared by all ([1, …]) whole."""
    return t if rows is None or t.shape[0] == 1 else t[rows]
