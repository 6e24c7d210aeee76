"""The update rules and gradients gradexp computes, against closed forms and hand-written loops."""

import numpy as np
import pytest
import torch
from conftest import make_cfg, metrics, run_experiment, series

from gradexp import data as datasets
from gradexp.batches import Batches
from gradexp.models import MLP
from gradexp.schedules import constant, cosine, step
from gradexp.train import forward_backward

LINREG = ("data=regression", "model=linear", "loss=mse", "batch=full", "dtype=float64")


def regression_split():
    """The training split the regression config uses, as float64 numpy [X 1] and y."""
    cfg, _ = make_cfg(*LINREG)
    arrays = datasets.regression(cfg.data.n, cfg.data.features, cfg.data.noise, cfg.data.seed)
    d = datasets.split(
        arrays,
        eval_fraction=cfg.data.eval_fraction,
        standardize=False,
        split_seed=cfg.data.split_seed,
        device=torch.device("cpu"),
        dtype=torch.float64,
    )
    x = d.x_train.numpy()
    return np.hstack([x, np.ones((len(x), 1))]), d.y_train.numpy(), arrays.meta


def mse_grad(a: np.ndarray, y: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """∇ of (1/n)‖Aθ − y‖², written out by hand."""
    return 2 / len(y) * a.T @ (a @ theta - y)


def hand_descent(lr: float, steps: int, momentum: float = 0.0, l2: float = 0.0):
    """θ := θ − αv with v := μv + ∇J(θ) (torch's heavy ball; μ=0 is plain GD), from θ = 0."""
    a, y, _ = regression_split()
    theta, v = np.zeros(a.shape[1]), np.zeros(a.shape[1])
    losses, norms = [], []
    for _ in range(steps):
        g = mse_grad(a, y, theta) + 2 * l2 * theta
        losses.append(np.mean((a @ theta - y) ** 2))
        norms.append(np.linalg.norm(g))
        v = momentum * v + g
        theta = theta - lr * v
    return np.array(losses), np.array(norms), theta


@pytest.mark.parametrize(
    ("optimizer", "momentum", "l2"), [("sgd", 0.0, 0.0), ("momentum", 0.9, 0.0), ("sgd", 0.0, 0.05)]
)
def test_update_rule_matches_hand_written_descent(run_dir, optimizer, momentum, l2):
    lr, steps = 0.05, 12
    summary = run_experiment(
        run_dir,
        *LINREG,
        f"optimizer={optimizer}",
        f"optimizer.lr={lr}",
        f"max_steps={steps}",
        "log_every=1",
        f"l2={l2}",
    )
    losses, norms, theta = hand_descent(lr, steps, momentum, l2)
    (first, at_start), *per_step = series(run_dir, "train/loss")
    logged_loss = np.array([v for _, v in per_step])
    logged_norm = np.array([v for _, v in series(run_dir, "grad/norm")])
    assert first == 0 and at_start == pytest.approx(losses[0], rel=1e-12)  # J(θ₀), at step 0
    np.testing.assert_allclose(logged_loss, losses, rtol=1e-12)
    np.testing.assert_allclose(logged_norm, norms, rtol=1e-12)
    state = torch.load(run_dir / "model.pt", weights_only=True)
    got = np.append(state["layer1.weight"].numpy().ravel(), state["layer1.bias"].numpy())
    np.testing.assert_allclose(got, theta, rtol=1e-12, atol=1e-14)
    assert summary["steps"] == steps


def test_full_batch_gd_converges_to_least_squares(run_dir):
    summary = run_experiment(run_dir, *LINREG, "optimizer.lr=0.4", "epochs=400")
    a, y, meta = regression_split()
    solution, *_ = np.linalg.lstsq(a, y, rcond=None)
    state = torch.load(run_dir / "model.pt", weights_only=True)
    got = np.append(state["layer1.weight"].numpy().ravel(), state["layer1.bias"].numpy())
    np.testing.assert_allclose(got, solution, rtol=1e-9, atol=1e-10)
    assert np.linalg.norm(got[:-1] - meta["true_w"]) < 0.05  # and the truth, up to the noise
    assert summary["final"]["grad/norm"] < 1e-8


def test_full_batch_gradient_is_mean_of_per_sample_gradients():
    torch.manual_seed(0)
    model = MLP(6, 3, hidden=[8], activation="tanh").double()
    x, y = torch.randn(20, 6, dtype=torch.float64), torch.randint(0, 3, (20,))
    loss_fn = torch.nn.CrossEntropyLoss()
    params = list(model.parameters())
    forward_backward(model, loss_fn, [(x, y)], params, 0.0)
    full = [p.grad.clone() for p in params]
    mean = [torch.zeros_like(p) for p in params]
    for i in range(len(x)):
        model.zero_grad()
        loss_fn(model(x[i : i + 1]), y[i : i + 1]).backward()
        for m, p in zip(mean, params):
            m += p.grad / len(x)
    for f, m in zip(full, mean):
        torch.testing.assert_close(f, m, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("sizes", [(5, 5, 5, 5), (7, 7, 6)])
def test_accumulated_micro_batches_give_the_concatenated_batch_gradient(sizes):
    torch.manual_seed(1)
    model = MLP(4, 2, hidden=[5]).double()
    x, y = torch.randn(sum(sizes), 4, dtype=torch.float64), torch.randn(sum(sizes), 2).double()
    loss_fn, params = torch.nn.MSELoss(), list(model.parameters())
    forward_backward(model, loss_fn, [(x, y)], params, 0.1)
    whole = [p.grad.clone() for p in params]
    model.zero_grad()
    micro = list(zip(x.split(sizes), y.split(sizes)))
    loss, penalty = forward_backward(model, loss_fn, micro, params, 0.1)
    for w, p in zip(whole, params):
        torch.testing.assert_close(p.grad, w, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(loss, loss_fn(model(x), y).detach(), rtol=1e-12, atol=0)
    torch.testing.assert_close(penalty, 0.1 * sum(p.square().sum() for p in params).detach())


@pytest.mark.parametrize(
    ("size", "accumulate", "drop_last"),
    [(64, 1, False), (10, 3, False), (1, 1, False), (None, 4, False), (7, 2, True)],
)
def test_batches_cover_each_sample_once_per_epoch(size, accumulate, drop_last):
    n = 50
    x, y = torch.arange(n).double().unsqueeze(1), torch.arange(n)
    gen = torch.Generator().manual_seed(0)
    b = Batches(
        x, y, size=size, accumulate=accumulate, shuffle=True, drop_last=drop_last, generator=gen
    )
    updates = list(b.epoch())
    assert len(updates) == b.steps_per_epoch
    seen = torch.cat([yb for micro in updates for _, yb in micro])
    expected = n - (n % size if drop_last else 0)
    assert len(seen) == expected and len(set(seen.tolist())) == expected
    assert all(len(micro) <= accumulate for micro in updates)
    assert torch.equal(torch.cat([xb for m in updates for xb, _ in m]).squeeze(1).long(), seen)
    assert not torch.equal(seen, torch.cat([yb for m in b.epoch() for _, yb in m]))  # reshuffled


def test_schedules_follow_their_formulas():
    def lrs(make, n=12):
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.5)
        sched = make(opt)
        out = []
        for _ in range(n):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            if sched is not None:
                sched.step()
        return np.array(out)

    s = np.arange(12)
    assert constant(torch.optim.SGD([torch.zeros(1)], lr=1), 10) is None  # no scheduler at all
    np.testing.assert_allclose(
        lrs(lambda o: constant(o, 12, warmup_steps=4)), 0.5 * np.minimum(1, (s + 1) / 4)
    )
    np.testing.assert_allclose(
        lrs(lambda o: step(o, 12, step_size=5, gamma=0.1)), 0.5 * 0.1 ** (s // 5)
    )
    np.testing.assert_allclose(
        lrs(lambda o: cosine(o, 12, min_factor=0.1)),
        0.5 * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * s / 12))),
    )


def test_logged_lr_follows_the_schedule(run_dir):
    run_experiment(
        run_dir,
        "schedule=step",
        "schedule.step_size=5",
        "schedule.gamma=0.5",
        "max_steps=20",
        "log_every=1",
        "optimizer.lr=0.2",
    )
    logged = [m["train/lr"] for m in metrics(run_dir) if "train/lr" in m]
    np.testing.assert_allclose(logged, 0.2 * 0.5 ** (np.arange(20) // 5))
