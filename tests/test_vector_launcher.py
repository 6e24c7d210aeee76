"""hydra/launcher=vectorized: derived member configs equal composed ones, a vectorised sweep
gives what the sequential sweep gives (files, names, tags, tables), bad launcher input is one
line."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from conftest import CONF_DIR, cli, metrics, scalars
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf, open_dict

from gradexp import VERSION_BASE
from gradexp.models import MLP
from gradexp.vector.jobs import members, plan

SWEEPS = [
    ["optimizer=adam", "optimizer.lr=0.0001", "seed=0", "epochs=3"],
    ["optimizer=adam", "optimizer.lr=0.01", "seed=2", "epochs=3"],
    ["optimizer=adam", "optimizer.lr=0.03", "seed=1", "epochs=3", "optimizer.betas=[0.8,0.9]"],
    ["optimizer=momentum", "optimizer.lr=0.1", "optimizer.momentum=0.5", "schedule=step",
     "schedule.gamma=0.3", "l2=0.01"],
]  # fmt: skip


def composed(overrides: list[str], idx: int):
    with initialize_config_dir(config_dir=str(CONF_DIR), **VERSION_BASE):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.job.num = cfg.hydra.job.id = idx
    return cfg


def comparable(cfg) -> dict:
    out = OmegaConf.to_container(cfg, resolve=False)
    out["hydra"].pop("runtime")  # output_dir, cwd: where it runs, not what
    return out


@pytest.mark.parametrize("overrides", SWEEPS, ids=lambda o: " ".join(o))
def test_a_derived_member_config_is_the_composed_one(overrides):
    other = [o.replace("seed=0", "seed=5").replace("0.0001", "0.3").replace("0.5", "0.9")
             .replace("0.3", "0.7").replace("0.01", "0.02") for o in overrides]  # fmt: skip
    base = composed(overrides, 0)
    first, mine = members(base, [overrides, other], [0, 1])
    theirs = composed(other, 1)
    expected = comparable(theirs)
    assert OmegaConf.to_container(mine.task, resolve=False) == {
        k: v for k, v in expected.items() if k != "hydra"}  # fmt: skip
    assert {k: v for k, v in mine.hydra.items() if k != "runtime"} == expected["hydra"]
    assert mine.hydra["runtime"]["choices"] == expected["hydra"]["runtime"]["choices"] if (
        "runtime" in expected["hydra"]) else True  # fmt: skip
    assert str(mine.output_dir).endswith(f"1_{theirs.hydra.job.override_dirname}")
    assert first.task.optimizer.lr == base.optimizer.lr


def test_jobs_group_by_everything_but_member_keys():
    jobs = [["optimizer=adam", "optimizer.lr=0.1", "seed=0"],
            ["optimizer=adam", "optimizer.lr=0.2", "seed=1"],
            ["optimizer=sgd", "optimizer.lr=0.1", "seed=0"],
            ["optimizer=adam", "optimizer.lr=0.1", "seed=0", "batch=full"],
            ["optimizer=adam", "optimizer.lr=0.3", "seed=4"]]  # fmt: skip
    assert plan(jobs) == [[0, 1, 4], [2], [3]]


SWEEP = ["-m", "data=iris", "model.hidden=[8]", "optimizer=adam,momentum",
         "optimizer.lr=0.003,0.03", "seed=0,1", "epochs=4", "batch.size=16", "log_every=3",
         "dtype=float64"]  # fmt: skip


def jobs_of(sweep):
    return {d.name: d for d in sweep.iterdir() if (d / ".hydra").is_dir()}


@pytest.mark.slow
def test_a_vectorised_sweep_gives_what_the_sequential_sweep_gives(tmp_path):
    seq = cli(*SWEEP, "hydra.sweep.dir=seq", cwd=tmp_path)
    vec = cli(*SWEEP, "hydra/launcher=vectorized", "hydra.sweep.dir=vec", cwd=tmp_path)
    assert seq.returncode == 0 and vec.returncode == 0, vec.stderr[-3000:]
    assert "4 members as one model" in vec.stderr and vec.stderr.count("as one model") == 2
    a, b = jobs_of(tmp_path / "seq"), jobs_of(tmp_path / "vec")
    assert sorted(a) == sorted(b) and len(a) == 8  # the same job dirs, named the same
    for name in a:
        x, y = (json.loads((d[name] / "summary.json").read_text()) for d in (a, b))
        assert set(y) - set(x) == {"vectorized"} and set(x) - set(y) == set()
        assert (x["status"], x["steps"], x["message"]) == (y["status"], y["steps"], y["message"])
        for key, value in x["final"].items():
            assert y["final"][key] == pytest.approx(value, rel=1e-10)
        rows = [[{k: v for k, v in m.items() if k != "time"} for m in metrics(d[name])]
                for d in (a, b)]  # fmt: skip
        assert [r.keys() for r in rows[0]] == [r.keys() for r in rows[1]]
        assert set(scalars(a[name])) == set(scalars(b[name]))  # the same tags in TensorBoard
        for ra, rb in zip(*rows):
            for k, v in ra.items():
                assert rb[k] == pytest.approx(v, rel=1e-10, abs=1e-300), (name, k)
        for f in ("config.yaml", "overrides.yaml"):
            assert (a[name] / ".hydra" / f).read_text() == (b[name] / ".hydra" / f).read_text()
        model = MLP(4, 3, hidden=[8]).double()
        model.load_state_dict(torch.load(b[name] / "model.pt", weights_only=True))
    tables = [list(csv.DictReader((tmp_path / s / "summary.csv").open())) for s in ("seq", "vec")]
    for ra, rb in zip(*tables):
        assert (ra["job"], ra["status"], ra["steps"]) == (rb["job"], rb["status"], rb["steps"])
        assert float(rb["eval_loss"]) == pytest.approx(float(ra["eval_loss"]), rel=1e-9)
    reports = []
    for s in ("seq", "vec"):
        out = cli_report(tmp_path / s)
        reports.append([{k: v for k, v in r.items() if not k.startswith("wall")} for r in out])
    for ra, rb in zip(*reports):
        for k, v in ra.items():
            assert v == rb[k] or float(rb[k]) == pytest.approx(float(v), rel=1e-9), k


def cli_report(sweep):
    from gradexp.study import report

    assert report.main([str(sweep), "--no-figures"]) == 0
    return list(csv.DictReader((sweep / "report" / "report.csv").open()))


@pytest.mark.slow
def test_max_members_splits_groups_and_bad_launcher_input_is_one_line(tmp_path):
    small = ["-m", "data=iris", "optimizer.lr=0.01,0.02,0.03", "epochs=1",
             "hydra/launcher=vectorized"]  # fmt: skip
    out = cli(*small, "hydra.launcher.max_members=2", "hydra.sweep.dir=split", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    sizes = sorted(json.loads(d.joinpath("summary.json").read_text())["vectorized"]["members"]
                   for d in jobs_of(tmp_path / "split").values())  # fmt: skip
    assert sizes == [1, 2, 2]
    cases = [
        (["hydra.launcher.max_members=0"], "hydra.launcher.max_members=0: must be an integer ≥ 1"),
        (["hydra.launcher.maxmembers=4"], "hydra.launcher.maxmembers=4: no such key; did you "
         "mean hydra.launcher.max_members?"),
    ]  # fmt: skip
    for extra, line in cases:
        bad = cli(*small, *extra, f"hydra.sweep.dir={len(extra)}", cwd=tmp_path)
        text = [x for x in (bad.stdout + bad.stderr).splitlines() if x.strip()]
        assert bad.returncode == 2 and text[-1].startswith(f"gradexp: error: {line}"), text
    single = cli("data=iris", "hydra/launcher=vectorized", cwd=tmp_path)
    assert single.returncode == 2
    assert single.stderr.strip() == ("gradexp: error: hydra/launcher=vectorized: trains the jobs "
                                     "of a sweep as one model; add -m (a single run has no "
                                     "launcher to vectorise)")  # fmt: skip
