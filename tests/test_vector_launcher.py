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
    vec = cli(
        *SWEEP,
        "hydra/launcher=vectorized",
        "hydra.sweep.dir=vec",
        "hydra.verbose=true",
        cwd=tmp_path,
    )  # verbose: the per-group lines on the console
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
    said = [x for x in out.stderr.splitlines() if "trained as one batched model" in x]
    assert said == ["gradexp: 2 jobs trained as one batched model (jobs 1, 2)",
                    "gradexp: 1 job trained as one batched model (job 3)"]  # fmt: skip
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


@pytest.mark.slow
def test_groups_submitted_as_submitit_tasks_give_the_in_process_sweep(tmp_path):
    """hydra/launcher=vectorized_slurm with cluster=local: each group one submitit task (a
    process of its own, as a SLURM array task would be), the same files as in-process."""
    small = ["-m", "data=iris", "model.hidden=[8]", "epochs=3", "optimizer=sgd,adam",
             "optimizer.lr=0.01,0.02", "seed=0,1"]  # fmt: skip
    here = cli(*small, "hydra/launcher=vectorized", "hydra.sweep.dir=here", cwd=tmp_path)
    out = cli(*small, "hydra/launcher=vectorized_slurm", "hydra.launcher.submitit.cluster=local",
              "hydra.sweep.dir=tasks", cwd=tmp_path)  # fmt: skip
    assert here.returncode == 0 and out.returncode == 0, out.stderr[-3000:]
    assert "2 groups submitted as local tasks" in out.stderr
    tasks = [d for d in (tmp_path / "tasks" / ".submitit").iterdir() if d.name.isdigit()]
    assert len(tasks) == 2 and all(list(d.glob("*_result.pkl")) for d in tasks)
    a, b = jobs_of(tmp_path / "here"), jobs_of(tmp_path / "tasks")
    assert sorted(a) == sorted(b) and len(a) == 8
    for name in a:
        x, y = (json.loads((d[name] / "summary.json").read_text()) for d in (a, b))
        assert x["vectorized"] == y["vectorized"] and x["vectorized"]["members"] == 4
        assert x["final"] == y["final"]  # the same group, the same process kind: bitwise
        assert [{k: v for k, v in m.items() if k != "time"} for m in metrics(a[name])] == [
            {k: v for k, v in m.items() if k != "time"} for m in metrics(b[name])
        ]
        assert (b[name] / "model.pt").is_file() and (b[name] / "gradexp.log").is_file()
    rows = list(csv.DictReader((tmp_path / "tasks" / "summary.csv").open()))
    assert len(rows) == 8 and {r["status"] for r in rows} == {"ok"}
    cases = [
        (["hydra.launcher.submitit.cluster=pbs"],
         "hydra.launcher.submitit.cluster=pbs: must be one of slurm, local"),
        (["+hydra.launcher.submitit.partitio=gpu"],
         "hydra.launcher.submitit.partitio=gpu: no such submitit setting; did you mean "
         "hydra.launcher.submitit.partition?"),
        (["hydra.launcher.submitit.partitio=gpu"],
         "hydra.launcher.submitit.partitio=gpu: no such key; did you mean "
         "hydra.launcher.submitit.partition?"),
    ]  # fmt: skip
    for i, (extra, line) in enumerate(cases):
        bad = cli(*small, "hydra/launcher=vectorized_slurm", *extra, f"hydra.sweep.dir=bad{i}",
                  cwd=tmp_path)  # fmt: skip
        text = [x for x in (bad.stdout + bad.stderr).splitlines() if x.strip()]
        assert bad.returncode == 2 and text[-1].startswith(f"gradexp: error: {line}"), text
        made = tmp_path / f"bad{i}"
        assert not made.exists() or not jobs_of(made)  # refused before any job dir


@pytest.mark.slow
def test_optuna_batches_of_trials_train_as_groups(tmp_path):
    """+hparams_search=optuna with n_jobs=8: each batch of trials is grouped (those that differ
    only in the lr form one model) and every trial's value is its job's own objective."""
    optuna = pytest.importorskip("optuna")
    out = cli("-m", "hydra/launcher=vectorized", "+hparams_search=optuna", "data=iris",
              "epochs=3", "hydra.sweeper.n_jobs=8", "hydra.sweeper.n_trials=16",
              "hydra.sweeper.storage=sqlite:///study.db", "hydra.sweep.dir=opt",
              cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    study = optuna.load_study(study_name="gradexp", storage=f"sqlite:///{tmp_path}/study.db")
    trials = sorted(study.trials, key=lambda t: t.number)
    jobs = {int(name.split("_")[0]): d for name, d in jobs_of(tmp_path / "opt").items()}
    assert len(trials) == 16 and sorted(jobs) == list(range(16))
    sizes = []
    for t in trials:
        summary = json.loads((jobs[t.number] / "summary.json").read_text())
        assert t.value == summary["objective"] and summary["status"] == "ok"
        assert f"optimizer.lr={t.params['optimizer.lr']}" in summary["overrides"]
        sizes.append(summary["vectorized"]["members"])
        same = [u for u in trials if u.number // 8 == t.number // 8
                and u.params["optimizer"] == t.params["optimizer"]]  # fmt: skip
        assert sizes[-1] == len(same)  # a batch's trials with one optimizer: one group
    assert max(sizes) > 1
    assert f"Best value: {study.best_value}" in out.stdout + out.stderr


@pytest.mark.parametrize("extra", [[], ["model=function", "model.expression='x**2+sin(y)'"],
    ["+a='1e-3'", "+b='true'", "+c='null'", "+d='ümlaut: x'", "+e=" + "word " * 60,
     "+f='#x'", "+g=[1,'2',null]"]])  # fmt: skip
def test_config_yaml_through_the_c_emitter_is_omegaconfs_text(extra):
    from gradexp.vector.jobs import to_yaml

    cfg = composed(extra, 0)
    task = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    assert to_yaml(task) == OmegaConf.to_yaml(task)
