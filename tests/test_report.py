"""gradexp.report: numbers against the runs' own summaries and numpy, figures read back."""

from __future__ import annotations

import csv
import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest
from conftest import metrics, run_experiment

from gradexp.study import figures, report, runs, sensitivity

SEEDS = (0, 1, 2)
GRID = [("sgd", 0.3), ("sgd", 0.03), ("adam", 0.01)]
COMMON = (
    "data=iris",
    "batch=full",
    "epochs=6",
    "log_every=2",
)  # every job's, so part of every config key


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """A sweep laid out as Hydra lays it out: 4 settings × 3 seeds, one diverging setting, one
    failed run, and one job still running (no summary yet)."""
    root = tmp_path_factory.mktemp("sweep")
    jobs = [[f"optimizer={o}", f"optimizer.lr={lr}", f"seed={s}"] for o, lr in GRID for s in SEEDS]
    jobs += [["optimizer=sgd", "optimizer.lr=1e6", f"seed={s}"] for s in SEEDS[:2]]  # diverges
    jobs += [["optimizer=sgd", "optimizer.lr=0.3", "seed=3", "data.eval_fraction=0.95"]]  # fails
    for num, overrides in enumerate(jobs):
        run_dir = root / f"{num}_{','.join(overrides)}"
        run_experiment(run_dir, *overrides, *COMMON)
    (root / "99_running" / ".hydra").mkdir(parents=True)
    return root


def load(sweep: Path) -> list[runs.Run]:
    found, _ = runs.find([sweep])
    return [r for r in map(runs.load, found) if r is not None]


def summaries(sweep: Path) -> list[dict]:
    return [json.loads(f.read_text()) for f in sweep.glob("*/summary.json")]


def test_report_csv_equals_summaries_and_numpy(sweep, capsys):
    assert report.main([str(sweep), "--no-figures"]) == 0
    out = capsys.readouterr()
    assert "skipped" in out.err and "99_running" in out.err and "still running" in out.err
    rows = list(csv.DictReader((sweep / "report" / "report.csv").open()))
    assert len(rows) == len(GRID) + 2
    by_config = {r["config"]: r for r in rows}
    for optimizer, lr in GRID:
        row = by_config[",".join([f"optimizer={optimizer}", f"optimizer.lr={lr}", *COMMON])]
        head = [f"optimizer={optimizer}", f"optimizer.lr={lr}"]
        mine = [s for s in summaries(sweep) if s["status"] == "ok" and s["overrides"][:2] == head]
        assert len(mine) == len(SEEDS) == int(row["runs"]) == int(row["ok"])
        assert float(row["lr"]) == lr and row["optimizer"] == optimizer
        for name, section, key in [("eval_loss", "final", "eval/loss"),
                                   ("best_train_loss", "best", "train/loss"),
                                   ("eval_accuracy", "final", "eval/accuracy")]:  # fmt: skip
            v = np.array([s[section][key] for s in mine])
            assert float(row[f"{name}_mean"]) == pytest.approx(np.mean(v), rel=1e-12)
            assert float(row[f"{name}_std"]) == pytest.approx(np.std(v, ddof=1), rel=1e-12)
        wall = np.array([s["wall_time_s"] for s in mine])
        assert float(row["wall_time_s_mean"]) == pytest.approx(wall.mean(), rel=1e-12)
        assert float(row["steps_mean"]) == 6 and float(row["steps_std"]) == 0
    diverged = by_config[",".join(["optimizer=sgd", "optimizer.lr=1e6", *COMMON])]
    assert (diverged["ok"], diverged["diverged"], diverged["failed"]) == ("0", "2", "0")
    failed = [r for r in rows if r["failed"] == "1"]
    assert len(failed) == 1 and "data.eval_fraction=0.95" in failed[0]["config"]
    assert math.isnan(float(failed[0]["eval_loss_mean"]))  # a failed run has no loss to average


def test_sort_by_metric(sweep, capsys):
    configs = report.group(load(sweep))
    losses = [c.mean_std("eval_loss")[0] for c in report.sort(configs, "eval_loss")]
    finite = [x for x in losses if math.isfinite(x)]
    assert finite == sorted(finite) and losses.index(finite[-1]) < len(finite)  # inf/nan last
    acc = [c.mean_std("eval_accuracy")[0] for c in report.sort(configs, "eval_accuracy")]
    acc = [a for a in acc if not math.isnan(a)]
    assert acc == sorted(acc, reverse=True)  # accuracy: highest first
    report.main([str(sweep), "--no-figures", "--sort", "eval_accuracy"])
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("config") and "sorted by eval_accuracy" in "\n".join(table)


