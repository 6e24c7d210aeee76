"""The batched optimizers against torch.optim, member by member, in float64."""

from __future__ import annotations

import pytest
import torch

from gradexp.vector.optim import VectorOptimizer

CASES = {
    "sgd": (torch.optim.SGD, [dict(lr=0.1), dict(lr=0.03, weight_decay=0.01)]),
    "momentum": (torch.optim.SGD, [dict(lr=0.1, momentum=0.9), dict(lr=0.05, momentum=0.5,
                                   dampening=0.1), dict(lr=0.02, momentum=0.0)]),
    "nesterov": (torch.optim.SGD, [dict(lr=0.1, momentum=0.9, nesterov=True),
                                   dict(lr=0.01, momentum=0.8, nesterov=True, weight_decay=0.1)]),
    "adam": (torch.optim.Adam, [dict(lr=1e-3), dict(lr=3e-2, betas=(0.8, 0.99), eps=1e-6,
                                                     weight_decay=0.01)]),
    "amsgrad": (torch.optim.Adam, [dict(lr=1e-2, amsgrad=True), dict(lr=1e-3, amsgrad=True)]),
    "adamw": (torch.optim.AdamW, [dict(lr=1e-3), dict(lr=1e-2, weight_decay=0.1)]),
    "rmsprop": (torch.optim.RMSprop, [dict(lr=1e-3), dict(lr=1e-2, alpha=0.9, momentum=0.5),
                                      dict(lr=1e-3, weight_decay=0.1)]),
    "centered": (torch.optim.RMSprop, [dict(lr=1e-3, centered=True),
                                       dict(lr=1e-2, centered=True, momentum=0.9)]),
    "adagrad": (torch.optim.Adagrad, [dict(lr=0.1), dict(lr=0.05, lr_decay=0.01,
                                      initial_accumulator_value=0.1, weight_decay=0.01)]),
    "maximize": (torch.optim.Adam, [dict(lr=1e-3, maximize=True), dict(lr=1e-2, maximize=True)]),
}  # fmt: skip


