"""What reaches TensorBoard and metrics.jsonl, read back and checked against independent numbers."""

import itertools
import math

import numpy as np
import pytest
import torch
from conftest import make_cfg, metrics, run_experiment, scalars, series
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from gradexp import knobs as knob_checks
from gradexp import parts


def initial_model_and_batch(*overrides):
    """The model and full training batch a run starts from, rebuilt the way run.py builds them."""
    cfg, _ = make_cfg(*overrides)
    knobs = knob_checks.check_knobs(cfg)
    torch.manual_seed(cfg.seed)
    data = parts.load_data(cfg, knobs)
    model = parts.make("model", cfg.model, data.in_features, data.out_features).to(knobs.dtype)
    return model, data


def test_logged_gradient_norms_equal_independent_ones(run_dir):
    overrides = ("batch=full", "max_steps=1", "log_every=1", "dtype=float64", "model.hidden=[16,8]")
    run_experiment(run_dir, *overrides)
    model, data = initial_model_and_batch(*overrides)
    loss = torch.nn.functional.cross_entropy(model(data.x_train), data.y_train)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    layer = {
        n: math.sqrt(sum(v * v for v in g.flatten().tolist()))
        for (n, _), g in zip(model.named_parameters(), grads)
    }
    logged = scalars(run_dir)
    (point,) = [m for m in metrics(run_dir) if "grad/norm" in m]
    assert point["train/loss"] == pytest.approx(loss.item(), rel=1e-12)
    for name, norm in layer.items():
        assert point[f"grad_norm/{name}"] == pytest.approx(norm, rel=1e-12)
        assert logged[f"grad_norm/{name}"] == [(1, pytest.approx(norm, rel=1e-6))]  # float32 event
    total = math.sqrt(sum(v * v for v in layer.values()))
    assert point["grad/norm"] == pytest.approx(total, rel=1e-12)  # per-layer norms compose
    assert len(layer) == 6  # three Linear layers, weight and bias each


def test_intervals_average_every_step_and_keep_the_spread(tmp_path):
    common = ("max_steps=40", "batch.size=32")
    run_experiment(tmp_path / "each", *common, "log_every=1")
    run_experiment(tmp_path / "every8", *common, "log_every=8")
    per_step = dict(series(tmp_path / "each", "train/loss"))
    grads = dict(series(tmp_path / "each", "grad/norm"))
    points = [m for m in metrics(tmp_path / "every8") if "train/loss_min" in m]
    assert [m["step"] for m in points] == [8, 16, 24, 32, 40]
    for m in points:
        window = [per_step[s] for s in range(m["step"] - 7, m["step"] + 1)]
        assert m["train/loss"] == pytest.approx(np.mean(window), rel=1e-12)
        assert (m["train/loss_min"], m["train/loss_max"]) == (min(window), max(window))
        assert m["grad/norm_max"] == max(grads[s] for s in range(m["step"] - 7, m["step"] + 1))
    events = scalars(tmp_path / "every8")  # one point per interval, after the initial loss
    assert [s for s, _ in events["train/loss"]] == [0, 8, 16, 24, 32, 40]


def test_epoch_series_average_the_epoch_and_use_epochs_as_x(tmp_path):
    run_experiment(tmp_path, "epochs=3", "log_every=1", "batch.size=500")
    per_step = series(tmp_path, "train/loss")
    epochs = [m for m in metrics(tmp_path) if "epoch" in m]
    assert [(m["epoch"], m["step"]) for m in epochs] == [(1, 3), (2, 6), (3, 9)]
    for m in epochs:
        window = [v for s, v in per_step if m["step"] - 3 < s <= m["step"]]
        assert m["epoch/train_loss"] == pytest.approx(np.mean(window), rel=1e-12)
    events = scalars(tmp_path)
    assert [s for s, _ in events["epoch/eval_accuracy"]] == [1, 2, 3]
    evals = dict(series(tmp_path, "eval/loss"))
    assert [v for _, v in events["epoch/eval_loss"]] == pytest.approx(
        [evals[3], evals[6], evals[9]]
    )


