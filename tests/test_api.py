"""The Python API (gradexp.experiment, .sweep, .load) against the CLI: the same configs give
the same files and numbers, calls repeat in one process, bad input is one line."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from conftest import cli, metrics, series
from hydra.core.global_hydra import GlobalHydra

import gradexp

IRIS = ("data=iris", "model.hidden=[8]", "progress=false")


@pytest.fixture
def here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # outputs/ lands in the test's own dir, as the CLI's would
    return tmp_path


def numbers(run_dir) -> list[dict]:
    return [{k: v for k, v in m.items() if k != "time"} for m in metrics(run_dir)]


def test_an_experiment_is_the_cli_run_and_calls_repeat(here, caplog):
    caplog.set_level(logging.INFO, logger="gradexp")
    run = gradexp.experiment(*IRIS, "optimizer=adam", epochs=3, seed=2, max_steps=None)
    assert not GlobalHydra.instance().is_initialized()  # nothing of Hydra's left behind
    again = gradexp.experiment(*IRIS, "optimizer=adam", epochs=3, seed=2)
    assert run.dir != again.dir and run.dir.parent == here / "outputs" / run.dir.parent.name
    out = cli(*IRIS, "optimizer=adam", "epochs=3", "seed=2", "hydra.run.dir=cli", cwd=here)
    assert out.returncode == 0, out.stderr
    assert numbers(run.dir) == numbers(here / "cli") == numbers(again.dir)  # bitwise, on CPU
    theirs = json.loads((here / "cli" / "summary.json").read_text())
    assert run.summary["final"] == theirs["final"] and run.summary["status"] == "ok"
    assert run.overrides == [*IRIS, "optimizer=adam", "epochs=3", "seed=2", "max_steps=null"]
    assert run.config["optimizer"]["_target_"] == "torch.optim.Adam"  # .hydra/config.yaml
    assert (run.dir / ".hydra" / "overrides.yaml").is_file()
    steps, values = run.metrics["train/loss"]
    assert isinstance(steps, np.ndarray) and steps.dtype.kind == "i"
    assert list(zip(steps.tolist(), values.tolist())) == series(run.dir, "train/loss")
    epochs, _ = run.epoch_metrics["epoch/train_loss"]
    assert epochs.tolist() == [1, 2, 3]
    assert any(r.getMessage().startswith("gradexp: ok") for r in caplog.records)
    assert "gradexp: ok" in (run.dir / "gradexp.log").read_text()
    assert repr(run).startswith("Run(ok · data=iris")


def test_a_sweep_names_its_jobs_as_the_cli_and_vectorised_gives_the_same(here):
    grid = ("optimizer.lr=0.05,0.2", "seed=range(2)", "dtype=float64")
    runs = gradexp.sweep(*IRIS, *grid, epochs=2)
    out = cli("-m", *IRIS, *grid, "epochs=2", "hydra.sweep.dir=cli", cwd=here)
    assert out.returncode == 0, out.stderr
    theirs = sorted(p.name for p in (here / "cli").iterdir() if p.is_dir())
    assert sorted(r.dir.name for r in runs) == theirs and len(runs) == 4
    for r in runs:
        assert numbers(r.dir) == numbers(here / "cli" / r.dir.name)
    assert (runs[0].dir.parent / "summary.csv").is_file()
    vec = gradexp.sweep(*IRIS, *grid, epochs=2, vectorized=True)
    for a, b in zip(runs, vec):
        assert a.dir.name == b.dir.name
        for x, y in zip(numbers(a.dir), numbers(b.dir)):
            assert x.keys() == y.keys()
            assert all(x[k] == pytest.approx(y[k], rel=1e-10) for k in x)
    back = gradexp.load(runs[0].dir.parent)
    assert [r.dir for r in back] == [r.dir for r in runs]  # job order
    assert gradexp.load(runs[1].dir).summary == runs[1].summary


def test_bad_input_is_one_line_and_writes_nothing(here):
    cases = {
        ("optimizer=adamm",): "optimizer=adamm: no option 'adamm' in optimizer",
        ("optimizer.lr=-1",): "optimizer.lr=-1: must be a number > 0",
        ("+lr=0.5",): "lr=0.5: gradexp reads no such key",
        ("optimizer.lr=0.1,,",): "optimizer.lr=0.1,,",
    }
    for overrides, start in cases.items():
        with pytest.raises(gradexp.ExperimentError) as e:
            gradexp.experiment(*IRIS, *overrides)
        assert str(e.value).startswith(start) and "\n" not in str(e.value), str(e.value)
    with pytest.raises(gradexp.ExperimentError, match="an override is a string"):
        gradexp.experiment(3)
    with pytest.raises(gradexp.ExperimentError, match="no option 'adamm'"):
        gradexp.sweep(*IRIS, "optimizer=sgd,adamm")
    assert not (here / "outputs" / "multirun").exists()  # refused before any job ran
    gradexp.experiment(*IRIS, epochs=1, **{"hydra.run.dir": "r"})
    before = (here / "r" / "metrics.jsonl").read_bytes()
    with pytest.raises(gradexp.ExperimentError, match=r"already holds a run.*resume=true"):
        gradexp.experiment(*IRIS, epochs=2, **{"hydra.run.dir": "r"})
    assert (here / "r" / "metrics.jsonl").read_bytes() == before  # the old run is whole
    (here / "empty").mkdir()
    with pytest.raises(gradexp.ExperimentError, match="no runs"):
        gradexp.load(here / "empty")
    assert gradexp.experiment(*IRIS, epochs=1).summary["status"] == "ok"  # works after errors


@pytest.mark.slow
def test_the_api_in_a_fresh_process_twice_gives_the_cli_numbers(here):
    import subprocess
    import sys

    from conftest import ROOT

    code = ("import gradexp, json\n"
            "a = gradexp.experiment('data=iris', 'model.hidden=[8]', 'progress=false', epochs=2)\n"
            "b = gradexp.sweep('data=iris', 'model.hidden=[8]', 'progress=false', 'seed=0,1',"
            " epochs=2)\n"
            "print(json.dumps([str(a.dir), [str(r.dir) for r in b]]))\n")  # fmt: skip
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin", "TQDM_DISABLE": "1"}
    out = subprocess.run([sys.executable, "-c", code], cwd=here, capture_output=True, text=True,
                         env=env)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    one, (s0, s1) = json.loads(out.stdout.strip().splitlines()[-1])
    assert "gradexp: ok" in out.stderr  # it logs where a notebook shows it
    cli_run = cli("data=iris", "model.hidden=[8]", "progress=false", "epochs=2",
                  "hydra.run.dir=c", cwd=here)  # fmt: skip
    cli_sweep = cli("-m", "data=iris", "model.hidden=[8]", "progress=false", "seed=0,1",
                    "epochs=2", "hydra.sweep.dir=cs", cwd=here)  # fmt: skip
    assert cli_run.returncode == 0 and cli_sweep.returncode == 0
    assert numbers(one) == numbers(here / "c")
    from pathlib import Path

    assert [Path(s0).name, Path(s1).name] == ["0_seed=0", "1_seed=1"]
    assert numbers(s0) == numbers(here / "cs" / "0_seed=0")
    assert numbers(s1) == numbers(here / "cs" / "1_seed=1")


def test_sweeps_the_api_cannot_list_are_one_line_and_an_empty_one_runs_nothing(here):
    assert gradexp.sweep(*IRIS, "seed=range(0)") == []
    with pytest.raises(gradexp.ExperimentError, match="an interval or glob needs a sweeper"):
        gradexp.sweep(*IRIS, "optimizer.lr=interval(0.01,0.1)")
    with pytest.raises(gradexp.ExperimentError, match=r"verdict\.name=nope: no such judge"):
        gradexp.sweep("experiment=stability", "verdict.name=nope")
    with pytest.raises(gradexp.ExperimentError, match=r"verdict\.tolerance=-1: must be a finite"):
        gradexp.sweep("experiment=stability", "verdict.tolerance=-1")
    assert not (here / "outputs").exists()  # nothing ran, nothing was written
