"""Bad input gets one line naming the key, the value and what is allowed; a failed summary; and
never a traceback from inside torch, numpy or sklearn."""

from __future__ import annotations

import json
import os
import re
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
    # Issue 10: values that used to crash, hang or pass silently.
    (["data=file"], "data.path=???: is required: give it on the command line, e.g. data.path="),
    (["optimizer=momentum", "optimizer.momentum=inf"],
     "optimizer.momentum=inf: must be a finite number ≥ 0"),
    (["optimizer=adam", "optimizer.betas=[0.9,nan]"], "optimizer.betas=nan: must be a number"),
    (["optimizer=adam", "optimizer.eps=inf"], "optimizer.eps=inf: must be a finite number ≥ 0"),
    (["optimizer.lr=inf"], "optimizer.lr=inf: must be a finite number > 0"),
    (["optimizer.lr=1e39"], "optimizer.lr=1e+39: is beyond what torch.float32 can hold"),
    (["+optimizer.weight_decay=1e300"], "optimizer.weight_decay=1e+300: is beyond what"),
    (["seed=18446744073709551616"], "seed=18446744073709551616: must be an integer ≥ 0 and ≤ 9"),
    (["seed=true"], "seed=True: must be an integer ≥ 0"),
    (["model.hidden=[1000000000000]"], "model.hidden=[1000000000000]: needs about"),
    (["model.hidden=[8,true]"], "model.hidden=[8, True]: every width must be an integer ≥ 1"),
    (["data=regression", "loss=mse", "data.n=100000000000"],
     "data.n=100000000000: needs about"),
    (["+lr=0.5"], "lr=0.5: gradexp reads no such key (a + override adds one that nothing uses); "
     "did you mean optimizer.lr?"),
    (["+stop.patience=3"], "stop.patience=3: gradexp reads no such key"),
    (["++batch.sizes=3"], "batch.sizes=3: gradexp reads no such key"),
    (["probes=[hessian]", "probes.hessian.samples=abc"],
     "probes.hessian.samples='abc': must be an integer ≥ 1"),
    (["probes=[hessian]", "probes.hessian.samples=0"],
     "probes.hessian.samples=0: must be an integer ≥ 1"),
    (["probes=[hessian]", "probes.hessian.method=exact", "model.hidden=[4000]"],
     "probes.hessian.method=exact: the model has 32003 parameters > max_params=5000"),
    (["probes=[sharpness]", "probes.sharpness.tol=nan"],
     "probes.sharpness.tol=nan: must be a number ≥ 0"),
    (["probes=[sharpness]", "probes.sharpness.iters=2.5"],
     "probes.sharpness.iters=2.5: must be an integer ≥ 1"),
    (["probes=[gradcheck]", "probes.gradcheck.coords=true"],
     "probes.gradcheck.coords=True: must be an integer ≥ 1"),
    (["probes=[gradcheck]", "probes.gradcheck.h=inf"],
     "probes.gradcheck.h=inf: must be a finite number > 0"),
    (["probes=[noise]", "probes.noise.full_every=0"],
     "probes.noise.full_every=0: must be an integer ≥ 1"),
    (["probes=[trajectory]", "probes.trajectory.every=-3"],
     "probes.trajectory.every=-3: must be an integer ≥ 1 or 'log'"),
    (["probes=[function]"], "probes.function.model=MLP: not a formula: this probe needs"),
    (["flush_secs=inf"], "flush_secs=inf: must be a finite number ≥ 0"),
    (["l2=nan"], "l2=nan: must be a number ≥ 0"),
    (["stop.time_limit=inf"], "stop.time_limit=inf: must be a finite number > 0"),
    (["diverge.factor=0.5"], "diverge.factor=0.5: must be a number > 1"),
    (["threads=-1"], "threads=-1: must be an integer ≥ 0 and ≤ 1024"),
    (["threads=abc"], "threads='abc': must be an integer ≥ 0"),
    (["overwrite=maybe"], "overwrite='maybe': must be true or false"),
    (["resume=true", "overwrite=true"], "overwrite=True: contradicts resume=true; choose one"),
    (["data.eval_fraction=nan"], "data.eval_fraction=nan: must be a number ≥ 0 and ≤ 0.9"),
]  # fmt: skip
FUNCTION = ["model=function", "epochs=2"]
FORMULAS = [
    ("'9**9**9**9*x'", "9 ** 9 ** 9 is too large or not a real number"),  # hung, deaf to SIGTERM
    ("'x**(9**9**9)'", "9 ** 9 ** 9 is too large"),
    ("'exp(exp(exp(10)))*x'", "exp(exp(10)) is too large"),
    ("'x**2 + 1e400'", "is too large or not a real number"),
    ("'2**2000*x'", "2 ** 2000 is too large"),
    ("x/0", "divides by zero in x / 0"),
    ("'x/(y-y)'", "is not a real-valued formula"),
    ("'sqrt(-1)+x'", "sqrt(-1) is not a real number (outside its function's domain)"),
    ("'log(0)*x'", "log(0) is not a real number"),
    ("'x if y else x**2'", "`if … else` is Python, not a formula"),  # was trained as x
    ("'x and y'", "`and`/`or` are Python, not a formula"),
    ("'1j*x'", "holds 1j, which is not a real number"),
    ("'x < y'", "has characters not accepted"),
    ("'foo(x)'", "calls foo(…), an unknown function"),
    ("'sin(x, y)'", "is not a formula"),
    ("'x**2//3'", "uses the operator FloorDiv"),
]