def test_events_match_jsonl_and_carry_config_and_hparams(run_dir):
    summary = run_experiment(run_dir, "max_steps=25", "optimizer=adam", "l2=0.001")
    events = scalars(run_dir)
    for m in metrics(run_dir):
        if "epoch" in m:
            continue
        for tag, value in m.items():
            if tag not in ("step", "time"):
                ((_step, logged),) = [p for p in events[tag] if p[0] == m["step"]]
                assert logged == pytest.approx(value, rel=1e-6, abs=1e-30)
    expected = {
        "train/loss",
        "train/l2",
        "grad/norm",
        "param/norm",
        "update/norm",
        "update/ratio",
        "train/lr",
        "train/epoch",
        "train/examples",
        "eval/loss",
        "eval/accuracy",
    }
    assert expected <= set(events)
    acc = EventAccumulator(str(run_dir), size_guidance={"tensors": 0})
    acc.Reload()
    assert "config/text_summary" in acc.Tags()["tensors"]
    plugins = acc.PluginTagToContent("hparams")
    # A session per run and no experiment record: TensorBoard builds that from all runs.
    assert set(plugins) == {"_hparams_/session_start_info", "_hparams_/session_end_info"}
    # train/l2 is λ‖θ‖² at each step's θ; the summary's is the final parameters' (final/train_l2)
    assert summary["final"]["train/l2"] == pytest.approx(events["final/train_l2"][-1][1], rel=1e-6)


def test_l2_term_is_lambda_times_squared_parameter_norm(run_dir):
    run_experiment(run_dir, "max_steps=5", "log_every=1", "l2=0.01", "dtype=float64")
    points = [m for m in metrics(run_dir) if "train/l2" in m]
    for before, after in itertools.pairwise(points):
        # λ‖θ‖² at step k+1 is taken at the parameters that step k logged as param/norm
        assert after["train/l2"] == pytest.approx(0.01 * before["param/norm"] ** 2, rel=1e-12)


def test_update_size_is_lr_times_gradient_for_sgd(run_dir):
    run_experiment(run_dir, "max_steps=6", "log_every=1", "dtype=float64", "optimizer.lr=0.05")
    for m in metrics(run_dir):
        if "update/norm" in m:
            assert m["update/norm"] == pytest.approx(0.05 * m["grad/norm"], rel=1e-10)
            assert m["update/ratio"] == pytest.approx(m["update/norm"] / m["param/norm"])


def test_divergence_stops_at_the_exact_step_and_logs_stay_readable(tmp_path):
    bad = ("optimizer.lr=80", "batch=full", "epochs=100", "diverge.factor=null")  # NaN itself
    every = run_experiment(tmp_path / "a", *bad, "log_every=1", "flush_secs=0")
    lazy = run_experiment(tmp_path / "b", *bad, "log_every=10", "flush_secs=1000")
    losses = series(tmp_path / "a", "train/loss")
    first_bad = next(s for s, v in losses if not math.isfinite(v))
    for s in (every, lazy):
        assert s["status"] == "diverged" and s["stop_reason"] == "diverged"
        assert s["steps"] == first_bad and f"diverged at step {first_bad}" in s["message"]
        assert "lr=80" in s["message"] and s["objective"] == math.inf
    assert max(s for s, _ in losses) == first_bad  # nothing logged past it
    assert max(s for s, _ in scalars(tmp_path / "b")["train/loss"]) == first_bad


def test_grad_tolerance_stops_at_the_first_step_below_it(tmp_path):
    linreg = (
        "data=regression",
        "model=linear",
        "loss=mse",
        "batch=full",
        "dtype=float64",
        "optimizer.lr=0.1",
        "log_every=1",
    )
    run_experiment(tmp_path / "free", *linreg, "epochs=80")
    tol = 0.01
    first = next(s for s, g in series(tmp_path / "free", "grad/norm") if g < tol)
    s = run_experiment(tmp_path / "stop", *linreg, "epochs=80", f"stop.grad_tol={tol}")
    assert (s["status"], s["stop_reason"], s["steps"]) == ("ok", "grad_tol", first)
    assert max(st for st, _ in series(tmp_path / "stop", "grad/norm")) == first
    s = run_experiment(tmp_path / "loss", *linreg, "epochs=80", "stop.loss_tol=0.5")
    assert s["stop_reason"] == "loss_tol" and series(tmp_path / "loss", "train/loss")[-1][1] < 0.5


