"""Every launcher and sweeper runs a small sweep (SLURM: .ci/slurm.sh, which needs root)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from conftest import cli, make_cfg
from omegaconf import OmegaConf

from gradexp.study import report

TINY = ("data=iris", "batch=full", "epochs=3", "progress=false")


def jobs(sweep: Path) -> dict[str, dict]:
    """{job dir name: summary} for every job that wrote one."""
    return {f.parent.name: json.loads(f.read_text()) for f in sweep.glob("*/summary.json")}


def composed(job: Path) -> dict:
    return yaml.safe_load((job / ".hydra" / "config.yaml").read_text())


@pytest.mark.slow
def test_basic_launcher_seeds_and_report(tmp_path, capsys):
    """seed=range(3) × 2 optimizers in one process; each job gets its own composed config (the
    sweeper hands each job the config it composed while checking the batch); the report then
    aggregates the seeds into one row per optimizer."""
    sweep = tmp_path / "sweep"
    r = cli("-m", "seed=range(3)", "optimizer=sgd,adam", *TINY, f"hydra.sweep.dir={sweep}",
            cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    found = jobs(sweep)
    assert len(found) == 6 and all(s["status"] == "ok" for s in found.values())
    for name in found:
        cfg, overrides = composed(sweep / name), found[name]["overrides"]
        assert f"seed={cfg['seed']}" in overrides
        assert cfg["optimizer"]["_target_"].endswith("Adam" if "optimizer=adam" in overrides
                                                      else "SGD")  # fmt: skip
    runs = {
        json.dumps(json.loads((sweep / n / "summary.json").read_text())["final"]) for n in found
    }
    assert len(runs) == 6  # six different runs, not one config six times
    assert report.main([str(sweep)]) == 0
    assert "6 runs in 2 configurations" in capsys.readouterr().out
    assert (sweep / "report" / "report.csv").is_file()
    assert (sweep / "report" / "lr_sensitivity.png").is_file()


@pytest.mark.slow
def test_joblib_launcher(tmp_path):
    sweep = tmp_path / "sweep"
    r = cli("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "optimizer=sgd,adam", *TINY,
            f"hydra.sweep.dir={sweep}", cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "Joblib.Parallel(n_jobs=2" in r.stderr + r.stdout
    found = jobs(sweep)
    assert len(found) == 2 and all(s["status"] == "ok" for s in found.values())


@pytest.mark.slow
def test_submitit_local_launcher(tmp_path):
    sweep = tmp_path / "sweep"
    r = cli("-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5",
            "optimizer=sgd,adam", *TINY, f"hydra.sweep.dir={sweep}", cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert len(jobs(sweep)) == 2
    assert len(list((sweep / ".submitit").glob("*/*_result.pkl"))) == 2  # ran as submitit jobs


def test_slurm_preset_composes():
    cfg, _ = make_cfg("hydra/launcher=slurm", "hydra.launcher.partition=gpu")
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.partition, launcher.mem_gb, launcher.cpus_per_task) == ("gpu", 4, 2)
    assert launcher.submitit_folder.endswith(".submitit/%j")


def optuna_sweep(tmp_path: Path, name: str, *extra: str):
    sweep = tmp_path / name
    r = cli("-m", "+hparams_search=optuna", "hydra.sweeper.n_trials=3", *TINY,
            f"hydra.sweep.dir={sweep}", *extra, cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    return sweep, results


@pytest.mark.slow
def test_optuna_in_memory(tmp_path):
    """TPE over lr and optimizer; the best value it reports is the lowest final eval loss."""
    sweep, results = optuna_sweep(tmp_path, "search")
    found = jobs(sweep)
    assert len(found) == 3
    objectives = [s["objective"] for s in found.values()]
    assert results["best_value"] == pytest.approx(min(objectives))
    assert set(results["best_params"]) == {"optimizer.lr", "optimizer"}
    for name, s in found.items():
        lr = composed(sweep / name)["optimizer"]["lr"]
        assert 1e-4 <= lr <= 1.0
        assert s["objective"] == s["final"]["eval/loss"] or not math.isfinite(s["objective"])


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Deprecated API features detected")  # optuna 2.10, SQLA 1.4
def test_optuna_sqlite_resumes(tmp_path):
    """A stopped search started again with the same storage and study name continues the study:
    the second run adds trials to the first's, and its best is the best of all of them."""
    import optuna

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    extra = (f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=resume",
             "hydra.sweeper.n_trials=2")  # fmt: skip
    first, _ = optuna_sweep(tmp_path, "first", *extra)
    second, results = optuna_sweep(tmp_path, "second", *extra)
    study = optuna.load_study(study_name="resume", storage=storage)
    assert len(study.trials) == 4
    objectives = [s["objective"] for d in (first, second) for s in jobs(d).values()]
    assert sorted(t.value for t in study.trials) == pytest.approx(sorted(objectives))
    assert results["best_value"] == pytest.approx(min(objectives))


