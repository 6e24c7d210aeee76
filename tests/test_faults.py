"""Faults injected into real processes: SIGTERM, SIGKILL at a random step, a killed sweep. The
resumed runs must end bitwise where the run that was never stopped ends."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, cli, metrics, run_experiment, scalars

pytestmark = pytest.mark.slow
RUN = ["data=iris", "model.hidden=[8]", "batch=stochastic", "epochs=5", "log_every=10",
       "flush_secs=0", "checkpoint_every=50"]  # fmt: skip


def start(*args: str, cwd: Path) -> subprocess.Popen:
    env = os.environ | {"PYTHONPATH": str(ROOT), "HYDRA_FULL_ERROR": "0"}
    return subprocess.Popen([sys.executable, "-m", "gradexp", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def logged_steps(run_dir: Path) -> list[int]:
    """Steps in metrics.jsonl; a torn last line (a process killed mid-write) is skipped."""
    try:
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return []
    steps = []
    for i, line in enumerate(lines):
        try:
            steps.append(json.loads(line)["step"])
        except ValueError:
            assert i == len(lines) - 1, "only the last line may be torn"
    return steps


def wait_for_step(proc: subprocess.Popen, run_dir: Path, step: int, timeout=180) -> None:
    end = time.monotonic() + timeout
    while max(logged_steps(run_dir), default=0) < step:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < end, "the run did not get there in time"
        time.sleep(0.02)


def without_time(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in m.items() if k != "time"} for m in metrics(run_dir)]


def newest_checkpoint(run_dir: Path) -> int:
    return int(sorted((run_dir / "checkpoints").glob("step-*.pt"))[-1].stem.split("-")[1])


def test_sigterm_and_sigkill_then_resume(tmp_path):
    whole = run_experiment(tmp_path / "whole", *RUN)
    assert whole["status"] == "ok" and whole["steps"] == 600

    term = tmp_path / "term"
    proc = start(*RUN, f"hydra.run.dir={term}", cwd=tmp_path)
    wait_for_step(proc, term, 200)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in out + err
    lines = [x for x in (out + err).splitlines() if "interrupted" in x]
    assert len(lines) == 1 and lines[0].startswith("gradexp: interrupted by SIGTERM at step ")
    stopped = int(lines[0].split("at step ")[1].split(";")[0])
    assert newest_checkpoint(term) == stopped  # written on the signal, not only every 50 steps
    assert json.loads((term / "summary.json").read_text())["status"] == "interrupted"
    # Resumed in this process: a third CLI start would only add the cost of importing torch.
    assert run_experiment(term, *RUN, "resume=true")["resumed_from"]["step"] == stopped
    assert without_time(term) == without_time(tmp_path / "whole")
    assert scalars(term) == scalars(tmp_path / "whole")

    killed = tmp_path / "kill"
    at = random.randint(60, 520)  # SIGKILL at a random step: nothing of ours runs on it
    proc = start(*RUN, f"hydra.run.dir={killed}", cwd=tmp_path)
    wait_for_step(proc, killed, at)
    proc.kill()
    proc.communicate()
    scalars(killed)  # every event file written so far reads back
    last, saved = max(logged_steps(killed)), newest_checkpoint(killed)
    assert 0 <= last - saved < 50 + 10, (at, last, saved)  # checkpoint and flush schedules
    summary = run_experiment(killed, *RUN, "resume=true")
    assert summary["status"] == "ok"
    assert summary["resumed_from"]["step"] == saved  # lost: only the steps after `saved`
    assert without_time(killed) == without_time(tmp_path / "whole")
    assert scalars(killed) == scalars(tmp_path / "whole")


def test_killed_sweep_resumes_skipping_finished_jobs(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", *RUN, "epochs=2", "optimizer.lr=0.01,0.02", f"hydra.sweep.dir={sweep}"]
    proc = start(*args, cwd=tmp_path)
    deadline = time.monotonic() + 180
    while not list(sweep.glob("1_*/metrics.jsonl")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    job0, job1 = sorted(sweep.glob("0_*"))[0], sorted(sweep.glob("1_*"))[0]
    wait_for_step(proc, job1, 120)
    proc.kill()
    proc.communicate()
    first = (job0 / "metrics.jsonl").read_bytes()
    assert json.loads((job0 / "summary.json").read_text())["status"] == "ok"
    assert not (job1 / "summary.json").exists()  # killed: the sweep table says "died"

    again = cli(*args, "resume=true", cwd=tmp_path)  # same overrides, same sweep dir
    assert again.returncode == 0, again.stderr
    assert "job 1/2 skipped (finished before: ok)" in again.stderr  # one line per job
    assert "already finished (ok): skipped" in (job0 / "gradexp.log").read_text()
    assert (job0 / "metrics.jsonl").read_bytes() == first  # the finished job was not re-run
    summary = json.loads((job1 / "summary.json").read_text())
    assert summary["status"] == "ok" and summary["resumed_from"]["step"] >= 100
    reference = run_experiment(tmp_path / "ref", *RUN, "epochs=2", "optimizer.lr=0.02")
    assert without_time(job1) == without_time(tmp_path / "ref")
    assert summary["final"] == reference["final"]
    rows = (sweep / "summary.csv").read_text().splitlines()
    assert len(rows) == 3 and all(",ok," in r for r in rows[1:])


PROBES = [
    "probes=[trajectory,sharpness,hessian,noise,gradcheck,taylor]",
    "probes.sharpness.every=7",
    "probes.hessian.every=9",
    "probes.hessian.samples=2",
    "probes.noise.every=5",
    "probes.noise.full_every=11",
    "probes.gradcheck.every=13",
    "probes.gradcheck.coords=3",
    "probes.trajectory.every=10",
    "probes.taylor.every=6",
]
FUNCTION = ["model=function", "model.expression=x**2+3*y**2+x*y", "optimizer=momentum",
            "optimizer.lr=0.02", "epochs=600", "log_every=10", "flush_secs=0",
            "checkpoint_every=50"]  # fmt: skip


@pytest.mark.parametrize("run", [[*RUN, *PROBES], FUNCTION], ids=["probes", "function"])
def test_sigkill_with_probes_then_resume_is_bitwise(tmp_path, run):
    """kill -9 at a random step of a run with every probe (and of a model=function run, whose
    probe keeps the path): the resumed run logs what the uninterrupted one logs, bitwise."""
    whole = run_experiment(tmp_path / "whole", *run)
    killed = tmp_path / "kill"
    at = random.randint(60, 520)
    proc = start(*run, f"hydra.run.dir={killed}", cwd=tmp_path)
    wait_for_step(proc, killed, at)
    proc.kill()
    proc.communicate()
    summary = run_experiment(killed, *run, "resume=true")
    assert summary["status"] == "ok" and summary["resumed_from"]["step"] > 0, at
    assert summary["final"] == whole["final"] and summary.get("probes") == whole.get("probes")
    assert without_time(killed) == without_time(tmp_path / "whole"), at
    assert scalars(killed) == scalars(tmp_path / "whole"), at


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_stopped_vectorised_sweep_resumes_bitwise(tmp_path, how):
    """A vectorised sweep stopped mid-group (SIGTERM: checkpoint at that step; kill -9 at a
    random step: the last periodic one), then run again with resume=true, ends bitwise as the
    vectorised sweep that never stopped, member by member."""
    args = ["-m", *RUN, "optimizer.lr=0.01,0.02,0.03", "hydra/launcher=vectorized"]
    ref = cli(*args, "hydra.sweep.dir=ref", cwd=tmp_path)
    assert ref.returncode == 0, ref.stderr[-2000:]
    sweep = tmp_path / "cut"
    proc = start(*args, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    deadline = time.monotonic() + 180
    while len(list(sweep.glob("*/metrics.jsonl"))) < 3:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    jobs = sorted(d for d in sweep.iterdir() if (d / ".hydra").is_dir())
    wait_for_step(proc, jobs[-1], random.randint(60, 520))
    if how == "sigterm":
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 128 + signal.SIGTERM and "Traceback" not in out + err, err
        assert (out + err).count("gradexp: interrupted by SIGTERM at step") == 1  # per group
        assert "to continue, run the same command with resume=true" in err
        stopped = {json.loads((d / "summary.json").read_text())["steps"] for d in jobs}
        assert len(stopped) == 1 and {newest_checkpoint(d) for d in jobs} == stopped
    else:
        proc.kill()
        proc.communicate()
    again = cli(*args, f"hydra.sweep.dir={sweep}", "resume=true", "hydra.verbose=true",
                cwd=tmp_path)  # fmt: skip
    assert again.returncode == 0, again.stderr[-2000:]
    # A kill between two members' checkpoint writes leaves them a step apart: two groups then.
    assert "members as one model, resumed at step" in again.stderr
    assert again.stderr.count(" · resumed at step ") == len(jobs)  # each job's line says so
    for d in jobs:
        summary = json.loads((d / "summary.json").read_text())
        assert summary["status"] == "ok" and summary["resumed_from"]["step"] > 0
        assert without_time(d) == without_time(tmp_path / "ref" / d.name)
        assert scalars(d) == scalars(tmp_path / "ref" / d.name)
