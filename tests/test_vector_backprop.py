"""The vectorised step's backpropagation written out (gradexp.vector.backprop) against autograd on
each member's own ordinary model: every activation, every loss it takes, one row and many,
shared and per-member inputs, a frozen member and a NaN one."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradexp.losses import CrossEntropyLoss, HingeLoss, MSELoss
from gradexp.models import MLP
from gradexp.vector import backprop
from gradexp.vector.stack import NARROW, Stack, forward, linear_forward, losses, why_not

ACTIVATIONS = {
    "relu": nn.ReLU(), "relu_inplace": nn.ReLU(inplace=True), "tanh": nn.Tanh(),
    "sigmoid": nn.Sigmoid(), "identity": nn.Identity(), "gelu": nn.GELU(),
    "gelu_tanh": nn.GELU(approximate="tanh"), "silu": nn.SiLU(),
    "leaky_relu": nn.LeakyReLU(0.2, inplace=True), "elu": nn.ELU(0.5),
}  # fmt: skip
LOSSES = {"ce": lambda: CrossEntropyLoss(), "ce_smoothing": lambda: CrossEntropyLoss(
    label_smoothing=0.2), "mse": lambda: MSELoss()}  # fmt: skip
K, D, C = 3, 4, 3


WIDE = NARROW + 8  # one hidden layer wider than NARROW: both forms of the layer are used


def members(act: nn.Module, bias: bool = True, dtype=torch.float64) -> list[nn.Sequential]:
    torch.manual_seed(0)
    return [nn.Sequential(nn.Linear(D, WIDE, bias=bias), act, nn.Linear(WIDE, 5, bias=bias), act,
                          nn.Linear(5, C, bias=bias)).to(dtype) for _ in range(K)]  # fmt: skip


def data(loss: str, rows: int, shared: bool, dtype=torch.float64):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(1 if shared else K, rows, D, dtype=dtype, generator=gen) * 2
    if loss == "mse":
        return x, torch.randn(1 if shared else K, rows, C, dtype=dtype, generator=gen)
    return x, torch.randint(0, C, (1 if shared else K, rows), generator=gen)


@pytest.mark.parametrize("shared", [False, True], ids=["own_inputs", "shared_input"])
@pytest.mark.parametrize("rows", [1, 7])
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_the_written_out_step_is_autograds_on_each_members_own_model(act, loss, rows, shared):
    """Each member's loss and weight·gradient equal its own nn.Sequential's through autograd
    (1e-12), a member of weight 0 gets an exact zero gradient. The activation module is used
    twice in each model, as a Sequential may (named_children would skip the repeat)."""
    models = members(ACTIVATIONS[act])
    stack, loss_fn = Stack(models), LOSSES[loss]()
    assert backprop.supported(models[0], loss_fn)
    x, y = data(loss, rows, shared)
    weight = torch.tensor([1.0, 0.25, 0.0], dtype=torch.float64)
    grads = {n: p.grad for n, p in stack.params.items()}
    got = backprop.forward_backward(models[0], stack.params, grads, loss_fn, x, y, weight)
    through_autograd = losses(loss_fn, forward(models[0], stack, x), y)  # the other path
    torch.testing.assert_close(got, through_autograd.detach(), rtol=1e-12, atol=1e-15)
    for k, model in enumerate(models):
        own_x, own_y = x[0 if shared else k], y[0 if shared else k]
        alone = loss_fn(model(own_x.clone()), own_y)
        (weight[k] * alone).backward()
        torch.testing.assert_close(got[k], alone.detach(), rtol=1e-12, atol=1e-15)
        for name, p in model.named_parameters():
            torch.testing.assert_close(stack.grad[k, stack.slices[stack.names.index(name)][0]:
                                                  stack.slices[stack.names.index(name)][1]],
                                       p.grad.reshape(-1), rtol=1e-12, atol=1e-15)  # fmt: skip
    assert (stack.grad[2] == 0).all()


@pytest.mark.parametrize("rows", [1, 7])
@pytest.mark.parametrize("loss", LOSSES)
def test_float32_members_are_their_own_models_too(loss, rows):
    """In float32 the written-out step agrees with each member's own model to float32's
    precision (the sums are the same, in another order)."""
    models = members(nn.GELU(), dtype=torch.float32)
    stack, loss_fn = Stack(models), LOSSES[loss]()
    x, y = data(loss, rows, False, torch.float32)
    grads = {n: p.grad for n, p in stack.params.items()}
    weight = torch.ones(K)
    got = backprop.forward_backward(models[0], stack.params, grads, loss_fn, x, y, weight)
    for k, model in enumerate(models):
        alone = loss_fn(model(x[k]), y[k])
        alone.backward()
        torch.testing.assert_close(got[k], alone.detach(), rtol=1e-6, atol=1e-7)
        mine = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
        torch.testing.assert_close(stack.grad[k], mine, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cuts", [((0, 8), (8, 16), (16, 19)), ((0, 19),)], ids=["3", "1"])
@pytest.mark.parametrize("written_out", [True, False])
def test_the_loops_step_is_the_same_either_way(written_out, cuts, monkeypatch):
    """gradexp.vector.train.forward_backward with three micro-batches (8, 8 and 3 rows: their
    shares of the update) or one, an L2 term, members in chunks of two and one frozen member
    gives each member the loss and gradient of its own model: through the written-out backward
    and through autograd alike, over a gradient buffer left holding NaN."""
    from types import SimpleNamespace

    from gradexp.vector import stack as vector_stack
    from gradexp.vector import train

    monkeypatch.setattr(vector_stack, "CACHE_BYTES", 2 * 8 * WIDE * 8)  # two members a chunk
    models = members(nn.ReLU())
    stack, loss_fn = Stack(models), CrossEntropyLoss()
    l2 = torch.tensor([0.01, 0.02, 0.03], dtype=torch.float64)
    g = SimpleNamespace(model=models[0], loss_fn=loss_fn, stack=stack, l2=l2, widest=WIDE,
                        written_out=written_out)  # fmt: skip
    x, y = data("ce", 19, shared=False)
    micro = [(x[:, a:b], y[:, a:b]) for a, b in cuts]
    alive = torch.tensor([[True], [False], [True]])
    assert len(vector_stack.chunks(g, 8)) == 2
    stack.grad.fill_(float("nan"))  # the last step's, as the loop leaves it
    loss, penalty = train.forward_backward(g, micro, alive)
    for k in (0, 2):
        model = models[k]
        total = sum(loss_fn(model(xb[k]), yb[k]) * (xb.shape[1] / 19) for xb, yb in micro)
        reg = l2[k] * sum(p.square().sum() for p in model.parameters())
        (total + reg).backward()
        torch.testing.assert_close(loss[k], total.detach(), rtol=1e-12, atol=1e-15)
        torch.testing.assert_close(penalty[k], reg.detach(), rtol=1e-12, atol=1e-15)
        mine = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
        torch.testing.assert_close(stack.grad[k], mine, rtol=1e-12, atol=1e-15)
    assert (stack.grad[1] == 0).all()


def test_gradients_accumulate_and_a_nan_member_stays_its_own():
    """A second call adds to the gradients (accumulated micro-batches); a member whose
    parameters are NaN, frozen at weight 0, leaves every other member's numbers as they are."""
    models = members(nn.Tanh(), bias=False)
    stack, loss_fn = Stack(models), CrossEntropyLoss()
    x, y = data("ce", 5, shared=False)
    grads = {n: p.grad for n, p in stack.params.items()}
    weight = torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64)
    backprop.forward_backward(models[0], stack.params, grads, loss_fn, x, y, weight)
    once = stack.grad.clone()
    backprop.forward_backward(models[0], stack.params, grads, loss_fn, x, y, weight)
    torch.testing.assert_close(stack.grad, 2 * once, rtol=1e-15, atol=0)
    stack.grad.zero_()
    with torch.no_grad():
        stack.flat[1] = float("nan")
    weight[1] = 0.0
    loss = backprop.forward_backward(models[0], stack.params, grads, loss_fn, x, y, weight)
    assert loss[1].isnan() and loss[[0, 2]].isfinite().all()
    torch.testing.assert_close(stack.grad[[0, 2]], once[[0, 2]], rtol=1e-15, atol=0)


