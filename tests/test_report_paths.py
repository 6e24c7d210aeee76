"""The report's picture of a model=function sweep: every path on one contour (one curve for
one variable), f evaluated by gradexp.formula.numeric, checked against numpy written by hand
and the paths against gradient descent's closed form on a bowl."""

from __future__ import annotations

import numpy as np
import pytest

import gradexp
from gradexp import formula
from gradexp.errors import ConfigError
from gradexp.study import figures, paths, report, runs


def test_numeric_is_the_formula_on_arrays_and_refuses_what_check_refuses():
    x, y = np.meshgrid(np.linspace(-2, 2, 7), np.linspace(-1, 3, 5))
    cases = {
        "(a - x)**2 + b*(y - x**2)**2": (1 - x) ** 2 + 100 * (y - x**2) ** 2,
        "x^2 + 3*y^2 - x*y": x**2 + 3 * y**2 - x * y,
        "sin(x)*exp(-y) + Abs(x) + Max(x, y, 0) - Min(x, y)": np.sin(x) * np.exp(-y)
        + np.abs(x) + np.maximum(np.maximum(x, y), 0) - np.minimum(x, y),
        "-x + pi*E + sqrt(abs(y))": -x + np.pi * np.e + np.sqrt(np.abs(y)),
    }  # fmt: skip
    for text, want in cases.items():
        got = formula.numeric(text, {"x": x, "y": y, "a": 1.0, "b": 100.0})
        np.testing.assert_allclose(got, want, rtol=1e-15, err_msg=text)
    assert np.isnan(formula.numeric("log(x)", {"x": np.array([-1.0])})).all()  # no raise
    base = np.array([2.0, 4.0])  # SymPy's log(a, b) is to base b; b is not numpy's `out`
    np.testing.assert_allclose(formula.numeric("log(x, y)", {"x": base**3, "y": base}), [3, 3])
    assert base.tolist() == [2.0, 4.0]
    for bad in ("__import__('os').system('true')", "x.real", "z + x", "sqrt(x, 2)", "Max()"):
        with pytest.raises(ConfigError) as e:
            formula.numeric(bad, {"x": x})
        assert "expression=" in str(e.value) and "\n" not in str(e.value)


def sweep_of(root, *overrides) -> list:
    """The configurations of a real sweep (Hydra writes each job's .hydra/config.yaml)."""
    done = gradexp.sweep(*overrides, "dtype=float64", f"hydra.sweep.dir={root}")
    found, _ = runs.find([done.dir])
    return report.group([runs.load(p) for p in found])


def test_a_function_sweep_draws_every_path_on_one_contour(tmp_path):
    bowl = ("model=function", "model.expression=x**2 + y**2", "model.start={x: 2, y: 1}")
    lrs = (0.05, 0.2)
    configs = sweep_of(tmp_path / "s", *bowl, "optimizer.lr=0.05,0.2", "epochs=20")
    fig = paths.paths_figure(configs)
    ax = fig.axes[0]
    drawn = {line.get_label(): line for line in ax.get_lines() if line.get_gid() == "path"}
    assert len(drawn) == 2 and ax.collections  # two paths, one set of contour lines
    for lr in lrs:  # GD on x²+y²: θ_t = (1 − 2η)^t θ₀, logged from θ₀ at step 1
        line = next(v for k, v in drawn.items() if f"optimizer.lr={lr}" in k)
        t = np.arange(20)
        np.testing.assert_allclose(line.get_xdata(), 2 * (1 - 2 * lr) ** t, rtol=1e-12)
        np.testing.assert_allclose(line.get_ydata(), 1 * (1 - 2 * lr) ** t, rtol=1e-12)
    assert ax.get_xlabel() == "x" and ax.get_ylabel() == "y"
    written = figures.write_all(configs, tmp_path)
    assert tmp_path / "paths.png" in written and (tmp_path / "paths.png").stat().st_size > 1000
    assert report.main([str(tmp_path / "s")]) == 0 and (tmp_path / "s/report/paths.png").is_file()


def test_one_variable_gives_a_curve_and_a_mixed_sweep_no_picture(tmp_path):
    configs = sweep_of(tmp_path / "one", "model=parabola", "optimizer.lr=0.1", "epochs=10,11")
    ax = paths.paths_figure(configs).axes[0]
    line = next(v for v in ax.get_lines() if v.get_gid() == "path")  # epochs=10, then 11
    x = 1.0 * 0.8 ** np.arange(10)  # x ← x − 0.1·2x from x₀ = 1
    np.testing.assert_allclose(line.get_xdata(), x, rtol=1e-12)
    np.testing.assert_allclose(line.get_ydata(), x**2, rtol=1e-12)  # drawn on f itself
    mixed = sweep_of(tmp_path / "mixed", "model=parabola,mlp", "epochs=3")
    assert paths.paths_figure(mixed) is None
    two = sweep_of(tmp_path / "two", "model=parabola,rosenbrock", "epochs=3")
    assert paths.paths_figure(two) is None  # two different functions share no contour


def test_an_odd_function_never_costs_the_report_its_other_figures(tmp_path, capsys, monkeypatch):
    # SymPy simplifies y away (only function/x is logged); log(x) is NaN on a box of x < 0
    gone = sweep_of(tmp_path / "gone", "model=function", "model.expression=x + y - y",
                    "model.start={x: 1, y: 2}", "epochs=3,4")  # fmt: skip
    assert paths.shared_function(gone)[2] == ["x"] and paths.paths_figure(gone) is not None
    real = formula.numeric  # f undefined on all of the box (log of negatives): no contour
    monkeypatch.setattr(formula, "numeric", lambda text, v: real(text, v) * np.nan)
    fig = paths.paths_figure(gone)
    assert not fig.axes[0].collections and any(v.get_gid() == "path" for v in fig.axes[0].lines)

    def broken(text, values):
        raise ValueError("an evaluator bug")

    monkeypatch.setattr(formula, "numeric", broken)  # and a failure costs only paths.png
    written = figures.write_all(gone, tmp_path)
    assert tmp_path / "loss_vs_step.png" in written and tmp_path / "paths.png" not in written
    assert "paths.png not drawn: ValueError: an evaluator bug" in capsys.readouterr().err
