"""The gradient-noise probe measured on a vectorised group: every member's noise/grad_variance,
noise_scale, snr and cosine_to_full equal its sequential run's (float64, 1e-10): mini-batch
with per-member L2, full batches with G never computed, accumulated micro-batches with
method=vmap on a log schedule, stochastic batches of one; a diverging member's NaN reaches no
other member; a killed and resumed group (G carried in each member's checkpoint) is bitwise the
one that never stopped; float32 to 1e-4. Also a member's numbers against a hand loop over its
samples' own gradients."""

from __future__ import annotations

import logging

import pytest
import torch
from conftest import make_cfg, metrics
from test_vector import IRIS, compare, jobs
from test_vector_resume import MEMBERS, assert_same_members, fault_at, group, sigterm

import gradexp.vector.noise
from gradexp.build import build
from gradexp.vector.members import members, stack
from gradexp.vector.noise import StackedNoise, sample_norms
from gradexp.vector.run import run_group

NOISE = ["probes=[noise]", "dtype=float64"]
TAGS = ("noise/grad_variance", "noise/noise_scale", "noise/snr")
CASES = {
    "adam_minibatch_l2": (["batch=minibatch", "batch.size=16", "epochs=3", "optimizer=adam",
                           "probes.noise.every=3", "probes.noise.full_every=2"],
                          [["optimizer.lr=0.01", "l2=0.001"], ["optimizer.lr=0.003", "l2=0.01"]]),
    "sgd_full_no_G": (["batch=full", "epochs=10", "optimizer=sgd", "l2=0.01",
                       "probes.noise.every=2", "probes.noise.full_every=null"],
                      [["optimizer.lr=0.3"], ["optimizer.lr=0.05", "l2=0.05"]]),
    "momentum_accumulate_vmap_log": (["batch=minibatch", "batch.size=8", "batch.accumulate=3",
                                      "epochs=3", "optimizer=momentum", "log_every=2",
                                      "probes.noise.every=log", "probes.noise.method=vmap",
                                      "probes.noise.full_every=3"],
                                     [["optimizer.lr=0.05"], ["optimizer.lr=0.02",
                                                              "optimizer.momentum=0.5"]]),
    "rmsprop_stochastic": (["batch=stochastic", "epochs=1", "log_every=10", "optimizer=rmsprop",
                            "probes.noise.every=7", "probes.noise.full_every=1"],
                           [["optimizer.lr=0.001"], ["optimizer.lr=0.003"]]),
}  # fmt: skip


def noise(run_dir) -> list[dict]:
    return [m for m in metrics(run_dir) if any(k.startswith("noise/") for k in m)]


@pytest.mark.parametrize("case", CASES)
def test_a_members_noise_equals_its_sequential_runs(tmp_path, caplog, case):
    caplog.set_level(logging.INFO, logger="gradexp")
    common, own = CASES[case]
    compare(tmp_path, [*IRIS, *NOISE, *common], own, rel=1e-10)
    assert "2 members as one model" in caplog.text and "one after another" not in caplog.text
    for i in range(2):
        points = noise(tmp_path / "group" / f"member{i}")
        assert len(points) >= 3
        if case == "rmsprop_stochastic":  # a batch of one has no variance: only cos(ĝ, G)
            assert all({k for k in p if k.startswith("noise/")} == {"noise/cosine_to_full"}
                       for p in points)  # fmt: skip
            continue
        assert all(p["noise/grad_variance"] > 0 and p["noise/noise_scale"] != 0 for p in points)
        with_cos = [p for p in points if "noise/cosine_to_full" in p]
        if "full_every=null" in " ".join(common):
            assert not with_cos
        else:  # G refreshed on the first call and every full_every-th step
            assert with_cos and all(-1 <= p["noise/cosine_to_full"] <= 1 for p in with_cos)
            assert len(with_cos) < len(points)


def test_a_diverging_member_leaves_the_others_noise_untouched(tmp_path):
    summaries = compare(tmp_path, [*IRIS, *NOISE, "batch=minibatch", "batch.size=32",
                                   "epochs=40", "log_every=4", "diverge.factor=null",
                                   "probes.noise.every=4", "probes.noise.full_every=2"],
                        [["optimizer.lr=0.5"], ["optimizer.lr=200"], ["optimizer.lr=0.1"]],
                        rel=1e-10, seeds=(0, 1, 2))  # fmt: skip
    assert [s["status"] for s in summaries] == ["ok", "diverged", "ok"]
    for i in (0, 2):
        values = [v for p in noise(tmp_path / "group" / f"member{i}") for v in p.values()]
        assert values and all(v == v for v in values)  # no NaN