@pytest.mark.parametrize("rows", [1, 7])
@pytest.mark.parametrize("shared", [False, True], ids=["own_inputs", "shared_input"])
def test_one_micro_batch_writes_over_the_old_gradient(rows, shared):
    """write=True (one micro-batch, no zero_() first): whatever the buffer held (NaN included)
    is replaced by exactly what zero_() and accumulating give, every parameter's rows, a
    frozen member's exact 0 too."""
    models = members(nn.ReLU())
    stack, loss_fn = Stack(models), CrossEntropyLoss()
    x, y = data("ce", rows, shared)
    grads = {n: p.grad for n, p in stack.params.items()}
    weight = torch.tensor([1.0, 0.5, 0.0], dtype=torch.float64)
    stack.grad.zero_()
    added = backprop.forward_backward(models[0], stack.params, grads, loss_fn, x, y, weight)
    expected = stack.grad.clone()
    stack.grad.fill_(float("nan"))
    stack.grad[0, :5] = 7.0
    written = backprop.forward_backward(models[0], stack.params, grads, loss_fn, x, y, weight,
                                        write=True)  # fmt: skip
    torch.testing.assert_close(written, added, rtol=0, atol=0)
    torch.testing.assert_close(stack.grad, expected, rtol=0, atol=0)
    assert (stack.grad[2] == 0).all() and expected.abs().sum() > 0


