"""Bad input gets one line naming the key, the value and what is allowed; a failed summary; and
never a traceback from inside torch, numpy or sklearn."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import cli, run_experiment

IRIS = ["data=iris", "model.hidden=[4]", "epochs=1"]
# (overrides, the start of the one-line error): key=value, then what is allowed.
CONFIGS = [
    (["optimizer.lr=abc"], "optimizer.lr='abc': must be a number > 0"),
    (["optimizer.lr=-0.1"], "optimizer.lr=-0.1: must be a number > 0"),
    (["optimizer.lr=0"], "optimizer.lr=0: must be a number > 0"),
    (["optimizer.lr=[1,2]"], "optimizer.lr=[1, 2]: must be a number > 0"),
    (["epochs=0"], "epochs=0: must be an integer ≥ 1"),
    (["epochs=2.5"], "epochs=2.5: must be an integer ≥ 1"),
    (["max_steps=-3"], "max_steps=-3: must be an integer ≥ 1"),
    (["log_every=0"], "log_every=0: must be an integer ≥ 1"),
    (["eval_every=abc"], "eval_every='abc': must be an integer ≥ 1"),
    (["seed=-1"], "seed=-1: must be an integer ≥ 0"),
    (["l2=-1"], "l2=-1: must be a number ≥ 0"),
    (["flush_secs=-2"], "flush_secs=-2: must be a number ≥ 0"),
    (["stop.grad_tol=-1"], "stop.grad_tol=-1: must be a number > 0"),
    (["batch.size=0"], "batch.size=0: must be an integer ≥ 1"),
    (["batch.size=1000"], "batch.size=1000: must be ≤ 120, the training set size"),
    (["batch.accumulate=0"], "batch.accumulate=0: must be an integer ≥ 1"),
    (["batch.shuffle=maybe"], "batch.shuffle='maybe': must be true or false"),
    (["data.eval_fraction=1.5"], "data.eval_fraction=1.5: must be a number ≥ 0 and ≤ 0.9"),
    (["data.eval_fraction=abc"], "data.eval_fraction='abc': must be a number ≥ 0 and ≤ 0.9"),
    (["data.split_seed=-1"], "data.split_seed=-1: must be an integer ≥ 0"),
    (["data.standardize=2"], "data.standardize=2: must be true or false"),
    (["data.name=mnist"], "data.name=mnist: not allowed; choose one of digits, iris"),
    (["dtype=float16"], "dtype=float16: not allowed; choose one of float32, float64"),
    (["device=cuda"], "device=cuda: CUDA is not available here; use device=auto or cpu"),
    (["device=cuda:3"], "device=cuda:3: CUDA is not available here"),
    (["device=tpu"], "device=tpu: choose auto, cpu, cuda or cuda:N"),
    (["model.hidden=[0]"], "model.hidden=[0]: every width must be an integer ≥ 1"),
    (["model.hidden=[8,-4]"], "model.hidden=[8, -4]: every width must be an integer ≥ 1"),
    (["model.hidden=abc"], "model.hidden='abc': must be a list of widths"),
    (["model.activation=swish"], "model.activation=swish: not allowed; choose one of relu"),
    (["model.init=foo"], "model.init=foo: not allowed; choose one of default"),
    (
        ["optimizer=momentum", "optimizer.momentum=-0.5"],
        "optimizer.momentum=-0.5: must be a number ≥ 0",
    ),
    (
        ["optimizer=adam", "optimizer.betas=[0.9,1.5]"],
        "optimizer.betas=[0.9, 1.5]: must be two numbers in [0, 1)",
    ),
    (["optimizer=adam", "optimizer.eps=-1"], "optimizer.eps=-1: must be a number ≥ 0"),
    (
        ["optimizer=nesterov", "optimizer.momentum=0"],
        "optimizer.nesterov=True: needs optimizer.momentum > 0",
    ),
    (["optimizer=rmsprop", "optimizer.alpha=2"], "optimizer.alpha=2: must be a number ≥ 0"),
    (["schedule=step", "schedule.step_size=0"], "schedule.step_size=0: must be an integer ≥ 1"),
    (
        ["schedule=warmup", "schedule.warmup_steps=-5"],
        "schedule.warmup_steps=-5: must be an integer ≥ 0",
    ),
    (["schedule=cosine", "schedule.min_factor=2"], "schedule.min_factor=2: must be a number ≥ 0"),
    (
        ["data=regression"],
        "loss=cross_entropy: needs class labels, but data=regression has a "
        "regression target; use loss=mse",
    ),
    (["data=regression", "loss=mse", "data.n=0"], "data.n=0: must be an integer ≥ 1"),
    (
        ["data=regression", "loss=mse", "data.n=2", "data.eval_fraction=0.9"],
        "data.eval_fraction=0.9: leaves none of the 2 rows for training",
    ),
    (["data=blobs", "data.classes=1"], "data.classes=1: must be an integer ≥ 2"),
    (["data=moons", "data.noise=-1"], "data.noise=-1: must be a number ≥ 0"),
    (["checkpoint_every=-1"], "checkpoint_every=-1: must be an integer ≥ 0"),
    (["resume=maybe"], "resume='maybe': must be true or false"),
    (["deterministic=1"], "deterministic=1: must be true or false"),
    (["explode.factor=0.5"], "explode.factor=0.5: must be a number > 1"),
]


def write(tmp: Path, name: str, content) -> str:
    path = tmp / name
    if isinstance(content, dict):
        np.savez(path, **content)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return str(path)


GOOD = "a,b,y\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(10))
# (file name, content, the error after "data.path=<path>: " (or a full prefix with {path}))
FILES = [
    ("none.csv", None, "no such file"),
    ("empty.csv", "", "is empty; need a header row and data rows"),
    ("header.csv", "a,b,y\n", "holds no rows of data"),
    ("ragged.csv", "a,b,y\n1,2,0\n1,2\n", "line 3 has 2 fields, the header 3"),
    ("text.csv", "a,b,y\n1,abc,0\n", "line 2, column 'b': 'abc' is not a number"),
    (
        "nan.csv",
        "a,b,y\n1,2,0\n1,nan,1\n",
        "column 'b' has nan in row 2; all values must be finite",
    ),
    ("inf.csv", "a,b,y\n1,2,0\n-inf,2,1\n", "column 'a' has -inf in row 2"),
    ("notarget.csv", "a,b,z\n1,2,0\n", "data.target=y: not a column of {path}; columns: a, b, z"),
    ("onlytarget.csv", "y\n1\n0\n", "has no feature columns besides the target"),
    ("garbage.npz", b"\x00\x01not a zip", "not a readable .npz file"),
    ("strings.npz", {"x": np.array(["a", "b"]), "y": np.array([0, 1])}, "array 'x' is not numeric"),
    ("lengths.npz", {"x": np.ones((3, 2)), "y": np.ones(4)}, "arrays have different lengths"),
    ("cube.npz", {"x": np.ones((3, 2, 2)), "y": np.ones(3)}, "array 'x' has shape (3, 2, 2)"),
    (
        "nannpz.npz",
        {"x": np.array([[1.0], [np.nan]]), "y": np.ones(2)},
        "column 'x[0]' has nan in row 2",
    ),
    ("emptynpz.npz", {"x": np.ones((0, 2)), "y": np.ones(0)}, "holds no rows of data"),
    ("good.csv", GOOD, "data.task=foo: not allowed; choose one of auto, classification"),
    ("small.csv", "a,y\n1,0\n2,1\n", "batch.size=64: must be ≤ 2, the training set size"),
]


def assert_one_line_failure(summary: dict, run_dir: Path, expected: str) -> None:
    assert summary["status"] == "failed" and summary["stop_reason"] == "config_error", summary
    assert summary["error"].startswith(expected), summary["error"]
    assert "\n" not in summary["error"] and "Traceback" not in summary["error"]
    on_disk = json.loads((run_dir / "summary.json").read_text())
    assert on_disk["status"] == "failed" and on_disk["objective"] == "inf"
    assert not (run_dir / "checkpoints").exists()


@pytest.mark.parametrize(("overrides", "expected"), CONFIGS, ids=[" ".join(c[0]) for c in CONFIGS])
def test_bad_config_gives_one_line(run_dir, overrides, expected):
    summary = run_experiment(run_dir, *IRIS, *overrides)
    assert_one_line_failure(summary, run_dir, expected)


@pytest.mark.parametrize(("name", "content", "expected"), FILES, ids=[f[0] for f in FILES])
def test_bad_data_file_gives_one_line(tmp_path, run_dir, name, content, expected):
    path = str(tmp_path / name) if content is None else write(tmp_path, name, content)
    extra = ["data.task=foo"] if name == "good.csv" else []
    summary = run_experiment(run_dir, "data=file", f"data.path={path}", "data.target=y",
                             "data.eval_fraction=0", "epochs=1", *extra)  # fmt: skip
    if "=" not in expected.split(":")[0]:
        expected = f"data.path={path}: {expected}"
    assert_one_line_failure(summary, run_dir, expected.format(path=path))


def test_the_matrix_is_big_enough():
    assert len(CONFIGS) + len(FILES) >= 30


def unwritable_dirs(tmp_path: Path) -> list[Path]:
    """Directories a run cannot write to, even as root (chmod alone does not stop root)."""
    (tmp_path / "file").write_text("a regular file")
    return [tmp_path / "file" / "run", Path("/proc/version/run"), Path("/proc/run")]


def test_unwritable_run_dir_is_reported_before_training(tmp_path, caplog):
    for run_dir in unwritable_dirs(tmp_path):
        summary = run_experiment(run_dir, *IRIS)
        assert summary["status"] == "failed" and summary["stop_reason"] == "config_error"
        assert summary["error"].startswith(f"hydra.run.dir={run_dir}: cannot write there (")
        assert "steps" not in summary  # no training happened
        assert "could not write to" in caplog.text  # nor could summary.json: said so, no crash


@pytest.mark.slow
def test_cli_bad_input_one_line_no_traceback(tmp_path):
    bad = tmp_path / "file" / "run"
    for args, line, code in [
        (["optimizer.lr=abc"], "gradexp: error: optimizer.lr='abc': must be a number > 0", 2),
        (
            [f"hydra.run.dir={bad}"],
            f"gradexp: error: hydra.run.dir={bad}: {tmp_path}/file is a file, not a directory",
            2,
        ),
    ]:
        (tmp_path / "file").write_text("")
        out = cli(*IRIS, *args, cwd=tmp_path)
        text = out.stdout + out.stderr
        assert out.returncode == code, text
        assert "Traceback" not in text
        errors = [x for x in text.splitlines() if "error" in x.lower()]
        assert len(errors) == 1 and errors[0].startswith(line), text
