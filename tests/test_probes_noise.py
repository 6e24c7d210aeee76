"""Per-sample gradients and the gradient-noise statistics, against loops and closed forms."""

from __future__ import annotations

import pytest
import torch
from conftest import metrics, run_experiment, scalars
from torch import nn

from gradexp.losses import CrossEntropyLoss, HingeLoss, MSELoss
from gradexp.probes.noise import Noise
from gradexp.probes.persample import linear_only, linear_sample_norms, per_sample_grads

L2 = 0.03


def mlp(bias: bool = True) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6, bias=bias), nn.Tanh(), nn.Linear(6, 3, bias=bias)).double()


def loop_grads(model, loss_fn, x, y, l2) -> torch.Tensor:
    """The reference: one backward pass per sample, in a Python loop."""
    rows = []
    for xi, yi in zip(x, y):
        model.zero_grad()
        loss = loss_fn(model(xi[None]), yi[None])
        loss = loss + l2 * sum(p.square().sum() for p in model.parameters())
        loss.backward()
        rows.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]))
    model.zero_grad()
    return torch.stack(rows)


def batch(n=10, classes=3, regression=False):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 4, generator=g, dtype=torch.float64)
    if regression:
        return x, torch.randn(n, 3, generator=g, dtype=torch.float64)
    return x, torch.randint(0, classes, (n,), generator=g)


@pytest.mark.parametrize(
    ("loss_fn", "regression"),
    [(CrossEntropyLoss(), False), (MSELoss(), True), (HingeLoss(), False)],
)
@pytest.mark.parametrize("l2", [0.0, L2])
@pytest.mark.filterwarnings("ignore:There is a performance drop")  # multi_margin_loss under vmap
def test_vmap_per_sample_gradients_equal_a_loop_of_backward_passes(loss_fn, regression, l2):
    model = mlp()
    x, y = batch(regression=regression)
    fast = per_sample_grads(model, loss_fn, x, y, l2)
    assert fast.shape == (10, sum(p.numel() for p in model.parameters()))
    torch.testing.assert_close(fast, loop_grads(model, loss_fn, x, y, l2), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("l2", [0.0, L2])
def test_hook_norms_equal_the_norms_of_vmap_gradients(bias, l2):
    model = nn.Sequential(
        nn.Linear(4, 6, bias=bias), nn.ReLU(), nn.Linear(6, 3, bias=bias)
    ).double()
    assert linear_only(model) and not linear_only(mlp().append(nn.LayerNorm(3)).double())
    x, y = batch(n=16)
    rows = per_sample_grads(model, CrossEntropyLoss(), x, y, l2)
    sq, mean = linear_sample_norms(model, CrossEntropyLoss(), x, y, l2)
    torch.testing.assert_close(sq, rows.square().sum(1), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(mean, rows.mean(0), rtol=1e-12, atol=1e-14)


def test_noise_statistics_match_their_definitions_on_a_loop():
    model, loss_fn = mlp(), CrossEntropyLoss()
    x, y = batch(n=12)
    full_x, full_y = batch(n=40)
    out = Noise(method="vmap", full_every=1, data=(full_x, full_y), l2=L2)(
        model=model, micro=[(x[:5], y[:5]), (x[5:], y[5:])], loss_fn=loss_fn, optimizer=None
    )  # two micro-batches: the update's batch is their concatenation
    g = loop_grads(model, loss_fn, x, y, L2)
    mean = g.mean(0)
    var = ((g - mean) ** 2).sum() / (len(g) - 1)
    full = loop_grads(model, loss_fn, full_x, full_y, L2).mean(0)
    expect = {
        "noise/grad_variance": var,
        "noise/noise_scale": var / full.square().sum(),
        "noise/snr": full.square().sum() / (var / len(g)),
        "noise/cosine_to_full": mean @ full / (mean.norm() * full.norm()),
    }
    assert set(out) == set(expect)
    for tag, value in expect.items():
        assert out[tag].item() == pytest.approx(value.item(), rel=1e-10), tag
    hooks = Noise(method="auto", full_every=1, data=(full_x, full_y), l2=L2)
    mlp_relu = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)).double()
    a = hooks(model=mlp_relu, micro=[(x, y)], loss_fn=loss_fn, optimizer=None)
    b = Noise(method="vmap", full_every=1, data=(full_x, full_y), l2=L2)(
        model=mlp_relu, micro=[(x, y)], loss_fn=loss_fn, optimizer=None
    )
    for tag in expect:
        assert a[tag].item() == pytest.approx(b[tag].item(), rel=1e-10)


