"""Vectorised groups against their sequential runs: every member's metrics.jsonl, model.pt and
summary equal what the job gives alone (float64: 1e-10 relative; float32: 1e-4 over the first
100 steps), a member that diverges or stops ends as it would alone, and no NaN crosses members."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest
import torch
from conftest import make_cfg, metrics, run_experiment

import gradexp.vector.members as vector_members
import gradexp.vector.stack as vector_stack
from gradexp.build import build
from gradexp.errors import ConfigError
from gradexp.vector.members import stack
from gradexp.vector.run import Job, run_group

IRIS = ["data=iris", "model.hidden=[8]", "progress=false"]
MODES = {
    "full": ["batch=full", "epochs=12"],
    "full_accumulate": ["batch=full", "batch.accumulate=3", "epochs=12"],
    "stochastic": ["batch=stochastic", "epochs=1", "log_every=7"],
    "minibatch": ["batch=minibatch", "batch.size=16", "epochs=4", "log_every=3"],
    "minibatch_accumulate": ["batch=minibatch", "batch.size=8", "batch.accumulate=3",
                             "epochs=4", "log_every=2"],
}  # fmt: skip
# Per optimizer, each member's own numbers (lr and more): what a sweep varies.
MEMBERS = {
    "sgd": [["optimizer.lr=0.3"], ["optimizer.lr=0.05", "+optimizer.weight_decay=0.01"]],
    "momentum": [["optimizer.lr=0.05"], ["optimizer.lr=0.02", "optimizer.momentum=0.5"]],
    "nesterov": [["optimizer.lr=0.05"], ["optimizer.lr=0.01", "optimizer.momentum=0.8"]],
    "adam": [["optimizer.lr=0.01"], ["optimizer.lr=0.003", "optimizer.betas=[0.8,0.99]"]],
    "adamw": [["optimizer.lr=0.01"], ["optimizer.lr=0.02", "optimizer.weight_decay=0.1"]],
    "rmsprop": [["optimizer.lr=0.001"], ["optimizer.lr=0.003", "optimizer.alpha=0.9"]],
    "adagrad": [["optimizer.lr=0.1"], ["optimizer.lr=0.05", "+optimizer.lr_decay=0.01"]],
}  # fmt: skip


def jobs(root: Path, common: list[str], members: list[list[str]], seeds=(0, 1)) -> list:
    out = []
    for i, (own, seed) in enumerate(zip(members, seeds)):
        overrides = [*common, *own, f"seed={seed}"]
        cfg, choices = make_cfg(*overrides, "progress=false")
        out.append(Job(cfg, root / f"member{i}", choices, overrides))
    return out


def numbers(run_dir: Path, steps: int | None = None) -> list[dict]:
    rows = [{k: v for k, v in m.items() if k != "time"} for m in metrics(run_dir)]
    return [r for r in rows if steps is None or r["step"] <= steps]


def assert_close(a, b, rel: float, where="") -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys(), (where, set(a) ^ set(b))
        for k in a:
            assert_close(a[k], b[k], rel, f"{where}/{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_close(x, y, rel, f"{where}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), where
    elif isinstance(a, float):
        assert a == pytest.approx(b, rel=rel, abs=1e-300), where
    else:
        assert a == b, where


def compare(tmp_path: Path, common: list[str], members: list[list[str]], rel: float,
            steps: int | None = None, seeds=(0, 1)) -> list[dict]:  # fmt: skip
    group = jobs(tmp_path / "group", common, members, seeds)
    summaries = run_group(group)
    alone = []
    for i, job in enumerate(group):
        ref = run_experiment(tmp_path / f"alone{i}", *job.overrides)
        alone.append(ref)
        s = summaries[i]
        assert s["status"] == ref["status"] and s["steps"] == ref["steps"], (s, ref)
        assert s["message"] == ref["message"]
        assert_close(numbers(job.run_dir, steps), numbers(tmp_path / f"alone{i}", steps), rel)
        if steps is None and s["status"] != "diverged":  # a diverged run's θ: NaN, however far
            assert_close(s["final"], ref["final"], rel, "final")
            assert_close(s["best"], ref["best"], rel, "best")
            mine = torch.load(job.run_dir / "model.pt", weights_only=True)
            theirs = torch.load(tmp_path / f"alone{i}" / "model.pt", weights_only=True)
            for name, tensor in theirs.items():
                torch.testing.assert_close(mine[name], tensor, rtol=rel, atol=1e-12,
                                           equal_nan=True)  # fmt: skip
    return summaries


@pytest.mark.parametrize("optimizer", MEMBERS)
def test_every_optimizer_member_equals_its_sequential_run_in_float64(tmp_path, optimizer):
    compare(tmp_path, [*IRIS, *MODES["minibatch"], f"optimizer={optimizer}", "dtype=float64"],
            MEMBERS[optimizer], rel=1e-10)  # fmt: skip


@pytest.mark.parametrize("mode", MODES)
def test_every_batch_mode_member_equals_its_sequential_run_in_float64(tmp_path, mode):
    compare(tmp_path, [*IRIS, *MODES[mode], "optimizer=adam", "dtype=float64", "l2=0.001"],
            MEMBERS["adam"], rel=1e-10)  # fmt: skip


@pytest.mark.parametrize("shared", [False, True], ids=["own_inputs", "shared_input"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
def test_the_stacked_linear_layer_is_its_formula_with_its_gradients(shared, bias):
    """Its forward is h Wₖᵀ + bₖ, its hand-written backward passes gradcheck (against finite
    differences) and gradgradcheck (the Hessian-vector products of the sharpness probe)."""
    gen = torch.Generator().manual_seed(0)
    h = torch.randn(1 if shared else 3, 5, 4, dtype=torch.float64, generator=gen)
    w = torch.randn(3, 2, 4, dtype=torch.float64, generator=gen)
    b = torch.randn(3, 2, dtype=torch.float64, generator=gen) if bias else None
    inputs = tuple(t.requires_grad_() if t is not None else None for t in (h, w, b))
    out = vector_stack.StackedLinear.apply(*inputs)
    expected = h @ w.transpose(1, 2) + (b.unsqueeze(1) if bias else 0)
    torch.testing.assert_close(out, expected, rtol=1e-14, atol=1e-14)
    tight = {"rtol": 1e-7, "atol": 1e-9}  # the layer is linear in each input: FD is exact here
    assert torch.autograd.gradcheck(vector_stack.StackedLinear.apply, inputs, **tight)
    assert torch.autograd.gradgradcheck(vector_stack.StackedLinear.apply, inputs, **tight)


LOSSES = {
    "mse": ["loss=mse"],
    "hinge": ["loss=hinge", "loss.margin=0.5"],
    "hinge_squared": ["loss=hinge", "+loss.p=2"],
    "label_smoothing": ["+loss.label_smoothing=0.2"],
}


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("mode", ["minibatch", "stochastic"])
def test_every_loss_member_equals_its_sequential_run_in_float64(tmp_path, loss, mode):
    """Each loss's batched form (and its options: margin, p, label smoothing) is what the
    loss module computes alone; one sample per member takes another route (torch's own)."""
    compare(tmp_path, [*IRIS, *MODES[mode], "optimizer=adam", "dtype=float64", *LOSSES[loss]],
            MEMBERS["adam"], rel=1e-10)  # fmt: skip


def test_losses_without_a_batched_form_run_one_after_another(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="gradexp")
    compare(tmp_path, [*IRIS, *MODES["minibatch"], "+loss.reduction=sum"],
            [["optimizer.lr=0.01"], ["optimizer.lr=0.02"]], rel=0)  # fmt: skip
    assert "not as one model: the loss's reduction=sum has no batched form" in caplog.text
    compare(tmp_path / "ignored", [*IRIS, *MODES["minibatch"], "+loss.ignore_index=0"],
            [["optimizer.lr=0.01"], ["optimizer.lr=0.02"]], rel=0)  # fmt: skip
    assert "not as one model: loss.ignore_index=0 has no batched form" in caplog.text


@pytest.mark.slow
@pytest.mark.parametrize("mode", [m for m in MODES if m != "minibatch"])
@pytest.mark.parametrize("optimizer", MEMBERS)
def test_the_whole_matrix_in_float64(tmp_path, optimizer, mode):
    compare(tmp_path, [*IRIS, *MODES[mode], f"optimizer={optimizer}", "dtype=float64"],
            MEMBERS[optimizer], rel=1e-10)  # fmt: skip


def test_float32_members_agree_to_1e4_over_the_first_100_steps(tmp_path):
    compare(tmp_path, [*IRIS, *MODES["stochastic"], "optimizer=adam", "log_every=1"],
            MEMBERS["adam"], rel=1e-4, steps=100)  # fmt: skip


def test_members_with_one_seed_share_one_data_order(tmp_path):
    compare(tmp_path, [*IRIS, *MODES["minibatch"], "optimizer=sgd", "dtype=float64",
                       "schedule=cosine"],
            [["optimizer.lr=0.1"], ["optimizer.lr=0.2"], ["optimizer.lr=0.4"]], rel=1e-10,
            seeds=(3, 3, 3))  # fmt: skip


def test_schedules_are_each_members_own(tmp_path):
    compare(tmp_path, [*IRIS, *MODES["minibatch"], "optimizer=momentum", "dtype=float64",
                       "schedule=step", "schedule.step_size=5"],
            [["schedule.gamma=0.5"], ["schedule.gamma=0.9", "schedule.warmup_steps=4"]],
            rel=1e-10)  # fmt: skip


def test_a_diverging_member_ends_as_alone_and_the_others_are_untouched(tmp_path):
    """At lr 80 one member's loss turns NaN; it is frozen at that step and ends `diverged` at
    the step its own run does; NaN reaches no other member (checked bitwise-close)."""
    summaries = compare(tmp_path, [*IRIS, "batch=full", "epochs=150", "dtype=float64",
                                   "diverge.factor=null", "log_every=5"],
                        [["optimizer.lr=0.5"], ["optimizer.lr=80"], ["optimizer.lr=0.1"]],
                        rel=1e-10, seeds=(0, 1, 2))  # fmt: skip
    assert [s["status"] for s in summaries] == ["ok", "diverged", "ok"]


def test_the_divergence_rule_and_a_stopping_rule_per_member(tmp_path):
    summaries = compare(tmp_path, [*IRIS, "batch=full", "epochs=60", "dtype=float64",
                                   "stop.loss_tol=0.3", "log_every=4"],
                        [["optimizer.lr=0.5"], ["optimizer.lr=20"], ["optimizer.lr=0.05"]],
                        rel=1e-10, seeds=(0, 1, 2))  # fmt: skip
    assert [s["stop_reason"] for s in summaries] == ["loss_tol", "diverged", "epochs"]


def test_unsupported_members_run_one_after_another_with_the_same_results(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="gradexp")
    compare(tmp_path, [*IRIS, *MODES["minibatch"], "probes=[trajectory]"],
            [["optimizer.lr=0.1"], ["optimizer.lr=0.2"]], rel=0)  # fmt: skip
    assert "2 jobs one after another, not as one model: probes=[trajectory]" in caplog.text
    compare(tmp_path / "function", ["model=rosenbrock", "optimizer=adam", "epochs=200",
                                    "dtype=float64", "log_every=10"],
            [["optimizer.lr=0.01"], ["optimizer.lr=0.05"]], rel=1e-10)  # fmt: skip


def test_a_member_refused_for_its_config_fails_alone(tmp_path):
    group = jobs(tmp_path, [*IRIS, *MODES["minibatch"]],
                 [["optimizer.lr=0.1"], ["optimizer.lr=-1"], ["optimizer.lr=0.2"]],
                 seeds=(0, 1, 2))  # fmt: skip
    summaries = run_group(group)
    assert [s["status"] for s in summaries] == ["ok", "failed", "ok"]
    assert summaries[1]["error"] == "optimizer.lr=-1: must be a number > 0"


def test_a_bad_tqdm_variable_fails_the_group_in_one_line_before_it_trains(tmp_path, monkeypatch):
    monkeypatch.setenv("TQDM_MININTERVAL", "abc")
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    group = []
    for i, lr in enumerate((0.1, 0.2)):
        overrides = [*IRIS, *MODES["minibatch"], f"optimizer.lr={lr}", "progress=true"]
        cfg, choices = make_cfg(*overrides)
        group.append(Job(cfg, tmp_path / f"member{i}", choices, overrides))
    summaries = run_group(group)
    assert [s["stop_reason"] for s in summaries] == ["config_error"] * 2
    assert summaries[0]["error"].startswith("environment=TQDM_MININTERVAL='abc': tqdm cannot")
    assert not (tmp_path / "member0" / "metrics.jsonl").exists()


@pytest.mark.parametrize(("mode", "batch"), [("full_accumulate", 40), ("stochastic", 1)])
def test_members_trained_in_cache_sized_chunks_equal_their_runs(tmp_path, monkeypatch, mode,
                                                                 batch):  # fmt: skip
    """On the CPU a batch too wide for the cache is trained a few members at a time: here two
    (a cache of two members' widest activations: batch × 8 wide × 8 bytes), and each member of
    a chunk is still its own sequential run (also with per-member data orders, stochastic)."""
    monkeypatch.setattr(vector_stack, "CACHE_BYTES", 2 * batch * 8 * 8)
    common = [*IRIS, *MODES[mode], "optimizer=adam", "dtype=float64", "l2=0.001"]
    own = [*MEMBERS["adam"], ["optimizer.lr=0.02"]]
    exps = [build(j.cfg, j.choices) for j in jobs(tmp_path / "probe", common, own, (0, 1, 2))]
    assert [p[1].members for p in vector_stack.chunks(stack(exps, [0, 1, 2]), batch)] == [2, 1]
    compare(tmp_path, common, own, rel=1e-10, seeds=(0, 1, 2))


def test_groups_are_sized_by_free_memory_and_a_member_too_big_is_refused(tmp_path, monkeypatch):
    """max_members=null: as many members as half the free memory holds by member_bytes (here
    a budget of 2.5 members: pieces of 2), each at least its buffers and a batch's activations;
    a group where one member does not fit is refused in one line before anything trains."""
    common = [*IRIS, *MODES["minibatch"], "optimizer=adam"]
    own = [["optimizer.lr=0.01"], ["optimizer.lr=0.02"], ["optimizer.lr=0.03"]]
    exp = build(*make_cfg(*common))
    need, full, _ = vector_members.member_bytes(exp)
    params = sum(p.numel() for p in exp.model.parameters())
    assert full == 0 and need >= 4 * (4 * params + 2 * 16 * 8)  # θ, ∇, 2 moments; a batch
    monkeypatch.setattr(vector_members, "available_bytes", lambda device: int(2 * 2.5 * need))
    summaries = run_group(jobs(tmp_path / "split", common, own, (0, 1, 2)))
    assert [s["vectorized"]["members"] for s in summaries] == [2, 2, 1]
    monkeypatch.setattr(vector_members, "available_bytes", lambda device: need)  # half of it
    with pytest.raises(ConfigError, match=r"^hydra.launcher.max_members=null: one member needs"):
        run_group(jobs(tmp_path / "refused", common, own, (0, 1, 2)))
    assert not list((tmp_path / "refused").rglob("metrics.jsonl"))


def test_the_noise_probes_full_gradient_pass_counts_once_whatever_the_group(monkeypatch):
    """Its chunk of rows is capped (its widest layer holds ROWS_ELEMENTS) for any number of
    members: a fixed share of the budget once the group is large, not one per member."""
    exp = build(*make_cfg(*IRIS, *MODES["minibatch"], "optimizer=adam", "probes=[noise]"))
    monkeypatch.setattr(vector_members, "ROWS_ELEMENTS", 10 * exp.data.n_train * 8)
    need, full, cap = vector_members.member_bytes(exp)
    assert full == exp.data.n_train * (8 + 3)  # iris: 120 rows × the 8-wide and 3-wide layers
    assert cap == 10 * full  # ten members' rows
    # float32 (4 bytes), four activations of a chunk
    monkeypatch.setattr(vector_members, "available_bytes",
                        lambda d: 2 * (100 * need + 4 * 4 * cap))  # fmt: skip
    assert vector_members.fitting(exp) == 100
    monkeypatch.setattr(vector_members, "available_bytes",
                        lambda d: 2 * (5 * need + 4 * 4 * 5 * full))  # fmt: skip
    assert vector_members.fitting(exp) == 5
