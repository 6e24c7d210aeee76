"""Gradient check, Taylor check, trajectory, schedules and the probes config group."""

from __future__ import annotations

import logging

import pytest
import torch
from conftest import make_cfg, metrics, run_experiment, scalars
from torch import nn

from gradexp.errors import ConfigError
from gradexp.losses import CrossEntropyLoss, MSELoss
from gradexp.probes.gradcheck import GradCheck
from gradexp.probes.schedule import Scheduled
from gradexp.probes.taylor import Taylor
from gradexp.probes.trajectory import Trajectory

PROBES = ["gradcheck", "noise", "sharpness", "hessian", "taylor", "trajectory"]


class WrongBackward(torch.autograd.Function):
    """tanh whose backward forgets the chain rule's 1 − tanh²: a bug gradcheck must catch."""

    @staticmethod
    def forward(ctx, x):
        return torch.tanh(x)

    @staticmethod
    def backward(ctx, g):
        return g


class Buggy(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(4, 3)

    def forward(self, x):
        return WrongBackward.apply(self.layer(x))


def digits_like(n=32):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 4, generator=g), torch.randint(0, 3, (n,), generator=g)


def test_gradcheck_passes_on_a_correct_model_and_fails_loudly_on_a_wrong_backward(caplog):
    x, y = digits_like()
    torch.manual_seed(0)
    good = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3))
    probe = GradCheck(coords=23, l2=0.01)
    probe.due(7)
    out = probe(model=good, micro=[(x, y)], loss_fn=CrossEntropyLoss(), optimizer=None)
    assert out["gradcheck/max_rel_error"].item() < 1e-7
    assert out["gradcheck/h"].item() == 1e-6
    assert probe.finish(None, None, 10)["gradcheck"]["passed"] is True
    bad = GradCheck(coords=15)
    bad.due(3)
    out = bad(model=Buggy(), micro=[(x, y)], loss_fn=CrossEntropyLoss(), optimizer=None)
    assert out["gradcheck/max_rel_error"].item() > 0.01
    with caplog.at_level(logging.WARNING, logger="gradexp"):
        report = bad.finish(None, None, 10)["gradcheck"]
    assert report["passed"] is False and report["step"] == 3
    assert "GRADIENT CHECK FAILED" in caplog.text


def test_gradcheck_end_to_end_on_the_digits_mlp(run_dir):
    summary = run_experiment(run_dir, "probes=[gradcheck]", "probes.gradcheck.every=5",
                             "max_steps=10", "l2=0.001")  # fmt: skip
    logged = scalars(run_dir)["gradcheck/max_rel_error"]
    assert [s for s, _ in logged] == [5, 10] and all(v < 1e-4 for _, v in logged)
    assert summary["probes"]["gradcheck"]["passed"] is True


def test_taylor_second_order_is_exact_on_a_quadratic_and_first_order_is_not():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 3, generator=g, dtype=torch.float64)
    y = torch.randn(40, 1, generator=g, dtype=torch.float64)
    model = nn.Linear(3, 1).double()
    opt = torch.optim.SGD(model.parameters(), lr=0.3)
    out = Taylor(l2=0.01)(model=model, micro=[(x, y)], loss_fn=MSELoss(), optimizer=opt)
    actual = out["taylor/actual"].item()
    # Independent: take the step by hand and evaluate the loss before and after.
    loss = MSELoss()(model(x), y) + 0.01 * sum(p.square().sum() for p in model.parameters())
    grads = torch.autograd.grad(loss, list(model.parameters()))
    with torch.no_grad():
        w, b = (p - 0.3 * gp for p, gp in zip(model.parameters(), grads))
        after = MSELoss()(x @ w.T + b, y) + 0.01 * (w.square().sum() + b.square().sum())
    assert actual == pytest.approx((after - loss).item(), rel=1e-12)
    assert out["taylor/second_order"].item() == pytest.approx(actual, rel=1e-10)
    assert out["taylor/first_order"].item() < actual  # the curvature term is positive


def test_taylor_end_to_end_is_second_order_accurate_for_a_small_step(run_dir):
    run_experiment(run_dir, "probes=[taylor]", "probes.taylor.every=1", "max_steps=5",
                   "model.activation=tanh",  # smooth: ReLU kinks are invisible to the Hessian
                   "optimizer.lr=0.01", "dtype=float64")  # fmt: skip
    for m in (m for m in metrics(run_dir) if "taylor/actual" in m):
        first = abs(m["taylor/actual"] - m["taylor/first_order"])
        second = abs(m["taylor/actual"] - m["taylor/second_order"])
        assert second < 0.1 * first


