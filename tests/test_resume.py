"""Checkpoint and resume: a run stopped by a signal or a crash, then resumed, is bitwise the run
that never stopped (parameters, optimizer, logged numbers, TensorBoard steps), in every mode."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
from pathlib import Path

import pytest
import torch
from conftest import metrics, run_experiment, scalars

import gradexp.train
from gradexp.durable.checkpoint import checkpoints

TINY = ["data=iris", "model.hidden=[8]", "epochs=4", "log_every=3", "checkpoint_every=5"]
# iris has 120 training rows; each mode with the number of updates its run makes.
MODES = {
    "full": (12, ["batch=full", "optimizer.lr=0.5", "epochs=12"]),
    "full_accumulate": (12, ["batch=full", "batch.accumulate=3", "optimizer.lr=0.5", "epochs=12"]),
    "stochastic": (120, ["batch=stochastic", "epochs=1", "log_every=7", "checkpoint_every=13"]),
    "minibatch": (32, ["batch=minibatch", "batch.size=16", "optimizer=adam", "schedule=cosine"]),
    "minibatch_accumulate": (
        20,
        ["batch=minibatch", "batch.size=8", "batch.accumulate=3", "optimizer=momentum"],
    ),
}


def fault_at(monkeypatch, step: int, fault) -> None:
    """Run `fault` when the loop computes step `step`'s gradient norms (mid-step)."""
    real, calls = gradexp.train.step_row, [0]

    def step_row(*args, **kwargs):
        calls[0] += 1
        if calls[0] == step:
            fault()
        return real(*args, **kwargs)

    monkeypatch.setattr(gradexp.train, "step_row", step_row)


def sigterm():
    os.kill(os.getpid(), signal.SIGTERM)


def crash():
    raise RuntimeError("injected crash")


def without_time(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in m.items() if k != "time"} for m in metrics(run_dir)]


def final_state(run_dir: Path) -> dict:
    return torch.load(checkpoints(run_dir / "checkpoints")[0], weights_only=True)


def assert_same_run(a: Path, b: Path) -> None:
    """Same logged numbers (bitwise: floats compared with ==), same TB points, same end state."""
    assert without_time(a) == without_time(b)
    assert scalars(a) == scalars(b)
    sa, sb = final_state(a), final_state(b)
    assert sa["position"] == sb["position"]
    for key, tensor in sa["model"].items():
        assert torch.equal(tensor, sb["model"][key]), key
    for i, state in sa["optimizer"]["state"].items():
        for key, tensor in state.items():
            assert torch.equal(tensor, sb["optimizer"]["state"][i][key]), (i, key)
    assert torch.equal(sa["rng"]["order"], sb["rng"]["order"])


@pytest.mark.parametrize("mode", MODES)
def test_sigterm_then_resume_is_bitwise_the_uninterrupted_run(tmp_path, monkeypatch, mode):
    total, overrides = MODES[mode]
    # A last checkpoint at the final step gives the final parameters of both runs to compare.
    every = f"checkpoint_every={total}"
    overrides = [*TINY, *overrides, every]
    whole = run_experiment(tmp_path / "whole", *overrides)
    assert whole["steps"] == total
    stop = whole["steps"] // 2 + 1  # mid-epoch in every mode but full batch
    fault_at(monkeypatch, stop, sigterm)
    cut = run_experiment(tmp_path / "cut", *overrides)
    assert cut["status"] == "interrupted" and cut["exit_code"] == 128 + signal.SIGTERM
    assert cut["message"] == f"interrupted by SIGTERM at step {stop}"
    assert checkpoints(tmp_path / "cut" / "checkpoints")[0].name == f"step-{stop:08d}.pt"
    monkeypatch.undo()
    done = run_experiment(tmp_path / "cut", *overrides, "resume=true")
    assert done["status"] == "ok" and done["resumed_from"]["step"] == stop
    assert done["steps"] == whole["steps"] and done["final"] == whole["final"]
    assert done["best"] == whole["best"]
    assert_same_run(tmp_path / "whole", tmp_path / "cut")