@pytest.mark.parametrize("name", CASES)
def test_each_member_steps_as_torch_optim_would(name):
    cls, settings = CASES[name]
    g = torch.Generator().manual_seed(0)
    k, p = len(settings), 7
    start = torch.randn(k, p, generator=g, dtype=torch.float64)
    grads = [torch.randn(k, p, generator=g, dtype=torch.float64) for _ in range(6)]
    singles = [torch.nn.Parameter(start[i].clone()) for i in range(k)]
    references = [cls([w], **s) for w, s in zip(singles, settings)]
    flat = start.clone()
    vector = VectorOptimizer(references, flat)
    lr = torch.tensor([[s["lr"]] for s in settings], dtype=torch.float64)
    alive = torch.ones(k, 1, dtype=torch.bool)
    for grad in grads:
        for i, (w, opt) in enumerate(zip(singles, references)):
            w.grad = grad[i].clone()
            opt.step()
        vector.step(flat, grad, lr, alive)
        for i, w in enumerate(singles):
            torch.testing.assert_close(flat[i], w.detach(), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("name", CASES)
def test_a_frozen_member_keeps_its_parameters_and_state_while_the_others_step(name):
    """The loop leaves a frozen member's loss out of the backward pass, so its gradient is 0;
    its parameters stay as they are, and the others step as alone. Its state buffers stay too,
    but on the fused Adam path, whose moments decay (the member never trains again)."""
    cls, settings = CASES[name]
    g = torch.Generator().manual_seed(1)
    k = len(settings)
    flat = torch.randn(k, 5, generator=g, dtype=torch.float64)
    singles = [torch.nn.Parameter(flat[i].clone()) for i in range(k)]
    refs = [cls([w], **s) for w, s in zip(singles, settings)]
    vector = VectorOptimizer(refs, flat)
    lr = torch.tensor([[s["lr"]] for s in settings], dtype=torch.float64)
    everyone = torch.ones(k, 1, dtype=torch.bool)
    first = torch.randn(k, 5, generator=g, dtype=torch.float64)
    vector.step(flat, first, lr, everyone)
    for i, (w, opt) in enumerate(zip(singles, refs)):
        w.grad = first[i].clone()
        opt.step()
    kept = flat[0].clone(), {n: v[0].clone() for n, v in vector.state.items()}
    alive = everyone.clone()
    alive[0] = False
    for _ in range(3):
        grad = torch.randn(k, 5, generator=g, dtype=torch.float64)
        grad[0] = 0.0
        vector.step(flat, grad, lr, alive)
        for i in range(1, k):
            singles[i].grad = grad[i].clone()
            refs[i].step()
    assert torch.equal(flat[0], kept[0])
    for n, v in vector.state.items():
        assert vector.fused or torch.equal(v[0], kept[1][n]), n
    for i in range(1, k):
        torch.testing.assert_close(flat[i], singles[i].detach(), rtol=1e-13, atol=1e-15)


def test_adam_takes_the_fused_kernel_only_where_the_members_share_betas_and_eps():
    flat = torch.zeros(2, 3, dtype=torch.float64)
    make = lambda settings: VectorOptimizer([torch.optim.Adam([torch.nn.Parameter(  # noqa: E731
        torch.zeros(3, dtype=torch.float64))], **s) for s in settings], flat)  # fmt: skip
    assert make([dict(lr=1e-3), dict(lr=1e-2, weight_decay=0.1)]).fused
    assert not make([dict(lr=1e-3), dict(lr=1e-2, betas=(0.8, 0.99))]).fused
    assert not make([dict(lr=1e-3), dict(lr=1e-2, eps=1e-6)]).fused


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_adam_over_many_steps_stays_with_torch_optim(dtype):
    """200 steps of an lr sweep: the fused path's order of operations differs from torch's
    single-tensor Adam by rounding only."""
    g = torch.Generator().manual_seed(3)
    settings = [dict(lr=lr, weight_decay=wd) for lr in (1e-3, 1e-2, 1e-1) for wd in (0.0, 0.01)]
    start = torch.randn(len(settings), 11, generator=g, dtype=dtype)
    singles = [torch.nn.Parameter(start[i].clone()) for i in range(len(settings))]
    refs = [torch.optim.Adam([w], **s) for w, s in zip(singles, settings)]
    flat = start.clone()
    vector = VectorOptimizer(refs, flat)
    assert vector.fused
    lr = torch.tensor([[s["lr"]] for s in settings], dtype=torch.float64)
    alive = torch.ones(len(settings), 1, dtype=torch.bool)
    for _ in range(200):
        grad = torch.randn(len(settings), 11, generator=g, dtype=dtype)
        for i, (w, opt) in enumerate(zip(singles, refs)):
            w.grad = grad[i].clone()
            opt.step()
        vector.step(flat, grad, lr, alive)
    rel = 1e-12 if dtype == torch.float64 else 1e-4
    for i, w in enumerate(singles):
        torch.testing.assert_close(flat[i], w.detach(), rtol=rel, atol=rel)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("amsgrad", [False, True])
def test_the_scratch_is_zeroed_by_adamws_decay_as_by_zero_(dtype, amsgrad):
    """The fused path leans on torch's AdamW kernel at lr = 1, weight_decay = 1 writing exactly
    what Adam's writes on a zeroed buffer (θ − 1·θ = +0): the same bits where the old scratch
    was finite (signed zeros and 1e30 included), NaN where it was not, the moments identical."""
    g = torch.Generator().manual_seed(5)
    k, p = 6, 257  # 257: the kernel's vector loop and its tail
    grad = torch.randn(k, p, generator=g, dtype=dtype)
    grad[1, 3], grad[2, 4] = float("nan"), float("inf")
    moments = [torch.rand(k, p, generator=g, dtype=dtype) for _ in range(3 if amsgrad else 2)]
    old = torch.randn(k, p, generator=g, dtype=dtype)
    old[0, :4] = torch.tensor([-0.0, 0.0, 1e30, -1e30])
    old[3, 5], old[4, 6] = float("nan"), float("-inf")
    count = [torch.tensor(4.0)] * k
    runs = []
    for kernel, scratch, decay in ((torch._fused_adam_, torch.zeros_like(old), 0.0),
                                   (torch._fused_adamw_, old.clone(), 1.0)):  # fmt: skip
        state = [m.clone() for m in moments]
        lists = [list(t.unbind(0)) for t in (scratch, grad, *state)]
        kernel(*lists[:4], lists[4] if amsgrad else [], count, lr=1.0, beta1=0.9, beta2=0.999,
               weight_decay=decay, eps=1e-8, amsgrad=amsgrad, maximize=False)  # fmt: skip
        runs.append((scratch, state))
    (zeroed, kept), (decayed, state) = runs
    finite = torch.isfinite(old)
    torch.testing.assert_close(decayed[finite], zeroed[finite], rtol=0, atol=0, equal_nan=True)
    same = finite & torch.isfinite(zeroed)  # a NaN gradient gives NaN in both
    assert same.sum() > k * p - 10 and torch.equal(zeroed[same].signbit(), decayed[same].signbit())
    assert decayed[~finite].isnan().all()
    for a, b in zip(kept, state):
        torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)
