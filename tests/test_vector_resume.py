"""A vectorised group stopped by a signal or a crash, then resumed, is bitwise the group that
never stopped, member by member (logged numbers, TensorBoard points, model.pt), in every batch
mode; members whose checkpoints stand at different steps resume in groups of their own; a
group's checkpoint and a single run's are not taken for each other."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch
from conftest import make_cfg, metrics, run_experiment, scalars

import gradexp.vector.train
from gradexp.durable.checkpoint import checkpoints
from gradexp.vector.run import Job, run_group

IRIS = ["data=iris", "model.hidden=[8]", "progress=false"]
MODES = {
    "full": (12, ["batch=full", "batch.accumulate=3", "epochs=12", "checkpoint_every=4"]),
    "stochastic": (120, ["batch=stochastic", "epochs=1", "log_every=7", "checkpoint_every=13"]),
    "minibatch": (32, ["batch=minibatch", "batch.size=16", "epochs=4", "log_every=3",
                       "optimizer=adam", "schedule=cosine", "checkpoint_every=5"]),
}  # fmt: skip
MEMBERS = [["optimizer.lr=0.05", "seed=0"], ["optimizer.lr=0.01", "seed=1"],
           ["optimizer.lr=0.02", "seed=0", "l2=0.01"], ["optimizer.lr=0.03", "seed=2",
           "l2=0.001"]]  # fmt: skip


def group(root: Path, common: list[str], *extra: str) -> list[Job]:
    out = []
    for i, own in enumerate(MEMBERS):
        overrides = [*IRIS, *common, *own, *extra]
        cfg, choices = make_cfg(*overrides)
        out.append(Job(cfg, root / f"m{i}", choices, overrides))
    return out


def fault_at(monkeypatch, step: int, fault) -> None:
    """Run `fault` in the middle of step `step` (after its forward pass)."""
    real, calls = gradexp.vector.train.forward_backward, [0]

    def forward_backward(*args, **kwargs):
        out = real(*args, **kwargs)
        calls[0] += 1
        if calls[0] == step:
            fault()
        return out

    monkeypatch.setattr(gradexp.vector.train, "forward_backward", forward_backward)


def sigterm():
    os.kill(os.getpid(), signal.SIGTERM)


def crash():
    raise RuntimeError("injected crash")


def without_time(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in m.items() if k != "time"} for m in metrics(run_dir)]


def assert_same_members(a: Path, b: Path) -> None:
    for i in range(len(MEMBERS)):
        ma, mb = a / f"m{i}", b / f"m{i}"
        assert without_time(ma) == without_time(mb), i
        assert scalars(ma) == scalars(mb), i
        pa, pb = torch.load(ma / "model.pt"), torch.load(mb / "model.pt")
        assert all(torch.equal(pa[k], pb[k]) for k in pa), i


@pytest.mark.parametrize("mode", MODES)
def test_sigterm_then_resume_is_bitwise_the_uninterrupted_group(tmp_path, monkeypatch, mode):
    total, common = MODES[mode]
    whole = run_group(group(tmp_path / "whole", common))
    assert {s["steps"] for s in whole} == {total} and {s["status"] for s in whole} == {"ok"}
    stop = total // 2 + 1
    fault_at(monkeypatch, stop, sigterm)
    cut = run_group(group(tmp_path / "cut", common))
    assert {s["status"] for s in cut} == {"interrupted"}
    # The members without L2 are one group, those with L2 the next: never started.
    messages = [s["message"] for s in cut]
    assert (
        messages
        == [f"interrupted by SIGTERM at step {stop}"] * 2 + ["not started: SIGTERM came first"] * 2
    )
    assert not (tmp_path / "cut" / "m2" / "metrics.jsonl").exists()
    for i in range(2):
        newest = checkpoints(tmp_path / "cut" / f"m{i}" / "checkpoints")[0]
        assert newest.name == f"step-{stop:08d}.pt"
    monkeypatch.undo()
    done = run_group(group(tmp_path / "cut", common, "resume=true"))
    assert [d.get("resumed_from", {}).get("step") for d in done] == [stop, stop, None, None]
    for d, w in zip(done, whole):
        assert d["status"] == "ok" and d["vectorized"]["members"] == 2
        assert d["final"] == w["final"] and d["best"] == w["best"] and d["steps"] == w["steps"]
    assert_same_members(tmp_path / "whole", tmp_path / "cut")


def test_crash_then_resume_repeats_only_the_steps_after_the_checkpoint(tmp_path, monkeypatch):
    common = MODES["minibatch"][1]
    run_group(group(tmp_path / "whole", common))
    fault_at(monkeypatch, 13, crash)
    crashed = group(tmp_path / "cut", common)
    cut = run_group(crashed)
    # The crash fails the group it hits (the members without L2), not the next one.
    assert [s["status"] for s in cut] == ["failed", "failed", "ok", "ok"]
    # and the console's "trained as one batched model" line is said of the piece that trained
    assert [job.model is not None for job in crashed] == [False, False, True, True]
    assert {s["error"] for s in cut[:2]} == {"RuntimeError: injected crash"}
    assert (tmp_path / "cut" / "m0" / "traceback.txt").is_file()
    assert max(m["step"] for m in metrics(tmp_path / "cut" / "m0")) == 12  # flushed, not lost
    monkeypatch.undo()
    done = run_group(group(tmp_path / "cut", common, "resume=true"))
    assert [d.get("resumed_from", {}).get("step") for d in done] == [10, 10, None, None]
    assert_same_members(tmp_path / "whole", tmp_path / "cut")


def test_members_at_different_steps_resume_in_groups_of_their_own(tmp_path, monkeypatch):
    """A kill between two members' checkpoint writes leaves them a checkpoint apart."""
    common = MODES["minibatch"][1]
    run_group(group(tmp_path / "whole", common))
    fault_at(monkeypatch, 13, crash)
    run_group(group(tmp_path / "cut", common))
    monkeypatch.undo()
    checkpoints(tmp_path / "cut" / "m1" / "checkpoints")[0].unlink()  # m1 stands at step 5
    done = run_group(group(tmp_path / "cut", common, "resume=true"))
    assert [d.get("resumed_from", {}).get("step") for d in done] == [10, 5, None, None]
    assert [d["vectorized"]["members"] for d in done[:2]] == [1, 1]
    assert_same_members(tmp_path / "whole", tmp_path / "cut")