@pytest.mark.parametrize(("formula", "expected"), FORMULAS, ids=[f[0] for f in FORMULAS])
def test_bad_formula_gives_one_line_and_never_hangs(run_dir, formula, expected):
    summary = run_experiment(run_dir, *FUNCTION, f"model.expression={formula}")
    assert_one_line_failure(summary, run_dir, "model.expression=")
    assert expected in summary["error"], summary["error"]


def test_a_start_outside_the_functions_domain_is_one_line(run_dir):
    summary = run_experiment(run_dir, *FUNCTION, "model.expression='log(x) + y**2'",
                             "model.start.x=-1")  # fmt: skip
    assert_one_line_failure(summary, run_dir, "model.start={x: -1, y: 2.0}: f is nan there")


@pytest.mark.parametrize(("name", "value"), [("TQDM_MININTERVAL", "abc"),
                                             ("TQDM_POSITION", "x"),
                                             ("TQDM_BAR_FORMAT", "{oops}")])  # fmt: skip
def test_a_bad_tqdm_variable_is_one_line(run_dir, monkeypatch, name, value):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    monkeypatch.setenv(name, value)
    summary = run_experiment(run_dir, *IRIS, progress=True)
    assert_one_line_failure(summary, run_dir, f"environment={name}={value!r}: tqdm cannot use it")
    assert run_experiment(run_dir.parent / "quiet", *IRIS)["status"] == "ok"  # progress=false


def write(tmp: Path, name: str, content) -> str:
    path = tmp / name
    if content == {"dir": True}:
        path.mkdir()
    elif isinstance(content, dict):
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
    # Issue 10: CSV files as people have them, broken in the ways people break them.
    ("twice.csv", "a,a,y\n1,2,0\n", "the header names column 'a' twice; rename one"),
    ("latin1.csv", "a,caf\xe9,y\n1,2,0\n".encode("latin-1"),
     "is not utf-8 text (byte 0xe9 at offset 5); give its encoding, e.g. data.encoding=latin-1"),
    ("huge.csv", "a,y\n" + "1" * 200_000 + ",0\n", "field larger than field limit (131072)"),
    ("na.csv", "a,b,y\n1,2,0\n1,NA,1\n", "line 3, column 'b': 'NA' is not a number"),
    ("hole.csv", "a,b,y\n1,2,0\n1,,1\n", "line 3, column 'b': is empty"),
    ("nolabel.csv", "a,b,y\n1,2,cat\n1,3,\n", "line 3, column 'y': is empty"),
    ("blank.csv", "\n\n  \n", "is empty; need a header row and data rows"),
    ("semiragged.csv", "a;b;y\n1;2;0\n1;2\n", "line 3 has 2 fields, the header 3 (fields "
     "separated by ';')"),
    ("quote.csv", 'a,b,y\n1,"2,0\n', "line 2 has 2 fields, the header 3"),
    ("words.csv", "a,b,y\n1,x,cat\n", "line 2, column 'b': 'x' is not a number"),
    ("wordsregression.csv", "a,y\n1,cat\n2,dog\n", "data.task=regression: the target 'y' "
     "holds words ('cat'…)"),
    ("dir.csv", {"dir": True}, "is a directory, not a data file"),
]  # fmt: skip


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
    extra = {"good.csv": ["data.task=foo"], "wordsregression.csv": ["data.task=regression"]}.get(
        name, [])  # fmt: skip
    summary = run_experiment(run_dir, "data=file", f"data.path={path}", "data.target=y",
                             "data.eval_fraction=0", "epochs=1", *extra)  # fmt: skip
    if not re.match(r"[\w.]+=", expected):
        expected = f"data.path={path}: {expected}"
    assert_one_line_failure(summary, run_dir, expected.format(path=path))


def test_the_matrix_is_big_enough():
    assert len(CONFIGS) + len(FILES) + len(FORMULAS) >= 120


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


TINY = [*IRIS, "epochs=4", "batch.size=16", "checkpoint_every=10"]


