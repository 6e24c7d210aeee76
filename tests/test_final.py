"""Divergence beyond NaN, and final numbers that are final: the loss of the final parameters on
the whole training set, eval points stamped with their own time, norms that do not overflow."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import metrics, run_experiment

from gradexp import data as datasets
from gradexp.models import MLP
from gradexp.record.history import History


def test_a_loss_that_blows_up_ends_diverged_at_the_step_the_rule_says(run_dir):
    """GD on x² at lr 1.1 multiplies x by −1.2 a step: f_t = 1.44^(t−1), never inf in 60 steps.
    The rule: |f_t| > diverge.factor × the mean of f over the first min(t, 10) steps."""
    s = run_experiment(run_dir, "model=parabola", "optimizer.lr=1.1", "epochs=60", "dtype=float64")
    f = 1.44 ** np.arange(60.0)
    level = np.array([f[: min(t, 10)].mean() for t in range(1, 61)])
    expected = int(np.argmax(f > 1e4 * level)) + 1
    assert s["status"] == "diverged" and s["stop_reason"] == "diverged"
    assert s["steps"] == expected and s["message"].startswith(f"diverged at step {expected}")
    assert "diverge.factor=10000 × its initial level" in s["message"] and s["objective"] == math.inf
    assert max(m["step"] for m in metrics(run_dir)) == expected  # nothing logged past it


def test_without_the_rule_the_same_run_ends_ok_as_before(run_dir):
    s = run_experiment(run_dir, "model=parabola", "optimizer.lr=1.1", "epochs=60",
                       "dtype=float64", "diverge.factor=null")  # fmt: skip
    assert s["status"] == "ok" and s["final"]["train/loss"] == pytest.approx(1.44**60)


def test_a_last_step_to_infinite_parameters_ends_diverged(run_dir):
    # f(1e19) = 1e38 and its gradient are finite in float32; 1e19 − 1e20·2e19 is not.
    s = run_experiment(run_dir, "model=parabola", "model.start={x: 1e19}", "optimizer.lr=1e20",
                       "max_steps=1")  # fmt: skip
    assert s["status"] == "diverged" and s["steps"] == 1
    assert s["message"] == "diverged at step 1: θ is not finite after the update (‖θ‖=inf)"


def test_stochastic_sgd_blowing_up_without_nan_ends_diverged(run_dir):
    # lr 0.3 passes 10⁴ × its initial level by step ~44; lr 0.1 is chaotic (it blew up at step
    # 1,354 of 1,438 on one machine and stayed below 10³ × on another)
    s = run_experiment(run_dir, "optimizer=sgd", "optimizer.lr=0.3", "batch=stochastic",
                       "epochs=1")  # fmt: skip
    assert s["status"] == "diverged" and "above diverge.factor" in s["message"]
    assert all(math.isfinite(m.get("train/loss", 0)) for m in metrics(run_dir))  # not NaN


def test_final_train_loss_is_f_at_the_final_point(run_dir):
    """x² + y² from (2, 2) at lr 0.1: θ_t = 0.8^t (2, 2), so f(θ_30) = 8 · 0.8^60 exactly
    what the summary reports, not the mean of the last logged interval."""
    s = run_experiment(run_dir, "model=function", "optimizer.lr=0.1", "epochs=30",
                       "dtype=float64", "log_every=10")  # fmt: skip
    assert s["final"]["train/loss"] == pytest.approx(8 * 0.8**60, rel=1e-12)
    assert s["final"]["train/interval_loss"] > 2 * s["final"]["train/loss"]  # the old number
    assert s["probes"]["function"]["value"] == pytest.approx(8 * 0.8**60, rel=1e-12)


def test_final_train_loss_and_accuracy_are_the_final_model_on_the_whole_training_set(run_dir):
    s = run_experiment(run_dir, "data=iris", "epochs=5", "l2=0.01")
    d = datasets.split(datasets.sklearn_dataset("iris"), eval_fraction=0.2, standardize=True,
                       split_seed=0, device=torch.device("cpu"), dtype=torch.float32)  # fmt: skip
    model = MLP(4, 3, hidden=[128])
    model.load_state_dict(torch.load(run_dir / "model.pt", weights_only=True))
    with torch.no_grad():
        out = model(d.x_train)
        loss = torch.nn.functional.cross_entropy(out, d.y_train).item()
        accuracy = (out.argmax(1) == d.y_train).double().mean().item()
        l2 = 0.01 * sum(p.square().sum() for p in model.parameters()).item()
    assert s["final"]["train/loss"] == pytest.approx(loss, rel=1e-6)
    assert s["final"]["train/accuracy"] == pytest.approx(accuracy)
    assert s["final"]["train/l2"] == pytest.approx(l2, rel=1e-5)
    assert s["objective"] == s["final"]["eval/loss"]
    s = run_experiment(run_dir.parent / "noeval", "data=iris", "epochs=5",
                       "data.eval_fraction=0")  # fmt: skip
    assert s["objective"] == s["final"]["train/loss"]  # a sweeper without eval data


def test_eval_points_carry_their_own_time(run_dir):
    run_experiment(run_dir, "data=iris", "batch.size=8", "epochs=3", "eval_every=3",
                   "log_every=100", "flush_secs=1000")  # fmt: skip
    times = [m["time"] for m in metrics(run_dir) if "eval/loss" in m]
    assert len(times) >= 10 and times == sorted(times) and len(set(times)) == len(times)


class Sink:
    def __init__(self):
        self.rows = []

    def write(self, step, values, elapsed, epoch=None):
        self.rows.append(values)

    def flush(self):
        pass


@pytest.mark.parametrize("scale", [1e200, 1e-200, 1.0])
def test_the_global_norm_neither_overflows_nor_underflows(scale):
    history = History(Sink(), ["train/loss", "grad_norm/a", "grad_norm/b"], log_every=1)
    history.record(1, 0.1, [torch.tensor(1.0, dtype=torch.float64),
                            torch.tensor(3 * scale, dtype=torch.float64),
                            torch.tensor(4 * scale, dtype=torch.float64)])  # fmt: skip
    assert history.flush() is None
    assert history.sink.rows[0]["grad/norm"] == pytest.approx(5 * scale, rel=1e-15)