def test_what_it_does_not_take_goes_through_autograd():
    """Only exact Linear layers, all trained, and the activations it has the derivatives of,
    and the cross-entropy or the MSE: anything else (dropout, a subclass, the hinge loss, a
    frozen layer) is not written out, and the step runs through autograd."""
    mlp = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2))
    assert backprop.supported(mlp, CrossEntropyLoss()) and backprop.supported(mlp, MSELoss())
    assert not backprop.supported(mlp, HingeLoss())
    assert not backprop.supported(nn.Sequential(nn.Linear(2, 3), nn.Dropout(0.1)), MSELoss())

    class Clipped(nn.ReLU):
        def forward(self, h):
            return super().forward(h).clamp(max=1)

    assert not backprop.supported(nn.Sequential(nn.Linear(2, 3), Clipped()), MSELoss())

    class Doubled(nn.Sequential):
        def forward(self, h):
            return 2 * super().forward(h)

    doubled = Doubled(nn.Linear(2, 3))
    assert not backprop.supported(doubled, MSELoss())
    assert "a forward of its own" in why_not(doubled, MSELoss())  # nor stacked at all
    tied = nn.Linear(3, 3)
    assert "tied weights" in why_not(nn.Sequential(tied, nn.Tanh(), tied), MSELoss())
    into_data = nn.Sequential(nn.LeakyReLU(inplace=True), nn.Linear(3, 2))
    assert "in-place LeakyReLU before the first Linear" in why_not(into_data, MSELoss())
    assert not backprop.supported(mlp, MSELoss(reduction="sum"))
    assert backprop.supported(MLP(4, 3, [8]), CrossEntropyLoss())  # gradexp's own MLP is
    assert backprop.supported(MLP(4, 1, [8, 8], activation="tanh"), MSELoss())
    assert not backprop.supported(nn.Sequential(nn.ReLU()), MSELoss())  # nothing to train
    mlp[0].weight.requires_grad_(False)  # a frozen layer: not a parameter of the stack
    assert not backprop.supported(mlp, MSELoss())


@pytest.mark.parametrize("rows", [1, 9])
@pytest.mark.parametrize("out", [2, NARROW, NARROW + 1])
@pytest.mark.parametrize("bias", [True, False])
def test_narrow_outputs_are_the_layers_formula(rows, out, bias):
    """A narrow output computed as W hᵀ (and handed on transposed) is h Wᵀ + b still."""
    gen = torch.Generator().manual_seed(2)
    h = torch.randn(K, rows, 5, dtype=torch.float64, generator=gen)
    w = torch.randn(K, out, 5, dtype=torch.float64, generator=gen)
    b = torch.randn(K, out, dtype=torch.float64, generator=gen) if bias else None
    expected = torch.stack([nn.functional.linear(h[k], w[k], b[k] if bias else None)
                            for k in range(K)])  # fmt: skip
    torch.testing.assert_close(linear_forward(h, w, b), expected, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("rows", [1, 4])
def test_a_loss_of_exactly_zero_is_plus_zero_as_torchs(rows):
    """Saturated logits (float32: log-softmax exactly 0) give a loss of +0.0 on both paths, as
    F.cross_entropy's mean does: a summary never shows -0.0."""
    models = [nn.Sequential(nn.Linear(D, C)) for _ in range(K)]
    with torch.no_grad():
        for m in models:
            m[0].weight.zero_()
            m[0].bias.copy_(torch.tensor([200.0, 0.0, 0.0]))
    stack, loss_fn = Stack(models), CrossEntropyLoss()
    x, y = torch.randn(K, rows, D), torch.zeros(K, rows, dtype=torch.long)
    grads = {n: p.grad for n, p in stack.params.items()}
    written = backprop.forward_backward(models[0], stack.params, grads, loss_fn, x, y,
                                        torch.ones(K))  # fmt: skip
    through_autograd = losses(loss_fn, forward(models[0], stack, x), y)
    alone = loss_fn(models[0](x[0]), y[0])
    assert str(alone.item()) == "0.0"
    assert [str(v) for v in [*written.tolist(), *through_autograd.tolist()]] == ["0.0"] * 2 * K