def test_a_stopped_member_stays_stopped_after_resume(tmp_path, monkeypatch):
    common = [*MODES["stochastic"][1], "stop.loss_tol=0.6"]
    whole = run_group(group(tmp_path / "whole", common))
    assert any(s["stop_reason"] == "loss_tol" for s in whole)
    fault_at(monkeypatch, 100, sigterm)
    run_group(group(tmp_path / "cut", common))
    monkeypatch.undo()
    done = run_group(group(tmp_path / "cut", common, "resume=true"))
    for d, w in zip(done, whole):
        assert (d["stop_reason"], d["steps"], d["final"]) == (w["stop_reason"], w["steps"],
                                                                w["final"])  # fmt: skip
    assert_same_members(tmp_path / "whole", tmp_path / "cut")


def test_group_and_single_checkpoints_are_not_taken_for_each_other(tmp_path, monkeypatch):
    common = MODES["minibatch"][1]
    fault_at(monkeypatch, 7, sigterm)
    run_group(group(tmp_path / "cut", common))
    monkeypatch.undo()
    alone = run_experiment(tmp_path / "cut" / "m0", *IRIS, *common, *MEMBERS[0], "resume=true")
    assert alone["status"] == "failed" and alone["stop_reason"] == "config_error"
    assert "vectorised group" in alone["error"] and "hydra/launcher=vectorized" in alone["error"]
    assert checkpoints(tmp_path / "cut" / "m0" / "checkpoints")  # nothing lost
    single = tmp_path / "single"
    fault_at_single(monkeypatch, 7)
    run_experiment(single / "m0", *IRIS, *common, *MEMBERS[0])
    monkeypatch.undo()
    jobs = group(single, common, "resume=true")[:1]
    (s,) = run_group(jobs)
    assert s["status"] == "failed" and "not by a vectorised group" in s["error"], s


def fault_at_single(monkeypatch, step: int) -> None:
    import gradexp.train

    real, calls = gradexp.train.step_row, [0]

    def step_row(*args, **kwargs):
        calls[0] += 1
        if calls[0] == step:
            sigterm()
        return real(*args, **kwargs)

    monkeypatch.setattr(gradexp.train, "step_row", step_row)
