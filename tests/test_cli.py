"""The command line end to end, in subprocesses: the default run and sweeps."""

import csv
import json
from pathlib import Path

import pytest
import yaml
from conftest import cli, scalars

pytestmark = pytest.mark.slow

CORE_TAGS = {
    "train/loss",
    "eval/loss",
    "eval/accuracy",
    "grad/norm",
    "train/lr",
    "param/norm",
    "update/norm",
    "grad_norm/layer1.weight",
    "epoch/train_loss",
}


def test_default_run(tmp_path):
    p = cli(cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    (run_dir,) = (tmp_path / "outputs").glob("*/*")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "ok" and summary["steps"] == 460
    assert summary["final"]["eval/accuracy"] > 0.93
    rel = run_dir.relative_to(tmp_path)
    assert f"tensorboard --logdir {rel}" in p.stderr
    assert "gradexp: ok (finished: 20 epochs) · 460 steps" in p.stderr
    assert "\r" not in p.stderr  # no progress bar when stderr is not a terminal
    assert set(scalars(run_dir)) >= CORE_TAGS
    assert {"model.pt", "metrics.jsonl", "gradexp.log", ".hydra"} <= {
        f.name for f in run_dir.iterdir()
    }


def sweep_dir(cwd: Path) -> Path:
    (d,) = (cwd / "outputs" / "multirun").glob("*/*")
    return d


def test_sweep_of_four_jobs(tmp_path):
    p = cli("-m", "optimizer=sgd,adam", "batch=full,minibatch", "epochs=2", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    d = sweep_dir(tmp_path)
    jobs = sorted(x.name for x in d.iterdir() if x.is_dir())
    assert [j[:2] for j in jobs] == ["0_", "1_", "2_", "3_"]
    # named by what the sweep varies, in the order given; the constants once, in sweep.yaml
    assert jobs == ["0_optimizer=sgd,batch=full", "1_optimizer=sgd,batch=minibatch",
                    "2_optimizer=adam,batch=full", "3_optimizer=adam,batch=minibatch"]  # fmt: skip
    assert yaml.safe_load((d / "sweep.yaml").read_text()) == {
        "swept": ["optimizer", "batch"],
        "constant": ["epochs=2"],
    }
    for job in jobs:
        assert set(scalars(d / job)) >= CORE_TAGS, job
    rows = list(csv.DictReader((d / "summary.csv").open()))
    assert [r["status"] for r in rows] == ["ok"] * 4
    for row, job in zip(rows, jobs):
        s = json.loads((d / job / "summary.json").read_text())
        assert float(row["eval_loss"]) == s["final"]["eval/loss"]
        assert int(row["steps"]) == s["steps"] == (2 if "full" in job else 46)
    assert (
        "train_loss" in p.stdout and f"tensorboard --logdir {d.relative_to(tmp_path)}" in p.stdout
    )


def test_sweep_goes_on_past_a_failed_job_and_exits_non_zero(tmp_path):
    p = cli("-m", "optimizer.lr=0.1,-1,500", "batch=full", "epochs=30", cwd=tmp_path)
    assert p.returncode == 1
    rows = list(csv.DictReader((sweep_dir(tmp_path) / "summary.csv").open()))
    assert [r["status"] for r in rows] == ["ok", "failed", "diverged"]
    assert "optimizer.lr=-1: must be a number > 0" in rows[1]["message"]
    assert "diverged at step" in rows[2]["message"]
    assert "1 of 3 jobs failed: 1" in p.stderr


def test_a_diverged_job_is_a_result_not_a_failure(tmp_path):
    p = cli("-m", "optimizer.lr=0.1,500", "batch=full", "epochs=30", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    rows = list(csv.DictReader((sweep_dir(tmp_path) / "summary.csv").open()))
    assert [r["status"] for r in rows] == ["ok", "diverged"]
