"""Presets (conf/experiment/): each runs, and its verdict is computed from what the runs
measured; the same judge says `not reproduced` when the numbers do not hold (a grid that
misses the edge, a tolerance tighter than the measurement, a tampered log)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import cli, make_cfg, metrics

import gradexp
from gradexp.presets.judge import judge


@pytest.fixture
def here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def lambda_max_by_numpy() -> float:
    """λ_max of the MSE Hessian (2/n)AᵀA, A = [X 1], on the stability preset's training set."""
    from gradexp.build import build

    cfg, choices = make_cfg("experiment=stability")
    x = build(cfg, choices).data.x_train.numpy().astype(np.float64)
    a = np.hstack([x, np.ones((len(x), 1))])
    return float(np.linalg.eigvalsh(2 / len(x) * a.T @ a)[-1])


def test_stability_finds_the_edge_at_two_over_lambda_max(here):
    runs = gradexp.sweep("experiment=stability")
    v = runs.verdict
    edge = 2 / lambda_max_by_numpy()
    assert v["expected"]["edge"] == pytest.approx(edge, rel=1e-12)
    for r in runs:  # each run's outcome is the theory's: converges iff lr < 2/λ_max
        assert v["measured"]["outcomes"][str(r.lr)] == ("converged" if r.lr < edge else "diverged")
    assert v["reproduced"] is True and abs(v["measured"]["edge"] - edge) / edge <= 0.02
    assert json.loads((runs.dir / "verdict.json").read_text())["reproduced"] is True
    assert (runs.dir / "stability.png").stat().st_size > 10_000
    missed = gradexp.sweep("experiment=stability", "optimizer.lr=0.5,0.6,0.7")
    assert missed.verdict["reproduced"] is False  # nothing diverged: no edge measured
    assert "do not split the grid" in missed.verdict["said"]
    tight = gradexp.sweep("experiment=stability", "optimizer.lr=0.8,1.0")
    assert tight.verdict["measured"]["edge"] == pytest.approx(0.9)
    assert tight.verdict["reproduced"] is (abs(0.9 - edge) / edge <= 0.02)


def test_derivatives_match_the_hand_table_and_a_wrong_number_is_caught(here):
    runs = gradexp.sweep("experiment=derivatives")
    v = runs.verdict
    assert v["reproduced"] is True
    table = {(row["f"], tuple(row["at"].items())): row for row in v["measured"]["table"]}
    texts = {("x**2", (("x", -0.5),)): {"x": -1.0}, ("x**2", (("x", 0.0),)): {"x": 0.0},
             ("x**2", (("x", 0.5),)): {"x": 1.0},
             ("x**2 + y**2", (("x", 2.0), ("y", 2.0))): {"x": 4.0, "y": 4.0},
             ("(1 - x)**2 + 100*(y - x**2)**2", (("x", -1.5), ("y", 2.0))):
                 {"x": -155.0, "y": -50.0}}  # fmt: skip
    assert table.keys() == texts.keys()
    for key, want in texts.items():
        assert table[key]["autograd"] == want and table[key]["symbolic"] == want
        assert table[key]["fd"] == pytest.approx(want, rel=1e-9, abs=1e-9)
    file = runs[3].dir / "metrics.jsonl"  # the bowl: make its finite difference wrong
    rows = [json.loads(x) for x in file.read_text().splitlines()]
    assert rows[0]["step"] == 0 and "function/grad_fd/x" in rows[1]  # step 0: f(θ₀) alone
    rows[1]["function/grad_fd/x"] = 4.1
    file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = {"name": "derivatives", "claim": "c", "tolerance": 1e-6}
    assert judge(runs.dir, spec)["reproduced"] is False


def heavy_ball_rate(lr: float, beta: float, kappa: float, steps: int) -> float:
    """A hand-written heavy-ball loop on (x² + κy²)/2 from (10, 1), its rate fitted as the
    preset fits it."""
    theta, prev = np.array([10.0, 1.0]), np.array([10.0, 1.0])
    h = np.array([1.0, kappa])
    f = []
    for _ in range(steps):
        f.append(0.5 * (h * theta**2).sum())
        theta, prev = theta - lr * h * theta + beta * (theta - prev), theta
    t = np.arange(1, steps + 1)
    keep = t >= steps / 2
    return math.exp(np.polyfit(t[keep], np.log(f)[keep], 1)[0] / 2)