def checkpointed(tmp_path: Path) -> tuple[Path, list[Path]]:
    """A run stopped by a crash at step 25 with checkpoints at 10 and 20."""
    import gradexp.train

    real, calls = gradexp.train.step_row, [0]

    def step_row(*args):
        calls[0] += 1
        if calls[0] == 25:
            raise RuntimeError("injected crash")
        return real(*args)

    gradexp.train.step_row = step_row
    try:
        run_experiment(tmp_path / "run", *TINY)
    finally:
        gradexp.train.step_row = real
    from gradexp.durable.checkpoint import checkpoints

    return tmp_path / "run", checkpoints(tmp_path / "run" / "checkpoints")


def tamper(path: Path, change) -> None:
    import torch

    state = torch.load(path, weights_only=True)
    change(state)
    torch.save(state, path)


@pytest.mark.parametrize("how", ["fifo", "shapes", "fields", "position", "history"])
def test_a_tampered_checkpoint_is_passed_over_or_refused_in_one_line(tmp_path, how, caplog):
    run, (newest, _) = checkpointed(tmp_path)
    if how == "fifo":  # would block torch.load forever
        newest.unlink()
        os.mkfifo(newest)
    elif how == "shapes":
        tamper(
            newest, lambda s: s["model"].update({"layer1.weight": s["model"]["layer1.weight"][:2]})
        )
    elif how == "fields":
        tamper(newest, lambda s: s.pop("optimizer"))
    elif how == "position":
        tamper(newest, lambda s: s["position"].update({"bogus": 1}))
    else:
        tamper(newest, lambda s: s["history"].update({"interval": [[1.0, 2.0]]}))
    before = {p.name: p.stat().st_size for p in run.iterdir() if p.is_file()}
    s = run_experiment(run, *TINY, "resume=true")
    if how in ("fifo", "shapes", "fields"):  # passed over: the one before is used
        assert s["status"] == "ok" and s["resumed_from"]["step"] == 10, s
        assert f"checkpoint {newest}" in caplog.text
    else:  # it reads and fits, but its contents do not: refused, the logs untouched
        assert s["stop_reason"] == "config_error" and "\n" not in s["error"]
        assert s["error"].startswith(f"resume=true: checkpoint {newest} is damaged (")
        after = {p.name: p.stat().st_size for p in run.iterdir() if p.is_file()}
        assert {k: v for k, v in after.items() if k != "summary.json"} == {
            k: v for k, v in before.items() if k != "summary.json"}  # fmt: skip


DAMAGED = {
    "a list": ("summary.json", b"[1, 2]", "not a gradexp summary (a JSON list)"),
    "not json": ("summary.json", b"{oops", "not JSON ("),
    "binary": ("summary.json", b"\xff\xfe\x00", "not UTF-8 text"),
    "bad yaml": (".hydra/config.yaml", b"a: [1, 2\n", "not YAML ("),
    "fifo": ("summary.json", None, "not a regular file"),
}


@pytest.mark.parametrize("case", DAMAGED)
def test_a_damaged_run_dir_is_one_skipped_line_in_the_report(tmp_path, case, capsys):
    from gradexp.study import report

    for name in ("good", "bad"):
        run_experiment(tmp_path / "sweep" / name, *IRIS)
    file, content, expected = DAMAGED[case]
    target = tmp_path / "sweep" / "bad" / file
    target.parent.mkdir(parents=True, exist_ok=True)
    if content is None:
        target.unlink(missing_ok=True)
        os.mkfifo(target)
    else:
        target.write_bytes(content)
    (tmp_path / "sweep" / "good" / "metrics.jsonl").open("a").write('5\n"x"\n{"no": "step"}\n')
    assert report.main([str(tmp_path / "sweep"), "--no-figures"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"skipped {target}: {expected}"), err


@pytest.mark.slow
def test_hydras_own_errors_are_one_line_and_exit_2(tmp_path):
    cases = [
        (["optimizer=adamm"], "optimizer=adamm: no option 'adamm' in optimizer; choose one of "
         "adagrad, adam, adamw, momentum, nesterov, rmsprop, sgd; did you mean adam?"),
        (["optimizer.lrr=0.1"], "optimizer.lrr=0.1: no such key; did you mean optimizer.lr?"),
        (["lr=0.5"], "lr=0.5: no such key; did you mean optimizer.lr?"),
        (["+lr=0.5"], "lr=0.5: gradexp reads no such key"),
        (["batch.size=[1,2"], "batch.size=[1,2: Hydra cannot parse this override"),
        (["probes=[nope]"], "probes=[nope]: no option 'nope' in probes"),
        (["data=file"], "data.path=???: is required"),
    ]  # fmt: skip
    for args, line in cases:
        out = cli(*args, "max_steps=1", cwd=tmp_path)
        text = [x for x in (out.stdout + out.stderr).splitlines() if x.strip()]
        assert out.returncode == 2, (args, text)
        assert len(text) == 1 and text[0].startswith(f"gradexp: error: {line}"), (args, text)
    full = cli("optimizer=adamm", cwd=tmp_path, env={"HYDRA_FULL_ERROR": "1"})
    assert "Traceback" in full.stderr  # asked for Hydra's own report: it gets it