def test_every_piece_of_a_split_group_measures_its_probes(tmp_path, caplog):
    """max_members=1 and an L2 of 0 beside nonzero ones split a group: the pieces after the
    first are built from members (which carry no probes of their own) and still measure."""
    caplog.set_level(logging.INFO, logger="gradexp")
    common = [*IRIS, *NOISE, "batch=minibatch", "batch.size=16", "epochs=1",
              "probes.noise.every=2"]  # fmt: skip
    three = jobs(tmp_path, common, [["optimizer.lr=0.1"], ["optimizer.lr=0.2", "l2=0.01"],
                                    ["optimizer.lr=0.3"]], seeds=(0, 1, 2))  # fmt: skip
    run_group(three, max_members=1)
    assert caplog.text.count("1 member as one model") == 3
    assert [len(noise(j.run_dir)) for j in three] == [4, 4, 4]


def test_sigterm_then_resume_with_noise_is_bitwise(tmp_path, monkeypatch):
    common = ["batch=minibatch", "batch.size=16", "epochs=3", "checkpoint_every=5", *NOISE,
              "probes.noise.every=2", "probes.noise.full_every=3"]  # fmt: skip
    whole = run_group(group(tmp_path / "whole", common))
    assert {s["status"] for s in whole} == {"ok"}
    fault_at(monkeypatch, 8, sigterm)  # G last refreshed at step 6: carried in the checkpoint
    cut = run_group(group(tmp_path / "cut", common))
    assert cut[0]["message"] == "interrupted by SIGTERM at step 8"
    monkeypatch.undo()
    done = run_group(group(tmp_path / "cut", common, "resume=true"))
    assert {d.get("resumed_from", {}).get("step") for d in done} <= {8, None}
    assert_same_members(tmp_path / "whole", tmp_path / "cut")
    assert len(noise(tmp_path / "cut" / "m0")) == 12 and len(MEMBERS) == 4


def test_float32_members_noise_is_their_runs_to_1e4(tmp_path):
    compare(tmp_path, [*IRIS, "probes=[noise]", "batch=minibatch", "batch.size=24", "epochs=4",
                       "optimizer=adam", "probes.noise.every=2"],
            [["optimizer.lr=0.01"], ["optimizer.lr=0.002", "l2=0.01"]], rel=1e-4)  # fmt: skip


def test_stacked_norms_equal_a_hand_loop_over_each_members_samples():
    """sample_norms' ‖∇J_i‖² and ∇J, member by member, against autograd on each sample alone
    (J_i = loss_i + λ‖θ‖²), with two members' own parameters and λ."""
    cfgs = [make_cfg(*IRIS, *NOISE, "batch.size=10", f"seed={s}", f"l2={lam}")
            for s, lam in ((0, 0.01), (1, 0.0))]  # fmt: skip
    exps = members([c for c, _ in cfgs], cfgs[0][1])
    g = stack(exps, [0, 1])
    x, y = exps[0].batches.x[:10], exps[0].batches.y[:10]
    probe = g.probes[0]
    assert isinstance(probe, StackedNoise)
    sq, mean = sample_norms(g, x[None], y[None])
    for k, exp in enumerate(exps):
        model, lam = build(cfgs[k][0], cfgs[k][1]).model, exp.knobs.l2
        rows = []
        for i in range(10):
            loss = exp.loss_fn(model(x[i : i + 1]), y[i : i + 1])
            loss = loss + lam * sum(p.square().sum() for p in model.parameters())
            grads = torch.autograd.grad(loss, list(model.parameters()))
            rows.append(torch.cat([gr.flatten() for gr in grads]))
        rows = torch.stack(rows)
        torch.testing.assert_close(sq[k], rows.square().sum(1), rtol=1e-12, atol=0)
        torch.testing.assert_close(mean[k], rows.mean(0), rtol=1e-12, atol=1e-15)


def test_the_full_gradient_in_chunks_of_rows_is_the_whole_sets(monkeypatch):
    """G over 120 rows in chunks of 7 (each weighted by its share, λ‖θ‖² once) equals each
    member's own gradient of the whole-set objective by autograd on its own model."""
    cfgs = [make_cfg(*IRIS, *NOISE, f"seed={s}", f"l2={lam}") for s, lam in ((0, 0.01), (1, 0.1))]
    exps = members([c for c, _ in cfgs], cfgs[0][1])
    g = stack(exps, [0, 1])
    monkeypatch.setattr(gradexp.vector.noise, "ROWS_ELEMENTS", 2 * g.widest * 7)
    x, y = exps[0].batches.x, exps[0].batches.y
    chunked = gradexp.vector.noise.full_gradient(g, x, y)
    for k, exp in enumerate(exps):
        model = build(cfgs[k][0], cfgs[k][1]).model
        loss = exp.loss_fn(model(x), y) + exp.knobs.l2 * sum(p.square().sum() for p in
                                                            model.parameters())  # fmt: skip
        want = torch.cat(
            [gr.flatten() for gr in torch.autograd.grad(loss, list(model.parameters()))]
        )
        torch.testing.assert_close(chunked[k], want, rtol=1e-12, atol=1e-15)