def test_momentum_rates_are_the_closed_forms(here):
    runs = gradexp.sweep("experiment=momentum")
    v = runs.verdict
    kappa = 100.0
    assert v["expected"]["textbook_optimum"] == pytest.approx(
        {"gd": (kappa - 1) / (kappa + 1), "heavy_ball": (kappa**0.5 - 1) / (kappa**0.5 + 1)}
    )
    s = v["expected"]["settings"]
    assert v["measured"]["heavy_ball"] == pytest.approx(
        heavy_ball_rate(s["heavy_ball"]["lr"], s["heavy_ball"]["beta"], kappa, 200), rel=1e-9
    )
    assert v["measured"]["gd"] == pytest.approx(heavy_ball_rate(s["gd"]["lr"], 0.0, kappa, 200),
                                                rel=1e-9)  # fmt: skip
    assert v["reproduced"] is True
    off = gradexp.sweep("experiment=momentum", "model.constants.kappa=10")  # settings for κ=100
    assert off.verdict["reproduced"] is False


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    ["stability", "derivatives", "momentum", "batch_modes", "edge_of_stability", "noise_scale"],
)
def test_a_preset_from_the_command_line_ends_with_its_verdict_line(here, name):
    out = cli(f"experiment={name}", "hydra.sweep.dir=s", cwd=here)
    assert out.returncode == 0, out.stderr[-3000:]
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith(f"gradexp: verdict: {name}: reproduced · ")
    saved = json.loads((here / "s" / "verdict.json").read_text())
    assert set(saved) >= {"experiment", "claim", "reproduced", "measured", "expected", "figures"}
    assert all((here / "s" / f).is_file() for f in saved["figures"])


def test_batch_modes_reach_the_least_squares_loss(here):
    runs = gradexp.sweep("experiment=batch_modes", "epochs=8")
    v = runs.verdict
    from gradexp.build import build

    cfg, choices = make_cfg("experiment=batch_modes")
    data = build(cfg, choices).data
    a = np.hstack([data.x_train.numpy(), np.ones((data.n_train, 1))])
    y = data.y_train.numpy().reshape(-1)
    w, *_ = np.linalg.lstsq(a, y, rcond=None)
    best = float(np.mean((a @ w - y) ** 2))
    assert v["expected"]["least_squares_loss"] == pytest.approx(best, rel=1e-10)
    for r in runs:  # the excess is each run's own final loss over L*
        name = {None: "full", 1: "stochastic"}.get(r.config["batch"]["size"])
        name = name or ("accumulate" if r.config["batch"]["accumulate"] > 1 else "minibatch")
        assert v["measured"]["excess_over_lstsq"][name] == pytest.approx(
            r.summary["final"]["train/loss"] / best - 1
        )
    assert v["measured"]["accumulate_vs_minibatch_max_rel"] < 1e-9
    assert v["reproduced"] is True, v["said"]
    strict = judge(runs.dir, {"name": "batch_modes", "tolerance": 1e-4, "stochastic": 1e-4})
    assert strict["reproduced"] is False  # SGD's floor and mini-batch's excess are measured


def test_edge_of_stability_sharpness_rises_to_two_over_lr_and_hovers(here):
    runs = gradexp.sweep("experiment=edge_of_stability", "optimizer.lr=2", "epochs=400")
    v = runs.verdict
    steps, sharp = runs[0].metrics["curvature/sharpness"]
    edge = 1.0  # 2/η
    first = int(np.argmax(sharp >= 0.95 * edge))
    after = sharp[first:]
    m = v["measured"]["2.0"]
    assert m["reached_edge_at_step"] == steps[first] and m["probes_after"] == len(after)
    assert m["fraction_in_band"] == pytest.approx(np.mean((after >= 0.8) & (after <= 1.3)))
    assert sharp[0] < 0.8 * edge and v["reproduced"] is True, v["said"]
    file = runs[0].dir / "metrics.jsonl"  # a run whose sharpness never rises: not reproduced
    rows = [json.loads(x) for x in file.read_text().splitlines()]
    for r in rows:
        if "curvature/sharpness" in r:
            r["curvature/sharpness"] = 0.5
    file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    flat = judge(runs.dir, {"name": "edge_of_stability"})
    assert flat["reproduced"] is False and flat["measured"]["2.0"]["reached_edge_at_step"] is None