def test_crash_loses_only_the_steps_after_the_last_checkpoint(tmp_path, monkeypatch):
    overrides = [*TINY, "batch=minibatch", "batch.size=16", "checkpoint_every=4"]
    whole = run_experiment(tmp_path / "whole", *overrides, "checkpoint_every=32")
    fault_at(monkeypatch, 23, crash)
    broken = run_experiment(tmp_path / "cut", *overrides)
    assert broken["status"] == "failed" and "injected crash" in broken["error"]
    assert [p.name for p in checkpoints(tmp_path / "cut" / "checkpoints")] == [
        "step-00000020.pt", "step-00000016.pt"]  # fmt: skip  # the two newest are kept
    logged = [m["step"] for m in metrics(tmp_path / "cut") if "epoch" not in m]
    assert max(logged) > 20  # the crash left logs past the checkpoint: resume must cut them
    monkeypatch.undo()
    done = run_experiment(tmp_path / "cut", *overrides, "checkpoint_every=32", "resume=true")
    assert done["resumed_from"]["step"] == 20  # steps 21 and 22 were lost, nothing else
    assert done["final"] == whole["final"]
    assert_same_run(tmp_path / "whole", tmp_path / "cut")


def test_torn_last_line_and_torn_event_are_cut_on_resume(tmp_path, monkeypatch):
    overrides = [*TINY, "batch=minibatch", "batch.size=16"]
    run_experiment(tmp_path / "whole", *overrides, "checkpoint_every=32")
    fault_at(monkeypatch, 12, crash)
    run_experiment(tmp_path / "cut", *overrides)
    monkeypatch.undo()
    with (tmp_path / "cut" / "metrics.jsonl").open("a") as f:
        f.write('{"step": 12, "train/lo')  # what a kill in the middle of a write leaves
    with next((tmp_path / "cut").glob("events.out.tfevents.*")).open("ab") as f:
        f.write(b"\x17\x00\x00\x00\x00")  # half an event record
    run_experiment(tmp_path / "cut", *overrides, "checkpoint_every=32", "resume=true")
    assert_same_run(tmp_path / "whole", tmp_path / "cut")


def test_corrupt_newest_checkpoint_falls_back_to_the_previous(tmp_path, monkeypatch, caplog):
    overrides = [*TINY, "batch=minibatch", "batch.size=16"]
    run_experiment(tmp_path / "whole", *overrides, "checkpoint_every=32")
    fault_at(monkeypatch, 18, crash)
    run_experiment(tmp_path / "cut", *overrides)
    monkeypatch.undo()
    newest = checkpoints(tmp_path / "cut" / "checkpoints")[0]
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # truncated
    done = run_experiment(tmp_path / "cut", *overrides, "checkpoint_every=32", "resume=true")
    assert done["resumed_from"]["step"] == 10
    assert f"checkpoint {newest} is unreadable" in caplog.text
    assert_same_run(tmp_path / "whole", tmp_path / "cut")


def test_no_readable_checkpoint_is_a_clear_error(tmp_path, monkeypatch):
    overrides = [*TINY, "batch=minibatch", "batch.size=16"]
    fault_at(monkeypatch, 18, crash)
    run_experiment(tmp_path / "cut", *overrides)
    monkeypatch.undo()
    for path in checkpoints(tmp_path / "cut" / "checkpoints"):
        path.write_bytes(b"not a checkpoint")
    s = run_experiment(tmp_path / "cut", *overrides, "resume=true")
    assert s["status"] == "failed" and s["stop_reason"] == "config_error"
    assert s["error"].startswith("resume=true: no usable checkpoint in")


