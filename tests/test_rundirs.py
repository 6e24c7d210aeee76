"""A run dir that holds a run is never mixed into: refused in one line before anything is
written (Hydra's .hydra/ included), continued with resume=true, or emptied with overwrite=true."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import cli, metrics, run_experiment, scalars

RUN = ["data=iris", "epochs=10", "checkpoint_every=5"]


def snapshot(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_a_used_run_dir_is_refused_and_left_as_it_was(tmp_path):
    run_experiment(tmp_path / "r", *RUN)
    before = snapshot(tmp_path / "r")
    s = run_experiment(tmp_path / "r", *RUN, "optimizer.lr=0.2")
    assert s["status"] == "failed" and s["stop_reason"] == "config_error"
    assert "already holds a run (metrics.jsonl, model.pt, 1 event file, checkpoints)" in s["error"]
    assert "resume=true" in s["error"] and "overwrite=true" in s["error"]
    assert snapshot(tmp_path / "r") == before  # summary.json too: the old run's, untouched


def test_overwrite_starts_over_with_one_runs_files(tmp_path):
    run_experiment(tmp_path / "r", *RUN)
    s = run_experiment(tmp_path / "r", *RUN, "optimizer.lr=0.2", "overwrite=true")
    assert s["status"] == "ok"
    steps = [m["step"] for m in metrics(tmp_path / "r") if "train/loss" in m]
    assert steps == sorted(set(steps))  # every step once
    loss = scalars(tmp_path / "r")["train/loss"]
    assert [x for x, _ in loss] == sorted({x for x, _ in loss})  # one point per step in TB
    assert len(list((tmp_path / "r").glob("events.out.tfevents.*"))) == 1
    fresh = run_experiment(tmp_path / "fresh", *RUN, "optimizer.lr=0.2")
    assert [{k: v for k, v in m.items() if k != "time"} for m in metrics(tmp_path / "r")] == [
        {k: v for k, v in m.items() if k != "time"} for m in metrics(tmp_path / "fresh")
    ]
    assert fresh["final"] == s["final"]


def test_resume_and_overwrite_together_are_refused(tmp_path):
    s = run_experiment(tmp_path / "r", *RUN, "resume=true", "overwrite=true")
    assert s["error"] == "overwrite=True: contradicts resume=true; choose one"


@pytest.mark.slow
def test_the_cli_refuses_a_used_run_dir_before_hydra_writes_into_it(tmp_path):
    assert cli(*RUN, "hydra.run.dir=r", cwd=tmp_path).returncode == 0
    before = snapshot(tmp_path / "r")
    out = cli(*RUN, "optimizer.lr=0.2", "hydra.run.dir=r", cwd=tmp_path)
    assert out.returncode == 2
    lines = [line for line in (out.stdout + out.stderr).splitlines() if line.strip()]
    assert lines == ["gradexp: error: hydra.run.dir=r: already holds a run (metrics.jsonl, "
                     "model.pt, 1 event file, checkpoints); add resume=true to continue, "
                     "overwrite=true to start over, or choose another directory"]  # fmt: skip
    assert snapshot(tmp_path / "r") == before  # .hydra/config.yaml and gradexp.log too
    sweep = ["-m", "data=iris", "epochs=2", "optimizer.lr=0.1,0.2", "hydra.sweep.dir=s"]
    assert cli(*sweep, cwd=tmp_path).returncode == 0
    kept = snapshot(tmp_path / "s")
    again = cli(*sweep, cwd=tmp_path)
    assert again.returncode == 2 and "hydra.sweep.dir=s: already holds 2 runs (" in again.stderr
    assert snapshot(tmp_path / "s") == kept
    sweep[3] = "optimizer.lr=0.3,0.4"
    over = cli(*sweep, "overwrite=true", cwd=tmp_path)
    assert over.returncode == 0, over.stderr
    jobs = sorted(d.name for d in (tmp_path / "s").iterdir() if d.is_dir())
    assert jobs == ["0_lr=0.3", "1_lr=0.4"]  # named by what the sweep varies
    summaries = [json.loads(p.read_text()) for p in (tmp_path / "s").glob("*/summary.json")]
    assert len(summaries) == 2


def test_job_names_show_what_varies_and_short_keys_only_where_unambiguous():
    from gradexp.durable.jobdirs import short_names, swept_keys

    line = ["data=iris", "optimizer=sgd,adam", "optimizer.lr=0.1,0.01", "seed=range(2)",
            "checkpoint_every=5", "+case=a,b", "hydra.verbose=true"]  # fmt: skip
    keys = swept_keys({"model.hidden": "[8],[16]"}, line, ["resume", "checkpoint_every"])
    assert keys == ["model.hidden", "optimizer", "optimizer.lr", "seed", "+case"]
    assert short_names(keys) == {
        "model.hidden": "hidden",
        "optimizer": "optimizer",
        "optimizer.lr": "lr",
        "seed": "seed",
        "+case": "case",
    }
    clash = short_names(["optimizer.lr", "other.lr", "batch.size"])
    assert clash == {"optimizer.lr": "optimizer.lr", "other.lr": "other.lr", "batch.size": "size"}


@pytest.mark.slow
def test_a_resumed_sweep_finds_its_jobs_by_configuration_not_number(tmp_path):
    base = ["-m", "data=iris", "epochs=2", "hydra.sweep.dir=s"]
    assert cli(*base, "optimizer.lr=0.01,0.1", cwd=tmp_path).returncode == 0
    before = {d.name: (d / "metrics.jsonl").read_bytes() for d in (tmp_path / "s").iterdir()
              if d.is_dir()}  # fmt: skip
    assert sorted(before) == ["0_lr=0.01", "1_lr=0.1"]
    again = cli(*base, "optimizer.lr=0.1,0.3,0.01", "resume=true", cwd=tmp_path)  # reordered
    assert again.returncode == 0, again.stderr
    jobs = sorted(d.name for d in (tmp_path / "s").iterdir() if d.is_dir())
    assert jobs == ["0_lr=0.01", "1_lr=0.1", "2_lr=0.3"]  # the new value: numbered after
    for name, data in before.items():
        assert (tmp_path / "s" / name / "metrics.jsonl").read_bytes() == data  # not re-run
    assert again.stderr.count("skipped (finished before: ok)") == 2
    fresh = json.loads((tmp_path / "s" / "2_lr=0.3" / "summary.json").read_text())
    assert fresh["status"] == "ok" and "optimizer.lr=0.3" in fresh["overrides"]
    rows = (tmp_path / "s" / "summary.csv").read_text().splitlines()
    assert len(rows) == 4


def test_a_resumed_sweep_gives_each_old_dir_to_one_job_and_numbers_new_ones_after_all(tmp_path):
    from gradexp.durable.jobdirs import names

    sweep = tmp_path / "s"
    for name, seed in (("0_seed=1", 1), ("1_seed=2", 2), ("2_seed=1", 1)):  # seed=1,2,1 before
        (sweep / name / ".hydra").mkdir(parents=True)
        (sweep / name / ".hydra" / "overrides.yaml").write_text(f"- seed={seed}\n- epochs=5\n")
    jobs = [["seed=1", "epochs=5"], ["seed=1", "epochs=5"], ["seed=1", "epochs=10"]]
    got = names(jobs, 0, ["seed", "epochs"], sweep, True, [])
    assert got[:2] == ["0_seed=1", "2_seed=1"]  # each old dir to one job
    assert got[2] == "3_seed=1,epochs=10"  # new: numbered after every dir there, none reused
    assert names([["path=a/b"]], 0, ["path"], tmp_path / "t", False, []) == ["0_path=a%2Fb"]