@pytest.mark.slow
def test_optimizers_paths_on_rosenbrock_and_steps_to_the_minimum(here):
    runs = gradexp.sweep("experiment=optimizers", "epochs=2500")
    v = runs.verdict
    for r in runs:  # steps to within 1e-3 of (1, 1), recomputed from metrics.jsonl
        rows = [m for m in metrics(r.dir) if "function/x" in m]
        near = [
            m["step"] for m in rows if math.hypot(m["function/x"] - 1, m["function/y"] - 1) < 1e-3
        ]
        name = r.summary["choices"]["optimizer"]
        assert v["measured"]["steps_to_minimum"][name] == (near[0] if near else math.inf)
    steps = v["measured"]["steps_to_minimum"]
    assert v["reproduced"] is (
        max(steps[n] for n in ("momentum", "nesterov", "adam")) < steps["sgd"]
    )
    assert v["reproduced"] is True, v["said"]
    assert (runs.dir / "optimizers.png").stat().st_size > 20_000
    assert judge(runs.dir, {"name": "optimizers", "within": 1e-12})["reproduced"] is False


def test_linear_scaling_holds_up_to_a_batch_size_then_breaks(here):
    runs = gradexp.sweep("experiment=linear_scaling")
    v = runs.verdict

    def per_epoch(run):
        return {m["epoch"]: m["epoch/train_loss"] for m in metrics(run.dir) if "epoch" in m}

    base = per_epoch(min(runs, key=lambda r: r.config["batch"]["size"]))
    for r in runs:  # each gap recomputed from metrics.jsonl's per-epoch lines
        k = r.config["batch"]["size"] / 16
        assert r.lr == pytest.approx(0.1 * k)  # the lr scaled with the batch
        mine = per_epoch(r)
        gap = max(abs(mine[e] - base[e]) / base[e] for e in base if e >= 2)
        assert v["measured"]["gap_to_base"][f"{k:g}"] == pytest.approx(gap, rel=1e-12)
    assert v["reproduced"] is True and 4 <= v["measured"]["holds_up_to_k"] < 32, v["said"]
    strict = judge(runs.dir, {"name": "linear_scaling", "tolerance": 1e-4})
    assert strict["reproduced"] is False and strict["measured"]["holds_up_to_k"] == 1


@pytest.mark.slow
def test_catapult_spikes_between_2_and_4_over_lambda0_and_not_below(here):
    runs = gradexp.sweep("experiment=catapult", "optimizer.lr=0.2,0.45,0.55", "epochs=120")
    v = runs.verdict
    for r, row in zip(sorted(runs, key=lambda r: r.lr), v["measured"]["runs"]):
        rows = [m for m in metrics(r.dir) if "epoch" not in m]
        loss = [m["train/loss"] for m in rows if "train/loss" in m]
        sharp = [m["curvature/sharpness"] for m in rows if "curvature/sharpness" in m]
        lam0 = next(m["curvature/sharpness"] for m in rows if m["step"] == 1
                    and "curvature/sharpness" in m)  # fmt: skip
        assert row["lambda0"] == lam0 and row["lr_lambda0_over_2"] == pytest.approx(r.lr * lam0 / 2)
        assert row["spiked"] is (max(loss[:100]) > 2 * loss[0])
        assert row["final_sharpness"] == sharp[-1]
    regimes = [row["regime"] for row in v["measured"]["runs"]]
    assert regimes == ["below 2/λ₀", "catapult", "catapult"]
    assert v["reproduced"] is True, v["said"]
    assert judge(runs.dir, {"name": "catapult", "spike": 1e6})["reproduced"] is False


def test_an_unknown_judge_is_refused_before_anything_runs(here):
    out = cli("experiment=stability", "verdict.name=nope", "hydra.sweep.dir=s", cwd=here)
    assert out.returncode == 2 and not (here / "s").exists()
    assert (
        out.stderr.strip()
        .splitlines()[-1]
        .startswith(
            "gradexp: error: verdict.name=nope: no such judge; choose one of batch_modes, catapult"
        )
    )


