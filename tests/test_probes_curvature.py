"""Hessians, their eigenvalues and trace, the stability threshold: closed forms and eigvalsh."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import metrics, run_experiment, series
from torch import nn

from gradexp.losses import CrossEntropyLoss, MSELoss
from gradexp.probes.curvature import Hessian, Sharpness, threshold
from gradexp.probes.eigen import hutchinson_trace, lanczos, power_iteration
from gradexp.probes.objective import exact_hessian, hvp_operator, jacobian

L2 = 0.01


def regression(n=30, d=3):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    return x, torch.randn(n, 1, generator=g, dtype=torch.float64)


def small_mlp():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    g = torch.Generator().manual_seed(2)
    x = torch.randn(20, 4, generator=g, dtype=torch.float64)
    return model, x, torch.randint(0, 3, (20,), generator=g)


def columns_by_hvp(hvp, dim):
    eye = torch.eye(dim, dtype=torch.float64)
    return torch.stack([hvp(e) for e in eye], dim=1)


@pytest.mark.parametrize("l2", [0.0, L2])
def test_linear_regression_hessian_is_the_closed_form(l2):
    """MSELoss (mean over n, one output): H = (2/n)·[X 1]ᵀ[X 1] (+ 2λI with the L2 term)."""
    x, y = regression()
    model = nn.Linear(3, 1).double()
    z = torch.cat([x, torch.ones(len(x), 1, dtype=torch.float64)], dim=1)
    closed = 2 / len(x) * z.T @ z + 2 * l2 * torch.eye(4, dtype=torch.float64)
    torch.testing.assert_close(exact_hessian(model, MSELoss(), x, y, l2), closed)
    _, hvp = hvp_operator(model, MSELoss(), x, y, l2)
    torch.testing.assert_close(columns_by_hvp(hvp, 4), closed)


def test_jacobian_of_a_linear_model_is_its_input():
    x, _ = regression(n=4)
    model = nn.Linear(3, 1).double()
    expect = torch.cat([x, torch.ones(4, 1, dtype=torch.float64)], dim=1)
    torch.testing.assert_close(jacobian(model, x), expect)


def test_hvp_equals_exact_hessian_on_an_mlp():
    model, x, y = small_mlp()
    h = exact_hessian(model, CrossEntropyLoss(), x, y, L2)
    _, hvp = hvp_operator(model, CrossEntropyLoss(), x, y, L2)
    torch.testing.assert_close(columns_by_hvp(hvp, h.shape[0]), h, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(h, h.T, rtol=1e-10, atol=1e-12)


def test_power_iteration_and_lanczos_find_eigvalsh_top_eigenvalue():
    model, x, y = small_mlp()
    eig = torch.linalg.eigvalsh(exact_hessian(model, CrossEntropyLoss(), x, y, L2))
    top = eig[eig.abs().argmax()]  # power iteration finds the eigenvalue largest in magnitude
    _, hvp = hvp_operator(model, CrossEntropyLoss(), x, y, L2)
    start = torch.randn(
        eig.numel(), generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    value, vector, used = power_iteration(hvp, start, 300)
    assert value.item() == pytest.approx(top.item(), rel=1e-8) and used == 300
    warm, _, used = power_iteration(hvp, vector, 300, tol=1e-9)  # warm: stops at once
    assert used == 2 and warm.item() == pytest.approx(top.item(), rel=1e-8)
    values, _ = lanczos(hvp, start, 30)
    assert values[-1].item() == pytest.approx(eig[-1].item(), rel=1e-10)
    assert values[0].item() == pytest.approx(eig[0].item(), rel=1e-8, abs=1e-10)


def test_sharpness_probe_warm_start_converges_in_few_iterations():
    model, x, y = small_mlp()
    eig = torch.linalg.eigvalsh(exact_hessian(model, CrossEntropyLoss(), x, y, 0.0))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    probe = Sharpness(iters=300, batch=None, data=(x, y))
    first = probe(model=model, micro=[], loss_fn=CrossEntropyLoss(), optimizer=opt)
    assert first["curvature/sharpness"].item() == pytest.approx(eig[-1].item(), rel=1e-8)
    assert first["curvature/threshold"].item() == pytest.approx((2 + 2 * 0.9) / 0.1)
    probe.iters = 2  # warm: the stored eigenvector is already the answer
    again = probe(model=model, micro=[], loss_fn=CrossEntropyLoss(), optimizer=opt)
    assert again["curvature/sharpness"].item() == pytest.approx(eig[-1].item(), rel=1e-10)
    lz = Sharpness(iters=40, method="lanczos", batch=None, data=(x, y))
    out = lz(model=model, micro=[], loss_fn=CrossEntropyLoss(), optimizer=opt)
    assert out["curvature/sharpness"].item() == pytest.approx(eig[-1].item(), rel=1e-10)


def test_hutchinson_trace_is_unbiased_within_its_standard_error():
    model, x, y = small_mlp()
    h = exact_hessian(model, CrossEntropyLoss(), x, y, L2)
    _, hvp = hvp_operator(model, CrossEntropyLoss(), x, y, L2)
    samples = 300
    g = torch.Generator().manual_seed(0)
    est = hutchinson_trace(hvp, h.shape[0], samples, g, torch.float64, torch.device("cpu"))
    off = h - torch.diag(torch.diag(h))
    se = math.sqrt(2 * off.square().sum().item() / samples)  # Var vᵀHv = 2Σ_{i≠j} H_ij²
    assert abs(est.item() - h.trace().item()) < 4 * se
    exact = Hessian(method="exact", batch=None, data=(x, y), l2=L2)
    out = exact(model=model, micro=[], loss_fn=CrossEntropyLoss(), optimizer=None)
    eig = torch.linalg.eigvalsh(h)
    assert out["curvature/trace"].item() == pytest.approx(h.trace().item(), rel=1e-10)
    assert out["curvature/eig_max"].item() == pytest.approx(eig[-1].item(), rel=1e-10)
    assert out["curvature/eig_min"].item() == pytest.approx(eig[0].item(), rel=1e-10)
    sv = torch.linalg.svdvals(jacobian(model, x))  # independent: jacobian is tested on its own
    assert out["curvature/jacobian_sv_max"].item() == pytest.approx(sv[0].item(), rel=1e-12)


def test_threshold_is_two_over_lr_and_knows_momentum():
    p = [nn.Parameter(torch.zeros(1))]
    assert threshold(torch.optim.SGD(p, lr=0.1)) == pytest.approx(20.0)
    assert threshold(torch.optim.SGD(p, lr=0.1, momentum=0.9)) == pytest.approx(38.0)
    nesterov = torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True)
    assert threshold(nesterov) == pytest.approx(3.8 / (2.8 * 0.1))
    assert threshold(torch.optim.Adam(p, lr=0.1)) is None


@pytest.mark.parametrize(("lr", "stable"), [(0.15, True), (0.25, False)])
def test_gd_on_a_quadratic_diverges_exactly_when_sharpness_exceeds_two_over_lr(run_dir, lr, stable):
    """f = (x² + 10y²)/2 has λ_max = 10: GD is stable for lr < 0.2 and diverges above."""
    summary = run_experiment(
        run_dir, "model=quadratic", f"optimizer.lr={lr}", "epochs=150", "probes=[sharpness]",
        "probes.sharpness.every=log", "log_every=1", "diverge.factor=null",
    )  # fmt: skip
    sharp = dict(series(run_dir, "curvature/sharpness"))
    limit = dict(series(run_dir, "curvature/threshold"))
    assert sharp[1] == pytest.approx(10.0, rel=1e-5)
    assert limit[1] == pytest.approx(2 / lr, rel=1e-6)
    assert (sharp[1] < limit[1]) == stable
    if stable:
        assert summary["status"] == "ok" and summary["final"]["train/loss"] < 1e-12
    else:  # |1 − 10·lr| = 1.5 per step: f overflows float32 after about 110 steps
        assert summary["status"] == "diverged"
        ys = [v for _, v in series(run_dir, "function/y")][:50]
        assert abs(ys[-1]) > 1e6 * abs(ys[0])


def test_sharpness_and_trace_probes_run_on_a_schedule_end_to_end(run_dir):
    run_experiment(run_dir, "model.hidden=[8]", "probes=[sharpness,hessian]",
                   "probes.sharpness.every=4", "probes.hessian.every=log", "max_steps=12",
                   "probes.sharpness.batch=current", "probes.hessian.samples=3")  # fmt: skip
    rows = metrics(run_dir)
    assert [m["step"] for m in rows if "curvature/sharpness" in m] == [4, 8, 12]
    assert [m["step"] for m in rows if "curvature/trace" in m] == [1, 2, 3, 4, 6, 7, 8, 10]
    assert all(
        m["curvature/threshold"] == pytest.approx(20.0) for m in rows if "curvature/threshold" in m
    )