def test_checkpoint_loads_with_weights_only_and_holds_every_state(tmp_path):
    run_experiment(tmp_path, *TINY, "batch=minibatch", "batch.size=16")
    state = torch.load(checkpoints(tmp_path / "checkpoints")[0], weights_only=True)
    assert set(state) >= {"model", "optimizer", "scheduler", "rng", "history", "logs", "position"}
    assert set(state["rng"]) == {"torch", "cuda", "numpy", "python", "order", "order_epoch"}
    # iris: 120 training rows, 8 updates of 16 per epoch, 32 in all; the last checkpoint is at 30
    assert state["position"] == {"step": 30, "epoch": 4, "batch": 6, "examples": 456,
                                 "evaluated": 24}  # fmt: skip
    assert not list((tmp_path / "checkpoints").glob("*.tmp"))


def test_resume_refuses_a_changed_config(tmp_path, monkeypatch):
    overrides = [*TINY, "batch=minibatch", "batch.size=16"]
    fault_at(monkeypatch, 12, sigterm)
    run_experiment(tmp_path, *overrides)
    monkeypatch.undo()
    s = run_experiment(tmp_path, *overrides, "optimizer.lr=0.2", "resume=true")
    assert s["status"] == "failed"
    assert s["error"] == (
        f"optimizer.lr=0.2: the checkpoint in {tmp_path} was made with optimizer.lr=0.1; "
        "resume with the same config, or start a new run"
    )  # fmt: skip


def test_resume_skips_a_finished_run_and_starts_a_missing_one(tmp_path):
    first = run_experiment(tmp_path / "a", *TINY)
    before = (tmp_path / "a" / "metrics.jsonl").read_bytes()
    again = run_experiment(tmp_path / "a", *TINY, "resume=true")
    assert again["wall_time_s"] == first["wall_time_s"]  # the old summary, not a new run
    assert (tmp_path / "a" / "metrics.jsonl").read_bytes() == before
    fresh = run_experiment(tmp_path / "b", *TINY, "resume=true")  # nothing to resume: from 0
    assert fresh["status"] == "ok" and "resumed_from" not in fresh
    assert without_time(tmp_path / "a") == without_time(tmp_path / "b")


def test_checkpoints_and_deterministic_algorithms_change_no_number(tmp_path):
    overrides = [*TINY, *MODES["minibatch_accumulate"][1], "checkpoint_every=0"]
    run_experiment(tmp_path / "a", *overrides)
    run_experiment(tmp_path / "b", *overrides[:-1], "checkpoint_every=3")
    run_experiment(tmp_path / "c", *overrides, "deterministic=true")
    assert without_time(tmp_path / "a") == without_time(tmp_path / "b")
    assert without_time(tmp_path / "a") == without_time(tmp_path / "c")
    assert not torch.are_deterministic_algorithms_enabled()  # for that run only


def test_interrupted_summary_is_not_passed_off_as_complete(tmp_path, monkeypatch):
    fault_at(monkeypatch, 7, sigterm)
    s = run_experiment(tmp_path, *TINY)
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["status"] == "interrupted" and on_disk["stop_reason"] == "signal"
    assert on_disk["objective"] == "inf" and s["steps"] == 7


PROBE_RUN = [*TINY, "batch=minibatch", "batch.size=16", "checkpoint_every=32"]
PROBED = {
    "trajectory": [*PROBE_RUN, "probes=[trajectory]", "probes.trajectory.every=4"],
    "sharpness": [*PROBE_RUN, "probes=[sharpness]", "probes.sharpness.every=3",
                  "probes.sharpness.tol=0"],
    "sharpness_tol": [*PROBE_RUN, "probes=[sharpness]", "probes.sharpness.every=3"],
    "hessian": [*PROBE_RUN, "probes=[hessian]", "probes.hessian.every=3",
                "probes.hessian.samples=2"],
    "noise": [*PROBE_RUN, "probes=[noise]", "probes.noise.full_every=7"],
    "gradcheck": [*PROBE_RUN, "probes=[gradcheck]", "probes.gradcheck.every=3",
                  "probes.gradcheck.coords=3"],
    "taylor": [*PROBE_RUN, "probes=[taylor]", "probes.taylor.every=2"],
    "function": ["model=function", "model.expression=x**2+3*y**2", "optimizer.lr=0.05",
                 "epochs=40", "log_every=3", "checkpoint_every=40"],
}  # fmt: skip


