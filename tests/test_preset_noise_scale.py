"""The noise_scale preset (McCandlish et al. 2018): the critical batch size from the steps to a
target loss across batch sizes, against the noise probe's B_simple. Every number of the verdict
is recomputed here from metrics.jsonl, and the fit by numpy's own weighted polyfit."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import metrics

import gradexp
from gradexp.presets import noise_scale
from gradexp.presets.judge import judge


def test_the_fit_recovers_a_known_critical_batch_and_refuses_a_rising_curve():
    sizes = np.array([4, 8, 16, 32, 64, 128, 256, 512], float)
    s_min, b_crit = noise_scale.fit(sizes, 12 * (1 + 150 / sizes))
    assert (s_min, b_crit) == (pytest.approx(12, rel=1e-10), pytest.approx(150, rel=1e-10))
    assert all(map(math.isnan, noise_scale.fit(sizes, 10 + sizes)))  # more steps with B


def steps_to_target(run_dir, target: float) -> float:
    evals = [(m["step"], m["eval/loss"]) for m in metrics(run_dir) if "eval/loss" in m]
    return next((float(s) for s, v in evals if v <= target), math.inf)


def test_the_verdict_is_the_steps_fit_against_the_probed_noise_scale(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cases = "noise_scale_b8,noise_scale_b32,noise_scale_b128,noise_scale_full"
    runs = gradexp.sweep("experiment=noise_scale", f"+case={cases}", "optimizer.lr=0.25,1,2.83")
    v, target = runs.verdict, 0.13
    assert len(runs) == 12 and v["expected"]["target_eval_loss"] == target
    best = {}
    for r in runs:  # each batch size's fewest steps to the target, read from metrics.jsonl
        b = r.config["batch"]["size"] or r.summary["n_train"]
        best[b] = min(best.get(b, math.inf), steps_to_target(r.dir, target))
    assert v["measured"]["steps_to_target"] == {str(b): s for b, s in sorted(best.items())}
    assert all(math.isfinite(s) for s in best.values()) and best[8] > 2 * best[1438]
    b = np.array(sorted(best), float)
    s = np.array([best[int(x)] for x in b])
    e_min, s_min = np.polyfit(1 / b, s, 1, w=1 / s)  # S = S_min + E_min / B, relative errors
    assert v["measured"]["b_crit"] == pytest.approx(e_min / s_min, rel=1e-9)
    probed = [r for r in runs if r.config["batch"]["size"] == 32]
    fastest = min(probed, key=lambda r: steps_to_target(r.dir, target))
    until = steps_to_target(fastest.dir, target)
    scales = [m["noise/noise_scale"] for m in metrics(fastest.dir)
              if "noise/noise_scale" in m and m["step"] <= until]  # fmt: skip
    assert v["measured"]["b_simple"] == pytest.approx(np.mean(scales), rel=1e-12)
    ratio = (e_min / s_min) / np.mean(scales)
    assert v["measured"]["ratio"] == pytest.approx(ratio, rel=1e-9)
    assert v["reproduced"] is bool(1 / 3 <= ratio <= 3), v["said"]
    assert (runs.dir / "noise_scale.png").is_file()
    strict = judge(runs.dir, {"name": "noise_scale", "target": target, "factor": 1.01})
    assert strict["reproduced"] is bool(1 / 1.01 <= ratio <= 1.01) is False
    easy = judge(runs.dir, {"name": "noise_scale", "target": 50.0})  # above the initial loss:
    assert set(easy["measured"]["steps_to_target"].values()) == {1.0}  # counted from step 1
    far = judge(runs.dir, {"name": "noise_scale", "target": 0.01})  # reached by no run
    assert far["reproduced"] is False and "reached the target" in far["said"]