def test_loss_band_is_the_mean_over_seeds(sweep):
    config = next(
        c
        for c in report.group(load(sweep))
        if c.key.startswith("optimizer=adam,optimizer.lr=0.01,")
    )
    xs, mean, low, high = figures.band(config, "train/loss")
    per_seed = []
    for run in config.runs:  # independently: conftest's reader, one value per logged step
        points = {}
        for m in metrics(run.path):
            if "epoch" not in m and "train/loss" in m:
                points[m["step"]] = m["train/loss"]
        per_seed.append([points[s] for s in xs])
    np.testing.assert_allclose(mean, np.mean(per_seed, 0), rtol=1e-12)
    np.testing.assert_allclose(low, np.min(per_seed, 0), rtol=1e-12)
    np.testing.assert_allclose(high, np.max(per_seed, 0), rtol=1e-12)
    assert list(xs) == [0, 2, 4, 6]  # the initial loss, then log_every=2 over 6 full-batch steps
    xs_epoch = figures.band(config, "train/loss", "epoch")[0]
    np.testing.assert_allclose(xs_epoch, [0, 2, 4, 6])  # full batch: one step per epoch


def test_figures_axes_and_lines(sweep):
    configs = report.group(load(sweep))
    plotted = [c for c in configs if any(r.status != "failed" for r in c.runs)]
    for x in ("step", "epoch", "examples", "time"):
        fig = figures.loss_figure(configs, x)
        train, held = fig.axes
        assert train.get_title() == "train/loss" and held.get_title() == "eval/loss"
        assert train.get_xlabel() == figures.X_LABELS[x] and train.get_ylabel()
        # One line per configuration that has points (the failed run has none).
        assert len(train.get_lines()) == len(plotted)
        assert train.get_yscale() == "log"
        assert fig.legends and len(fig.legends[0].get_texts()) == len(plotted)
        for line in train.get_lines():  # every curve starts at step 0 (0 epochs, 0 examples)
            assert line.get_xdata()[0] == 0
    starts = sorted(  # the initial loss J(θ₀), read from metrics.jsonl: the mean over seeds
        np.mean([metrics(r.path)[0]["train/loss"] for r in c.runs if r.points]) for c in plotted
    )
    drawn = figures.loss_figure(configs, "step").axes[0].get_lines()
    assert sorted(line.get_ydata()[0] for line in drawn) == pytest.approx(starts, rel=1e-12)
    assert all(metrics(r.path)[0]["step"] == 0 for c in plotted for r in c.runs if r.points)
    grad = figures.grad_norm_figure(configs)
    assert grad.axes[0].get_title() == "grad/norm" and len(grad.axes[0].get_lines()) == len(plotted)
    lr = sensitivity.lr_figure(configs)
    ax = lr.axes[0]
    assert ax.get_xscale() == "log" and "learning rate" in ax.get_xlabel()
    labels = sorted(t.get_text() for t in lr.legends[0].get_texts())
    assert labels == ["optimizer=adam", "optimizer=sgd"]  # one line per optimizer
    assert len(ax.collections) >= 1  # × markers for the diverged lr=1e6


def test_probe_groups_get_figures(sweep):
    configs = report.group(load(sweep))
    groups = figures.tag_groups(configs)
    assert set(groups) == {"grad_norm", "param", "update"}
    fig = figures.group_figure(configs, "update", groups["update"])
    assert [a.get_title() for a in fig.axes] == groups["update"]


