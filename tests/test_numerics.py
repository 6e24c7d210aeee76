"""Numerical faults: NaN/inf stops the run naming the step and the tensor; an exploding gradient
norm is warned about before it overflows. Checked against a hand-written loop in plain torch."""

from __future__ import annotations

import statistics

import numpy as np
import torch
from conftest import run_experiment

from gradexp import data as datasets

REGRESSION = ["data=regression", "model=linear", "loss=mse", "batch=full", "log_every=1",
              "epochs=200", "dtype=float32"]  # fmt: skip


def hand_loop(lr: float, steps: int):
    """Full-batch gradient descent on the same split, in plain torch: per-step loss and grads."""
    arrays = datasets.regression(n=1000, features=5, noise=0.1, seed=0)
    data = datasets.split(arrays, eval_fraction=0.2, standardize=False, split_seed=0,
                          device=torch.device("cpu"), dtype=torch.float32)  # fmt: skip
    x, y = data.x_train, data.y_train.reshape(-1, 1)
    w, b = torch.zeros(1, 5, requires_grad=True), torch.zeros(1, requires_grad=True)
    history = []
    for step in range(1, steps + 1):
        loss = ((x @ w.T + b - y) ** 2).mean()
        w.grad = b.grad = None
        loss.backward()
        norms = torch.stack([w.grad.norm(), b.grad.norm()])
        history.append((step, loss.item(), norms.tolist(), norms.norm().item()))
        if not (np.isfinite(loss.item()) and torch.isfinite(norms).all()):
            break
        with torch.no_grad():
            w -= lr * w.grad
            b -= lr * b.grad
    return history


def test_divergence_names_step_and_tensor_and_is_warned_before(run_dir):
    lr = 1.5  # the largest curvature of this problem is ≈2, so gradient descent doubles the error
    summary = run_experiment(run_dir, *REGRESSION, f"optimizer.lr={lr}", "diverge.factor=null")
    history = hand_loop(lr, 200)
    step, loss, _, _ = history[-1]
    assert not np.isfinite(loss)  # the hand loop overflows in the loss first
    assert summary["status"] == "diverged" and summary["steps"] == step
    assert summary["message"].endswith(f": loss is {loss} at step {step}")
    # The warning rule by hand: median of the last 10 norms > 100 × median of the first 10.
    norms = [h[3] for h in history]
    reference = statistics.median(norms[:10])
    warned = next(s for s in range(11, len(norms) + 1)
                  if statistics.median(norms[s - 10 : s]) > 100 * reference)  # fmt: skip
    assert warned < step - 20  # long before the overflow
    assert len(summary["warnings"]) == 1
    assert summary["warnings"][0].startswith(f"grad/norm is exploding at step {warned}: ")


def test_infinite_gradient_is_named_while_the_loss_is_finite(tmp_path, run_dir):
    # A feature of 3e38 is finite in float32, and so is the loss at θ = 0 (it is mean(y²) = 1);
    # but its weight's gradient 2·(0 − y)·x overflows to -inf.
    (tmp_path / "huge.csv").write_text("a,b,y\n3e38,1,1\n3e38,2,1\n")
    summary = run_experiment(run_dir, "data=file", f"data.path={tmp_path / 'huge.csv'}",
                             "data.target=y", "data.task=regression", "data.standardize=false",
                             "data.eval_fraction=0", "model=linear", "loss=mse",
                             "batch=full")  # fmt: skip
    x = torch.tensor([[3e38, 1.0], [3e38, 2.0]])
    layer = torch.nn.Linear(2, 1)
    torch.nn.init.zeros_(layer.weight), torch.nn.init.zeros_(layer.bias)
    loss = ((layer(x) - 1) ** 2).mean()
    loss.backward()
    assert torch.isfinite(loss) and not torch.isfinite(layer.weight.grad).all()
    assert torch.isfinite(layer.bias.grad).all()
    assert summary["status"] == "diverged" and summary["steps"] == 1
    assert summary["message"].endswith(": grad of layer1.weight is inf at step 1")


def test_a_healthy_run_has_no_warning(run_dir):
    summary = run_experiment(run_dir, *REGRESSION, "optimizer.lr=0.1", "epochs=50")
    assert summary["status"] == "ok" and summary["warnings"] == []


def test_warning_does_not_depend_on_how_steps_are_flushed():
    from gradexp.record.watch import GrowthWatch

    rng = np.random.default_rng(0)
    norms = np.exp(rng.normal(0, 1, 300)) * np.r_[np.ones(150), 1.1 ** np.arange(150)]
    steps = list(range(1, 301))
    whole = GrowthWatch(100.0, 10)
    expected = whole.feed(steps, norms)
    assert expected is not None
    for seed in range(5):
        cuts = np.sort(np.random.default_rng(seed).choice(np.arange(1, 300), 12, replace=False))
        watch, found = GrowthWatch(100.0, 10), None
        for a, b in zip([0, *cuts], [*cuts, 300]):
            found = found or watch.feed(steps[a:b], norms[a:b])
            resumed = GrowthWatch(100.0, 10)  # as after a checkpoint
            resumed.load_state(watch.state())
            watch = resumed
        assert found == expected