def test_trajectory_matches_a_hand_written_momentum_loop(run_dir):
    lr, beta, steps = 0.05, 0.9, 12
    run_experiment(run_dir, "data=regression", "model=linear", "loss=mse", "batch=full",
                   "optimizer=momentum", f"optimizer.lr={lr}", f"optimizer.momentum={beta}",
                   f"epochs={steps}", "dtype=float64", "probes=[trajectory]",
                   "probes.trajectory.every=4")  # fmt: skip
    from gradexp.data import regression, split

    data = split(regression(1000, 5, 0.1, 0), eval_fraction=0.2, standardize=False, split_seed=0,
                 device=torch.device("cpu"), dtype=torch.float64)  # fmt: skip
    z = torch.cat([data.x_train, torch.ones(data.n_train, 1, dtype=torch.float64)], dim=1)
    theta, velocity, path = torch.zeros(6, dtype=torch.float64), 0, []
    for _ in range(steps):  # heavy ball on (1/n)‖zθ − y‖², the loop's before-step points
        path.append(theta.clone())
        grad = 2 / data.n_train * z.T @ (z @ theta - data.y_train)
        velocity = beta * velocity + grad
        theta = theta - lr * velocity
    logged = {m["step"]: m for m in metrics(run_dir) if "trajectory/distance_from_init" in m}
    assert sorted(logged) == [4, 8, 12]
    for s, m in logged.items():
        before = path[s - 1]
        assert m["trajectory/distance_from_init"] == pytest.approx((before - path[0]).norm().item())
        a, b = path[s - 2] - path[s - 3], before - path[s - 2]
        cosine = (a @ b / (a.norm() * b.norm())).item()
        assert m["trajectory/update_cosine"] == pytest.approx(cosine, rel=1e-9)


def test_trajectory_runs_on_the_steps_it_needs():
    probe = Trajectory(every=10)
    assert [s for s in range(1, 32) if probe.due(s)] == [1, 8, 9, 10, 18, 19, 20, 28, 29, 30]


def test_schedules_every_k_and_log_spaced():
    assert [s for s in range(1, 20) if Scheduled(5).due(s)] == [5, 10, 15]
    log = Scheduled("log", per_decade=4)
    assert [s for s in range(1, 1001) if log.due(s)] == [1, 2, 4, 6, 10, 18, 32, 57, 100, 178,
                                                         317, 563, 1000]  # fmt: skip
    for bad in (0, -3, "often", 2.5, True):
        with pytest.raises(ConfigError, match="every"):
            Scheduled(bad)


def test_every_probe_of_the_group_runs_and_logs_its_tags(run_dir):
    every = [f"probes.{p}.every=2" for p in PROBES]
    summary = run_experiment(run_dir, f"probes=[{','.join(PROBES)}]", *every, "max_steps=4",
                             "model.hidden=[16]", "probes.sharpness.iters=3",
                             "probes.hessian.samples=2")  # fmt: skip
    assert summary["status"] == "ok"
    tags = set(scalars(run_dir))
    expect = {"gradcheck/max_rel_error", "noise/grad_variance", "noise/noise_scale", "noise/snr",
              "noise/cosine_to_full", "curvature/sharpness", "curvature/threshold",
              "curvature/trace", "taylor/actual", "taylor/first_order", "taylor/second_order",
              "trajectory/distance_from_init", "trajectory/update_cosine"}  # fmt: skip
    assert expect <= tags


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["probes=[sharpness]", "probes.sharpness.method=arnoldi"], "probes.sharpness.method"),
        (["probes=[noise]", "probes.noise.every=0"], "probes.noise.every"),
        (["probes=[hessian]", "probes.hessian.batch=-1"], "probes.hessian.batch"),
        (["probes=[gradcheck]", "probes.gradcheck.h=0"], "probes.gradcheck.h"),
    ],
)
def test_bad_probe_settings_are_config_errors_naming_the_key(tmp_path, overrides, key):
    from gradexp import run

    cfg, choices = make_cfg(*overrides, "max_steps=1")
    with pytest.raises(ConfigError) as e:
        run.run(cfg, tmp_path, choices, [])
    assert e.value.key == key


def test_no_probes_by_default():
    cfg, _ = make_cfg()
    assert cfg.get("probes") is None
