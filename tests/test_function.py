"""model=function: the texts' own numbers, exactly (float64), and the path plot."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
from conftest import make_cfg, metrics, run_experiment, scalars, series
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from gradexp.errors import ConfigError
from gradexp.function import FunctionModel, ObjectiveLoss
from gradexp.probes.function import FunctionGradients

F64 = "dtype=float64"


def gradients_at(expression: str, point: dict[str, float]) -> dict[str, torch.Tensor]:
    """The function probe at one point: autograd (by a backward pass), symbolic and FD."""
    model = FunctionModel(expression=expression, start=point).double()
    loss = ObjectiveLoss()(model(torch.zeros(1, 1)), None)
    loss.backward()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    return FunctionGradients()(model=model, micro=[], loss_fn=None, optimizer=optimizer)


@pytest.mark.parametrize(("x", "slope"), [(-0.5, -1.0), (0.5, 1.0), (0.0, 0.0)])
def test_derivative_of_x_squared_is_the_texts(x, slope):
    g = gradients_at("x**2", {"x": x})
    assert g["function/value"].item() == x * x
    assert g["function/grad_autograd/x"].item() == slope
    assert g["function/grad_symbolic/x"].item() == slope
    assert g["function/grad_fd/x"].item() == pytest.approx(slope, abs=1e-9)
    assert g["function/grad_error_symbolic"].item() == 0.0


def test_gradient_of_x2_plus_y2_at_2_2_is_4_4():
    g = gradients_at("x**2 + y**2", {"x": 2, "y": 2})
    for var in "xy":
        assert g[f"function/grad_autograd/{var}"].item() == 4.0
        assert g[f"function/grad_symbolic/{var}"].item() == 4.0
        assert g[f"function/grad_fd/{var}"].item() == pytest.approx(4.0, abs=1e-8)


def test_three_gradients_agree_on_a_curvy_function():
    g = gradients_at("sin(x)*exp(y) + sqrt(x**2 + 1) + abs(y)^3", {"x": 0.3, "y": -0.7})
    x, y = 0.3, -0.7
    dx = math.cos(x) * math.exp(y) + x / math.sqrt(x * x + 1)
    dy = math.sin(x) * math.exp(y) - 3 * y * y
    assert g["function/grad_symbolic/x"].item() == pytest.approx(dx, rel=1e-14)
    assert g["function/grad_symbolic/y"].item() == pytest.approx(dy, rel=1e-14)
    assert g["function/grad_error_symbolic"].item() < 1e-14
    assert g["function/grad_error_fd"].item() < 1e-8


def test_gd_on_x_squared_contracts_by_one_minus_two_alpha(run_dir):
    alpha = 0.3
    run_experiment(run_dir, "model=parabola", "model.start={x: 1.5}", f"optimizer.lr={alpha}",
                   "epochs=12", F64)  # fmt: skip
    xs = [v for _, v in series(run_dir, "function/x")]
    assert len(xs) == 12 and xs[0] == 1.5
    for before, after in itertools.pairwise(xs):
        assert after / before == pytest.approx(1 - 2 * alpha, rel=1e-12)
    # The same values reach TensorBoard.
    assert [v for _, v in scalars(run_dir)["function/x"]] == pytest.approx(xs, rel=1e-6)


@pytest.mark.parametrize("alpha", [0.75, 1.5])
def test_gd_on_x_squared_oscillates_below_one_and_diverges_above(run_dir, alpha):
    run_experiment(run_dir, "model=parabola", f"optimizer.lr={alpha}", "epochs=10", F64)
    xs = [v for _, v in series(run_dir, "function/x")]
    ratios = [b / a for a, b in itertools.pairwise(xs)]
    assert ratios == pytest.approx([1 - 2 * alpha] * 9, rel=1e-12)
    assert (abs(xs[-1]) < abs(xs[0])) == (alpha < 1)


def test_default_function_run_logs_side_by_side_and_draws_the_path(run_dir):
    summary = run_experiment(
        run_dir, "model=function", "model.expression=x**2 + y**2", "model.start={x: 2, y: 2}",
        "optimizer.lr=0.1", "epochs=15", "log_every=1", F64,
    )  # fmt: skip
    assert summary["status"] == "ok" and summary["steps"] == 15
    start, first = metrics(run_dir)[:2]
    assert start == {"step": 0, "time": start["time"], "train/loss": 8.0}  # f(θ₀), before a step
    assert first["step"] == 1 and first["function/value"] == 8.0
    for kind in ("autograd", "symbolic", "fd"):
        assert first[f"function/grad_{kind}/x"] == pytest.approx(4.0, abs=1e-8)
    # Step 15's loss is f at the point after 14 updates, each multiplying θ by 1 − 2·0.1; the
    # final train loss is f after all 15.
    assert summary["final"]["train/interval_loss"] == pytest.approx(8 * 0.8**28, rel=1e-12)
    assert summary["final"]["train/loss"] == pytest.approx(8 * 0.8**30, rel=1e-12)
    assert summary["probes"]["function"]["end"]["x"] == pytest.approx(2 * 0.8**15, rel=1e-12)
    png = run_dir / "trajectory.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    acc = EventAccumulator(str(run_dir), size_guidance={"images": 0})
    acc.Reload()
    (image,) = acc.Images("function/trajectory")
    assert image.step == 15 and image.width > 500 and image.height > 300
    tags = set(scalars(run_dir))
    assert {"function/grad_error_symbolic", "function/grad_error_fd", "function/y"} <= tags
    saved = json.loads((run_dir / "summary.json").read_text())
    assert saved["probes"]["function"]["plot"] == "trajectory.png"


@pytest.mark.parametrize("preset", ["function", "parabola", "rosenbrock", "quadratic"])
def test_every_function_preset_runs(tmp_path, preset):
    summary = run_experiment(tmp_path / preset, f"model={preset}", "epochs=3", "optimizer.lr=1e-4")
    assert summary["status"] == "ok" and (tmp_path / preset / "trajectory.png").is_file()


@pytest.mark.parametrize(
    ("override", "key", "says"),
    [
        ("model.expression=x +", "model.expression", "not a formula"),
        ("model.expression=\"__import__('os')\"", "model.expression", "not accepted"),
        ("model.expression='x.real'", "model.expression", "not accepted"),
        ("model.expression='foo(x)'", "model.expression", "unknown function"),
        ("model.expression=3", "model.expression", "no variables"),
        ("model.expression=x**2 + z**2", "model.start", "lacks z"),
        ("model.start.x=inf", "model.start.x", "finite"),
    ],
)
def test_bad_function_config_is_a_config_error_naming_the_key(override, key, says):
    from gradexp import run

    cfg, choices = make_cfg("model=function", override)
    with pytest.raises(ConfigError) as e:
        run.run(cfg, None, choices, [])
    assert e.value.key == key and says in str(e.value)


@pytest.mark.slow
def test_the_documented_command_just_works(tmp_path):
    from conftest import cli

    done = cli("model=function", "model.expression=x**2 + y**2", "model.start={x: 2, y: 2}",
               "optimizer.lr=0.1", "hydra.run.dir=out", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "f(x, y) = x**2 + y**2" in done.stdout + done.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["status"] == "ok" and summary["steps"] == 20
    assert (tmp_path / "out" / "trajectory.png").is_file()