@pytest.mark.parametrize("batch", ["full", "minibatch", "stochastic"])
def test_loss_falls_in_every_batch_mode(tmp_path, batch):
    lr = {"full": 0.5, "minibatch": 0.1, "stochastic": 0.01}[batch]
    epochs = 60 if batch == "full" else 3  # full batch: one step per epoch
    s = run_experiment(
        tmp_path,
        f"batch={batch}",
        f"optimizer.lr={lr}",
        f"epochs={epochs}",
        "max_steps=600",
        "log_every=1",
    )
    losses = [v for _, v in series(tmp_path, "train/loss")]
    assert s["status"] == "ok"
    assert np.mean(losses[-20:]) < 0.7 * np.mean(losses[:20])
    assert s["final"]["eval/loss"] < 0.7 * math.log(10)  # better than guessing among 10 digits


@pytest.mark.parametrize("batch", ["full", "minibatch", "stochastic"])
def test_same_seed_same_metrics_other_seed_differs(tmp_path, batch):
    args = (f"batch={batch}", "max_steps=30", "log_every=3", "optimizer.lr=0.01")

    def values(name, seed):
        run_experiment(tmp_path / name, *args, f"seed={seed}")
        return [{k: v for k, v in m.items() if k != "time"} for m in metrics(tmp_path / name)]

    assert values("a", 0) == values("b", 0)
    assert values("c", 1) != values("a", 0)


def test_step_0_holds_the_initial_losses_and_accuracy_computed_by_hand(run_dir):
    overrides = ("max_steps=3", "log_every=1", "dtype=float64", "model.hidden=[16]")
    run_experiment(run_dir, *overrides)
    model, data = initial_model_and_batch(*overrides)

    def by_hand(x, y):  # numpy: the ReLU MLP's forward, log-softmax, mean NLL, argmax
        w1, b1, w2, b2 = (p.detach().numpy() for p in model.parameters())
        z = np.maximum(x.numpy() @ w1.T + b1, 0) @ w2.T + b2
        logp = z - z.max(1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(1, keepdims=True))
        return -logp[np.arange(len(y)), y.numpy()].mean(), (z.argmax(1) == y.numpy()).mean()

    start = metrics(run_dir)[0]
    train_loss, _ = by_hand(data.x_train, data.y_train)
    eval_loss, eval_accuracy = by_hand(data.x_eval, data.y_eval)
    assert start["step"] == 0 and set(start) == {"step", "time", "train/loss", "eval/loss",
                                                 "eval/accuracy"}  # fmt: skip
    assert start["train/loss"] == pytest.approx(train_loss, rel=1e-12)
    assert start["eval/loss"] == pytest.approx(eval_loss, rel=1e-12)
    assert start["eval/accuracy"] == pytest.approx(eval_accuracy, rel=1e-12)
    events = scalars(run_dir)  # in TensorBoard too, at step 0 of the same tags
    assert events["eval/loss"][0] == (0, pytest.approx(eval_loss, rel=1e-6))
    assert events["train/loss"][0] == (0, pytest.approx(train_loss, rel=1e-6))


def test_step_0_is_never_a_final_or_best_value(run_dir):
    summary = run_experiment(
        run_dir, "data=iris", "batch.size=4", "optimizer.lr=1e6", "log_every=1"
    )  # diverges within the first epoch, before an eval
    assert summary["status"] == "diverged" and metrics(run_dir)[0]["step"] == 0
    assert "eval/loss" in metrics(run_dir)[0] and "eval/loss" not in summary["final"]
    assert "eval/loss" not in summary["best"]