def test_single_sample_batches_give_only_the_cosine():
    x, y = batch(n=8)
    loss_fn = CrossEntropyLoss()
    out = Noise(data=(x, y))(model=mlp(), micro=[(x[:1], y[:1])], loss_fn=loss_fn, optimizer=None)
    assert set(out) == {"noise/cosine_to_full"}


def test_noise_scale_of_linear_regression_matches_its_analytic_value():
    """y = xᵀu + c + σε, x ~ N(0, I_d), MSE, at θ = 0. Per-sample g = 2r[x; 1] with
    r = −(xᵀu + c + σε), so G = −2[u; c] and (Isserlis) tr Σ = 4[(d+2)‖u‖² + d c² + (d+1)σ²]:
    B_simple = [(d+2)‖u‖² + d c² + (d+1)σ²] / (‖u‖² + c²)."""
    d, n, batch_size, sigma, c = 5, 20000, 8000, 0.5, 0.5
    u = torch.tensor([1.0, -0.5, 0.25, 2.0, 0.0], dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = (x @ u + c + sigma * torch.randn(n, generator=g, dtype=torch.float64))[:, None]
    model = nn.Linear(d, 1).double()
    nn.init.zeros_(model.weight)
    nn.init.zeros_(model.bias)
    out = Noise(data=(x, y))(model=model, micro=[(x[:batch_size], y[:batch_size])],
                             loss_fn=MSELoss(), optimizer=None)  # fmt: skip
    uu = u.square().sum().item()
    trace = 4 * ((d + 2) * uu + d * c**2 + (d + 1) * sigma**2)
    scale = trace / (4 * (uu + c**2))
    # Sampling error of tr Σ over 8000 samples: std(‖g_i − ḡ‖²)/mean/√n ≈ 2.3% here.
    assert out["noise/grad_variance"].item() == pytest.approx(trace, rel=0.07)
    assert out["noise/noise_scale"].item() == pytest.approx(scale, rel=0.07)
    assert out["noise/cosine_to_full"].item() > 0.999


def test_noise_probe_end_to_end_matches_a_loop_on_the_logged_step(run_dir):
    """Full batch on synthetic regression: step 1's batch is the whole training set at θ = 0."""
    run_experiment(run_dir, "data=regression", "model=linear", "loss=mse", "batch=full",
                   "probes=[noise]", "epochs=3", "dtype=float64", "l2=0.01")  # fmt: skip
    from gradexp.data import regression, split

    data = split(regression(1000, 5, 0.1, 0), eval_fraction=0.2, standardize=False, split_seed=0,
                 device=torch.device("cpu"), dtype=torch.float64)  # fmt: skip
    model = nn.Linear(5, 1).double()
    nn.init.zeros_(model.weight)
    nn.init.zeros_(model.bias)
    g = loop_grads(model, MSELoss(), data.x_train, data.y_train[:, None], 0.01)
    var = ((g - g.mean(0)) ** 2).sum() / (len(g) - 1)
    first = next(m for m in metrics(run_dir) if m["step"] == 1 and "noise/grad_variance" in m)
    assert first["noise/grad_variance"] == pytest.approx(var.item(), rel=1e-10)
    assert first["noise/noise_scale"] == pytest.approx((var / g.mean(0).square().sum()).item())
    assert first["noise/cosine_to_full"] == pytest.approx(1.0, abs=1e-12)  # full batch
    steps = [s for s, _ in scalars(run_dir)["noise/snr"]]
    assert steps == [1, 2, 3]


def test_full_gradient_schedule_and_the_unbiased_estimate_without_it():
    model, loss_fn = mlp(), CrossEntropyLoss()
    x, y = batch(n=12)
    probe = Noise(full_every=2, data=batch(n=40))
    logged = []
    for step in range(1, 6):
        assert probe.due(step)
        out = probe(model=model, micro=[(x, y)], loss_fn=loss_fn, optimizer=None)
        logged += [step] if "noise/cosine_to_full" in out else []
    assert logged == [1, 2, 4]  # the first call, then every second step
    blind = Noise(full_every=None)(model=model, micro=[(x, y)], loss_fn=loss_fn, optimizer=None)
    g = loop_grads(model, loss_fn, x, y, 0.0)
    var = ((g - g.mean(0)) ** 2).sum() / (len(g) - 1)
    signal = g.mean(0).square().sum() - var / len(g)  # E‖ḡ‖² = ‖G‖² + tr Σ / n
    assert "noise/cosine_to_full" not in blind
    assert blind["noise/noise_scale"].item() == pytest.approx((var / signal).item(), rel=1e-10)