def test_pngs_written(sweep, capsys):
    out = sweep.parent / "out"
    assert report.main([str(sweep / "nothing-here"), "--out", str(out)]) == 1
    assert "not a directory" in capsys.readouterr().err
    assert report.main([str(sweep), "--out", str(out)]) == 0
    names = {p.name for p in out.glob("*.png")}
    expected = {f"loss_vs_{x}.png" for x in figures.X_LABELS} | {"grad_norm.png",
                                                                  "lr_sensitivity.png"}  # fmt: skip
    assert expected <= names and "tags_update.png" in names
    for name in names:
        head = (out / name).read_bytes()[:24]
        assert head[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", head[16:24])
        assert width > 600 and height > 400


def test_run_dirs_given_one_by_one(sweep, capsys):
    """Run dirs instead of a sweep dir: the report goes beside them, in their common parent."""
    two = sorted(d for d in sweep.iterdir() if d.name.startswith(("0_", "1_")))
    (sweep / "report" / "report.csv").unlink(missing_ok=True)
    assert report.main([str(d) for d in two] + ["--no-figures"]) == 0
    assert "2 runs in 1 configurations" in capsys.readouterr().out
    rows = list(csv.DictReader((sweep / "report" / "report.csv").open()))
    assert [int(rows[0]["runs"])] == [2]


def synthetic(key: str, points: list[dict]) -> runs.Run:
    return runs.Run(Path(key), {"status": "ok", "overrides": [key]}, {}, points)


def test_sharpness_and_its_threshold_share_a_panel_and_eval_points_are_marked():
    from gradexp.study.configs import group

    pts = [{"step": s, "curvature/sharpness": 0.5 + 0.1 * s, "curvature/threshold": 2.0,
            "train/loss": 1.0 / s, "eval/loss": 1.5 / s} for s in range(1, 6)]  # fmt: skip
    configs = group([synthetic("optimizer.lr=1", pts)])
    fig = figures.group_figure(configs, "curvature", ["curvature/sharpness", "curvature/threshold"])
    assert len(fig.axes) == 1  # one panel, not two
    (ax,) = fig.axes
    dashed = [ln for ln in ax.get_lines() if ln.get_gid() == "curvature/threshold"]
    assert len(dashed) == 1 and list(dashed[0].get_ydata()) == [2.0] * 5
    assert dashed[0].get_linestyle() == "--"
    solid = [ln for ln in ax.get_lines() if ln.get_gid() is None]
    assert list(solid[0].get_ydata()) == pytest.approx([0.6, 0.7, 0.8, 0.9, 1.0])
    loss = figures.loss_figure(configs)
    train, held_out = loss.axes
    assert held_out.get_lines()[0].get_marker() == "o"  # each evaluation a point
    assert train.get_lines()[0].get_marker() in (None, "None", "")


def test_one_pathological_member_does_not_flatten_the_noise_axes():
    from gradexp.study.configs import group

    calm = [synthetic(f"optimizer.lr={i}", [{"step": s, "noise/noise_scale": 10.0 + i + 0.1 * s}
                                    for s in range(1, 21)]) for i in range(3)]  # fmt: skip
    wild = synthetic("optimizer.lr=9", [{"step": s, "noise/noise_scale": 1e12 if s == 7 else 12.0}
                                for s in range(1, 21)])  # fmt: skip
    fig = figures.group_figure(group([*calm, wild]), "noise", ["noise/noise_scale"])
    low, high = fig.axes[0].get_ylim()
    assert high < 1e3 and low > 1  # the calm members fill the panel
    assert max(max(ln.get_ydata()) for ln in fig.axes[0].get_lines()) == 1e12  # still drawn


def test_a_step_axis_from_0_is_symlog_and_keeps_step_0_in_view():
    from matplotlib.figure import Figure

    from gradexp.study.plot import scale

    for xs, want in (([0, 1, 10, 1000], "symlog"), ([1, 10, 1000], "log"), ([0, 5, 10], "linear")):
        ax = Figure().subplots()
        ax.plot(xs, [1.0] * len(xs))
        scale(ax, "x")
        assert ax.get_xscale() == want, xs
        if want == "symlog":
            ax.figure.canvas.draw()
            assert ax.get_xlim()[0] == 0 < ax.get_xlim()[1]


def test_configs_read_by_libyaml_are_pyyamls(sweep, tmp_path):
    """A job's .hydra/config.yaml (as Hydra writes it: OmegaConf.to_yaml) read through
    libyaml's parser (runs.SAFE_LOADER) is what PyYAML's own safe loader reads."""
    import shutil

    import yaml
    from conftest import make_cfg
    from omegaconf import OmegaConf

    assert runs.SAFE_LOADER is getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    for i, overrides in enumerate([["optimizer=adam", "+loss.label_smoothing=0.1"],
                                   ["model.hidden=[]", "data=blobs", "seed=7"]]):  # fmt: skip
        run_dir = tmp_path / str(i)
        shutil.copytree(next(p for p in sweep.iterdir() if (p / "summary.json").exists()), run_dir)
        text = OmegaConf.to_yaml(make_cfg(*overrides)[0])
        (run_dir / ".hydra").mkdir()
        (run_dir / ".hydra" / "config.yaml").write_text(text)
        config = runs.load(run_dir).config
        assert config == yaml.safe_load(text) and config["seed"] == (7 if i else 0)