def test_a_preset_adds_its_dash_m_and_launcher_to_the_command_line_and_nothing_else():
    from gradexp.presets import command_line

    assert command_line(["experiment=stability"]) == ["-m", "hydra/launcher=vectorized"]
    assert command_line(["+experiment=momentum"]) == ["-m"]
    assert command_line(["-m", "experiment=stability", "hydra/launcher=gradexp"]) == []
    assert command_line(["experiment=stability", "--cfg", "job"]) == []  # prints, runs nothing
    assert command_line(["optimizer=adam"]) == command_line(["experiment=nope"]) == []
    for printing in (["--cfg=job"], ["-cjob"], ["-c", "job"], ["--info"], ["-r"], ["--help"]):
        assert command_line(["experiment=stability", *printing]) == [], printing


def test_a_bad_verdict_setting_is_refused_before_anything_runs(here):
    out = cli("experiment=stability", "verdict.tolerance=abc", "hydra.sweep.dir=s", cwd=here)
    assert out.returncode == 2 and not (here / "s").exists()
    assert out.stderr.strip().splitlines()[-1] == (
        "gradexp: error: verdict.tolerance=abc: must be a finite number > 0 (or a list of them)"
    )
    shown = cli("experiment=stability", "--cfg", "job", cwd=here)
    assert shown.returncode == 0 and "verdict:" in shown.stdout  # --cfg as for any config


def fake(path, choices: dict, config: dict, points: list[dict]):
    from gradexp.study.runs import Run

    path.mkdir(parents=True, exist_ok=True)
    return Run(path, {"status": "ok", "choices": choices}, config, points)


def test_judges_cannot_pass_on_missing_or_nan_numbers(tmp_path):
    from gradexp.presets import derivatives, optimizers

    model = {"expression": "x**2 + y**2", "start": {"x": 2.0, "y": 2.0}}
    good = {f"function/grad_{m}/{v}": 4.0 for m in derivatives.METHODS for v in "xy"}
    ok = fake(tmp_path / "d0", {}, {"model": model}, [{"step": 1, **good}])
    assert derivatives.verdict([ok], {"tolerance": 1e-6}, tmp_path)["reproduced"] is True
    nan = fake(tmp_path / "d1", {}, {"model": model},
               [{"step": 1, **good, "function/grad_fd/y": float("nan")}])  # fmt: skip
    assert derivatives.verdict([ok, nan], {}, tmp_path)["reproduced"] is False
    lost = {k: v for k, v in good.items() if not k.endswith("/y")} | {
        "function/grad_autograd/y": 4.0
    }
    gone = fake(tmp_path / "d2", {}, {"model": model}, [{"step": 1, **lost}])
    assert derivatives.verdict([gone], {}, tmp_path)["reproduced"] is False  # fd/y missing

    def path_to_minimum(name, steps):
        pts = [{"step": s, "function/x": 1.0 if s >= steps else 0.0,
                "function/y": 1.0 if s >= steps else 0.0} for s in range(1, 50)]  # fmt: skip
        return fake(tmp_path / name, {"optimizer": name}, {}, pts)

    fast = [path_to_minimum(n, 10) for n in ("momentum", "nesterov", "adam")]
    assert optimizers.verdict([*fast, path_to_minimum("sgd", 40)], {}, tmp_path)["reproduced"]
    assert not optimizers.verdict(fast, {}, tmp_path)["reproduced"]  # no GD run to beat


@pytest.mark.slow
def test_a_preset_with_a_failed_job_still_ends_with_its_verdict_and_exit_1(here):
    out = cli("experiment=stability", "optimizer.lr=0.5,-1", "hydra.sweep.dir=s", cwd=here)
    assert out.returncode == 1, out.stderr[-2000:]
    lines = out.stderr.strip().splitlines()
    assert "gradexp: 1 of 2 jobs failed: 1" in lines
    assert lines[-1] == "gradexp: verdict: stability: NOT reproduced · 1 of 2 runs failed"
    assert json.loads((here / "s" / "verdict.json").read_text())["reproduced"] is False
