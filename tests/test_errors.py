"""Bad input: one line naming the key, the value and what is allowed, before any training."""

import json

import pytest
from conftest import cli, run_experiment

CASES = [
    (["optimizer.lr=-0.1"], "optimizer.lr=-0.1: must be a number > 0"),
    (["optimizer.lr=0"], "optimizer.lr=0"),
    (["optimizer.lr=fast"], "optimizer.lr='fast': must be a number"),
    (["batch.size=0"], "batch.size=0: must be an integer ≥ 1"),
    (["batch.size=5000"], "batch.size=5000: must be ≤ 1438, the training set size"),
    (["batch.accumulate=0"], "batch.accumulate=0"),
    (["epochs=0"], "epochs=0: must be an integer ≥ 1"),
    (["max_steps=-3"], "max_steps=-3"),
    (["loss=cross_entropy", "data=diabetes"], "loss=cross_entropy: needs class labels"),
    (["loss=hinge", "data=regression"], "loss=hinge: needs class labels"),
    (["device=cuda"], "device=cuda: CUDA is not available"),
    (["device=tpu"], "device=tpu: choose auto, cpu, cuda or cuda:N"),
    (["dtype=float16"], "dtype=float16: not allowed; choose one of float32, float64"),
    (["model.activation=swish"], "model.activation=swish: not allowed; choose one of relu"),
    (["data=file", "data.path=/nonexistent.csv", "data.target=y"], "data.path=/nonexistent.csv"),
    (["l2=-1"], "l2=-1"),
    (["log_every=0"], "log_every=0"),
    (["stop.grad_tol=-1"], "stop.grad_tol=-1"),
]


@pytest.mark.parametrize(("overrides", "message"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_value_fails_before_training_naming_the_key(tmp_path, overrides, message):
    s = run_experiment(tmp_path, *overrides)
    assert s["status"] == "failed" and s["stop_reason"] == "config_error"
    assert message in s["error"] and "\n" not in s["error"]
    assert not (tmp_path / "metrics.jsonl").exists()  # nothing trained, nothing passed off
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "failed"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["optimizer.lr=-1"], "gradexp: error: optimizer.lr=-1: must be a number > 0"),
        (
            ["data=diabetes"],
            "gradexp: error: loss=cross_entropy: needs class labels, but "
            "data=diabetes has a regression target; use loss=mse",
        ),
    ],
)
def test_cli_prints_one_line_and_exits_non_zero(tmp_path, args, needle):
    p = cli(*args, cwd=tmp_path)
    assert p.returncode == 2
    assert needle in p.stderr and "Traceback" not in p.stderr + p.stdout
    assert [line for line in p.stderr.splitlines() if "error" in line] == [needle]


@pytest.mark.slow
def test_cli_unknown_option_lists_the_choices(tmp_path):
    p = cli("optimizer=adamm", cwd=tmp_path)
    assert p.returncode == 2 and p.stderr.startswith("gradexp: error: optimizer=adamm: no option")
    assert "adam," in p.stderr and "rmsprop" in p.stderr and len(p.stderr.splitlines()) == 1