@pytest.mark.parametrize("probe", PROBED)
def test_resume_with_a_probe_is_bitwise_the_uninterrupted_run(tmp_path, monkeypatch, probe):
    """Each probe's state (warm start, generators, θ₀, G, the gradient check's record, the
    function's path) goes into the checkpoint: resumed at a random step, the run logs every
    number the uninterrupted run logs, and ends with the same summary and plot data."""
    overrides = PROBED[probe]
    whole = run_experiment(tmp_path / "whole", *overrides)
    stop = random.Random().randrange(2, whole["steps"])
    fault_at(monkeypatch, stop, sigterm)
    cut = run_experiment(tmp_path / "cut", *overrides)
    assert cut["status"] == "interrupted", stop
    monkeypatch.undo()
    done = run_experiment(tmp_path / "cut", *overrides, "resume=true")
    assert done["resumed_from"]["step"] == stop
    assert done["final"] == whole["final"] and done.get("probes") == whole.get("probes"), stop
    assert without_time(tmp_path / "whole") == without_time(tmp_path / "cut"), stop
    assert scalars(tmp_path / "whole") == scalars(tmp_path / "cut"), stop


def test_a_checkpoint_newer_than_its_logs_is_passed_over_for_one_they_cover(
    tmp_path, monkeypatch, caplog
):
    """A power cut can lose the page cache's tail of the logs but keep a later checkpoint;
    resuming from it would leave a silent hole. The older checkpoint the logs cover is used."""
    overrides = [*TINY, "batch=minibatch", "batch.size=16", "checkpoint_every=5"]
    run_experiment(tmp_path / "whole", *overrides, "checkpoint_every=32")
    fault_at(monkeypatch, 23, crash)
    run_experiment(tmp_path / "cut", *overrides)
    monkeypatch.undo()
    shutil.copytree(tmp_path / "cut", tmp_path / "cut2")
    newest, older = checkpoints(tmp_path / "cut" / "checkpoints")
    sizes = [torch.load(p, weights_only=True)["logs"]["metrics.jsonl"] for p in (newest, older)]
    jsonl = tmp_path / "cut" / "metrics.jsonl"
    os.truncate(jsonl, (sizes[0] + sizes[1]) // 2)  # between the two: the tail of 20 is lost
    done = run_experiment(tmp_path / "cut", *overrides, "checkpoint_every=32", "resume=true")
    assert done["resumed_from"]["step"] == 15
    assert f"checkpoint {newest} cannot be used (it is newer than the logs: metrics.jsonl" in (
        caplog.text
    )
    assert_same_run(tmp_path / "whole", tmp_path / "cut")
    os.truncate(tmp_path / "cut2" / "metrics.jsonl", 10)  # no checkpoint covered: refused
    s = run_experiment(tmp_path / "cut2", *overrides, "resume=true")
    assert s["stop_reason"] == "config_error" and "no usable checkpoint" in s["error"]
    assert "\n" not in s["error"] and "overwrite=true" in s["error"]


def test_logs_are_fsynced_before_each_checkpoint(tmp_path, monkeypatch):
    synced = []
    real = os.fsync

    def fsync(fd):
        synced.append(Path(os.path.realpath(f"/proc/self/fd/{fd}")).name)
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    run_experiment(tmp_path, *TINY, "batch=minibatch", "batch.size=16")
    saves = [i for i, name in enumerate(synced) if name.endswith(".pt.tmp")]
    assert len(saves) == 6  # steps 5, 10, …, 30
    for start, end in zip([-1, *saves], saves):
        before = synced[start + 1 : end]
        assert "metrics.jsonl" in before and any(n.startswith("events.out") for n in before)
