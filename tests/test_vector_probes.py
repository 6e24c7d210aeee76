"""The sharpness probe measured on a vectorised group: every member's curvature/sharpness,
its iteration count and its threshold equal its sequential run's (float64, 1e-10), in full
and accumulated batches, on the update's batch and on a fixed one, with and without a
tolerance; a diverging member's NaN reaches no other member's sharpness; the threshold is
(2+2β)/η recomputed here; a killed and resumed group is bitwise the one that never stopped."""

from __future__ import annotations

import logging

import pytest
from conftest import metrics
from test_vector import IRIS, compare
from test_vector_resume import MEMBERS, assert_same_members, fault_at, group, sigterm

from gradexp.vector.run import run_group

SHARP = ["probes=[sharpness]", "dtype=float64"]
CASES = {
    "sgd_full_every3_l2": (["batch=full", "epochs=12", "optimizer=sgd", "l2=0.001",
                            "probes.sharpness.every=3", "probes.sharpness.tol=0"],
                           [["optimizer.lr=0.3"], ["optimizer.lr=0.05"]]),
    "momentum_accumulate_tol": (["batch=minibatch", "batch.size=8", "batch.accumulate=3",
                                 "epochs=3", "log_every=2", "optimizer=momentum",
                                 "probes.sharpness.every=2", "probes.sharpness.tol=1e-3"],
                                [["optimizer.lr=0.05"], ["optimizer.lr=0.02",
                                                         "optimizer.momentum=0.5"]]),
    "nesterov_fixed_batch_log": (["batch=minibatch", "batch.size=16", "epochs=4",
                                  "optimizer=nesterov", "probes.sharpness.every=log",
                                  "probes.sharpness.batch=40", "probes.sharpness.tol=1e-4"],
                                 [["optimizer.lr=0.05"], ["optimizer.lr=0.01",
                                                          "optimizer.momentum=0.8"]]),
    "adam_whole_set": (["batch=minibatch", "batch.size=16", "epochs=2", "optimizer=adam",
                        "probes.sharpness.every=5", "probes.sharpness.batch=null"],
                       [["optimizer.lr=0.01"], ["optimizer.lr=0.003"]]),
}  # fmt: skip
BETAS = {
    "sgd_full_every3_l2": (0, 0),
    "momentum_accumulate_tol": (0.9, 0.5),
    "nesterov_fixed_batch_log": (0.9, 0.8),
}  # each member's β (the configs' defaults 0.9)


def sharpness(run_dir) -> list[dict]:
    return [m for m in metrics(run_dir) if "curvature/sharpness" in m]


@pytest.mark.parametrize("case", CASES)
def test_a_members_sharpness_equals_its_sequential_runs(tmp_path, caplog, case):
    caplog.set_level(logging.INFO, logger="gradexp")
    common, members = CASES[case]
    compare(tmp_path, [*IRIS, *SHARP, *common], members, rel=1e-10)
    assert "2 members as one model" in caplog.text and "one after another" not in caplog.text
    for i, own in enumerate(members):
        points = sharpness(tmp_path / "group" / f"member{i}")
        assert len(points) >= 3 and all(p["curvature/sharpness"] > 0 for p in points)
        if case.startswith("adam"):  # no stability threshold for Adam
            assert not any("curvature/threshold" in p for p in points)
            continue
        lr, beta = float(own[0].split("=")[1]), BETAS[case][i]
        want = (2 + 2 * beta) / ((1 + 2 * beta) * lr) if "nesterov" in case else (2 + 2 * beta) / lr
        assert all(p["curvature/threshold"] == pytest.approx(want, rel=1e-12) for p in points)
    if "tol=0" not in " ".join(common) and "adam" not in case:
        # the tolerance ends power iterations early, each member at its own product (equal to
        # its run's, by compare): at least one estimate stopped before the 20 allowed
        used = [p["curvature/sharpness_iters"] for i in range(2)
                for p in sharpness(tmp_path / "group" / f"member{i}")]  # fmt: skip
        assert min(used) < 20 and all(u == int(u) for u in used)


def test_a_diverging_member_leaves_the_others_sharpness_untouched(tmp_path):
    summaries = compare(tmp_path, [*IRIS, *SHARP, "batch=full", "epochs=150", "log_every=5",
                                   "diverge.factor=null", "probes.sharpness.every=5"],
                        [["optimizer.lr=0.5"], ["optimizer.lr=80"], ["optimizer.lr=0.1"]],
                        rel=1e-10, seeds=(0, 1, 2))  # fmt: skip
    assert [s["status"] for s in summaries] == ["ok", "diverged", "ok"]


def test_sigterm_then_resume_with_sharpness_is_bitwise(tmp_path, monkeypatch):
    common = ["batch=full", "batch.accumulate=3", "epochs=12", "checkpoint_every=4",
              *SHARP, "probes.sharpness.every=3", "probes.sharpness.tol=1e-3"]  # fmt: skip
    whole = run_group(group(tmp_path / "whole", common))
    assert {s["status"] for s in whole} == {"ok"} and len(MEMBERS) == 4
    fault_at(monkeypatch, 7, sigterm)
    cut = run_group(group(tmp_path / "cut", common))
    assert cut[0]["message"] == "interrupted by SIGTERM at step 7"
    monkeypatch.undo()
    done = run_group(group(tmp_path / "cut", common, "resume=true"))
    assert [d.get("resumed_from", {}).get("step") for d in done] == [7, 7, None, None]
    assert_same_members(tmp_path / "whole", tmp_path / "cut")  # warm starts restored
    assert len(sharpness(tmp_path / "cut" / "m0")) == 4


def test_float32_members_thresholds_are_their_runs_to_the_bit(tmp_path):
    """(2+2β)/η is computed in float64 and cast, as a run's own threshold is; the sharpness
    itself sums in another order in a batched matmul: 1e-4."""
    compare(tmp_path, [*IRIS, "probes=[sharpness]", "batch=full", "epochs=9",
                       "optimizer=nesterov", "probes.sharpness.every=3"],
            [["optimizer.lr=0.07"], ["optimizer.lr=0.013", "optimizer.momentum=0.7"]],
            rel=1e-4)  # fmt: skip
    for i in range(2):
        mine = [p["curvature/threshold"] for p in sharpness(tmp_path / "group" / f"member{i}")]
        theirs = [p["curvature/threshold"] for p in sharpness(tmp_path / f"alone{i}")]
        assert mine == theirs and len(mine) == 3