def test_launcher_composes_each_job_once():
    """Hydra's own check of a batch (Sweeper.validate_batch_is_legal) composes through the
    launcher's loader, which hands each checked config to the launch: one composition per job."""
    from types import SimpleNamespace

    from hydra.plugins.sweeper import Sweeper

    from hydra_plugins.gradexp_launchers.inprocess import ComposedOnce, compose_job

    class Loader:  # counts compositions; returns a fresh config per call
        calls = 0

        def load_sweep_config(self, master_config, sweep_overrides):
            Loader.calls += 1
            return OmegaConf.create({"hydra": {"job": {}}, "overrides": list(sweep_overrides)})

    master = OmegaConf.create({})
    context = SimpleNamespace(config_loader=ComposedOnce(Loader(), keep=256))
    batch = [["optimizer=sgd"], ["optimizer=adam"]]
    Sweeper.validate_batch_is_legal(SimpleNamespace(hydra_context=context, config=master), batch)
    got = [compose_job(context, master, o, i) for i, o in enumerate(batch)]
    assert Loader.calls == 2
    assert [list(g.overrides) for g in got] == batch and [g.hydra.job.num for g in got] == [0, 1]
    assert compose_job(context, master, ["optimizer=sgd"], 2) is not got[0]  # taken once only
    assert Loader.calls == 3
    context.config_loader = ComposedOnce(Loader(), keep=1)  # beyond `keep`: composed again
    Sweeper.validate_batch_is_legal(SimpleNamespace(hydra_context=context, config=master), batch)
    [compose_job(context, master, o, i) for i, o in enumerate(batch)]
    assert Loader.calls == 3 + 3


def test_the_launcher_is_found_by_hydras_plugin_scan_and_is_the_default():
    from hydra.core.plugins import Plugins

    from hydra_plugins.gradexp_launchers.inprocess import InProcessLauncher

    name = "hydra_plugins.gradexp_launchers.inprocess.InProcessLauncher"
    assert Plugins.instance().class_name_to_class[name] is InProcessLauncher
    cfg, _ = make_cfg()
    assert cfg.hydra.launcher._target_ == name


def test_job_lines_say_the_status_the_loss_and_the_time_left():
    from gradexp.study.lines import job_line

    ok = {"status": "ok", "final": {"eval/loss": 0.0812345, "train/loss": 0.5}, "wall_time_s": 2.14}
    assert job_line(ok, 7, 32, 40.4) == "job 7/32 ok · eval loss 0.08123 · 2.1 s · ETA 40 s"
    no_eval = {"status": "diverged", "final": {"train/loss": float("nan")}, "wall_time_s": 0.5}
    assert job_line(no_eval, 3, None, None) == "job 3 diverged · train loss nan · 0.5 s"
    bad = {"status": "failed", "error": "optimizer.lr=-1: must be a number > 0"}
    assert job_line(bad, 32, 32, 0.0) == "job 32/32 failed · optimizer.lr=-1: must be a number > 0"
    assert job_line({}, 1, 2, 1.0) == "job 1/2 failed · ETA 1 s"  # no summary.json: it died


@pytest.mark.parametrize("launcher", ["gradexp", "vectorized"])
def test_a_sweep_prints_one_line_per_job_and_chatter_only_when_verbose(tmp_path, launcher):
    grid = ["-m", "data=iris", "epochs=2", "optimizer.lr=0.01,0.1", "progress=false",
            f"hydra/launcher={launcher}"]  # fmt: skip
    out = cli(*grid, "hydra.sweep.dir=quiet", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = [x for x in out.stderr.splitlines() if x.startswith("job ")]
    assert [x.split(" · ")[0] for x in lines] == ["job 1/2 ok", "job 2/2 ok"]
    for x, job in zip(lines, ("0_", "1_")):
        run = next((tmp_path / "quiet").glob(f"{job}*"))
        loss = json.loads((run / "summary.json").read_text())["final"]["eval/loss"]
        assert f"eval loss {loss:.4g}" in x
        assert "gradexp: ok" in (run / "gradexp.log").read_text()  # the job's own log keeps it
    assert "gradexp: iris" not in out.stderr and "gradexp: ok" not in out.stderr
    loud = cli(*grid, "hydra.sweep.dir=loud", "hydra.verbose=true", cwd=tmp_path)
    assert loud.returncode == 0 and loud.stderr.count("gradexp: ok") == 2, loud.stderr
