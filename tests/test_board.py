"""The dashboard through TensorBoard's HTTP data API: a real 4-job sweep served by board."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tbkit
import yaml
from conftest import metrics

pytestmark = pytest.mark.slow


def test_runs_are_the_sweep_jobs_and_nothing_else(board, sweep):
    runs = tbkit.get(board.url, "data/runs")  # "." is the sweep root: its HParams experiment
    assert sorted(runs) == [".", *(d.name for d in tbkit.jobs(sweep))]
    runs = sorted(r for r in runs if r != ".")
    assert runs[0] == "0_optimizer=sgd,lr=0.1"  # named by what the sweep varies, in its order


def test_every_tag_and_value_equals_metrics_jsonl(board, sweep):
    tags = tbkit.get(board.url, "data/plugin/scalars/tags")
    for job in tbkit.jobs(sweep):
        expected = tbkit.expected_scalars(job)
        assert set(tags[job.name]) == set(expected)
        for tag, points in expected.items():
            served = tbkit.get(board.url, "data/plugin/scalars/scalars", run=job.name, tag=tag)
            assert [(s, v) for _, s, v in served] == points, (job.name, tag)
        # Wall times: the run's start plus metrics.jsonl's elapsed seconds.
        served = tbkit.get(board.url, "data/plugin/scalars/scalars", run=job.name, tag="train/loss")
        elapsed = [m["time"] for m in metrics(job) if "train/loss" in m]
        assert np.allclose(np.diff([w for w, _, _ in served]), np.diff(elapsed), atol=1e-5)


def test_hparams_experiment_describes_the_sweep(board):
    experiment = tbkit.post(board.url, "data/plugin/hparams/experiment", {"experimentName": ""})
    infos = {h["name"]: h for h in experiment["hparamInfos"]}
    assert infos["optimizer"]["type"] == "DATA_TYPE_STRING"
    assert sorted(infos["optimizer"]["domainDiscrete"]) == ["adam", "sgd"]
    assert infos["optimizer.lr"]["type"] == "DATA_TYPE_FLOAT64"  # a number, not the string "0.1"
    assert infos["optimizer.lr"]["domainInterval"] == {"minValue": 0.01, "maxValue": 0.1}
    differs = [h["name"] for h in experiment["hparamInfos"] if h["differs"]]
    assert sorted(differs) == ["optimizer", "optimizer.lr"]
    assert infos["data"]["domainDiscrete"] == ["iris"] and not infos["data"]["differs"]
    metric_tags = [m["name"]["tag"] for m in experiment["metricInfos"]]
    assert metric_tags[:3] == ["eval/loss", "eval/accuracy", "train/loss"]  # the sweep root's
    assert {"train/loss", "eval/loss", "eval/accuracy", "grad/norm"} <= set(metric_tags)


def test_one_session_per_job_with_its_overrides_and_final_metrics(board, sweep):
    body = {
        "experimentName": "",
        "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"],
        "colParams": [{"metric": {"tag": t, "group": ""}} for t in ("train/loss", "eval/loss")],
        "startIndex": 0,
        "sliceSize": 100,
    }
    groups = tbkit.post(board.url, "data/plugin/hparams/session_groups", body)
    assert groups["totalSize"] == 4
    by_name = {g["name"]: g for g in groups["sessionGroups"]}
    for job in tbkit.jobs(sweep):
        group = by_name[job.name]  # one session per job, named by the job's own run
        assert [s["name"] for s in group["sessions"]] == [job.name]
        assert group["sessions"][0]["status"] == "STATUS_SUCCESS"
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
        for item in overrides:
            key, _, value = item.partition("=")
            want = yaml.safe_load(value)  # integers are categories in the tab: their digits
            want = str(want) if isinstance(want, int) and not key.startswith("optimizer.") else want
            assert group["hparams"][key] == want, key
        assert group["hparams"]["model"] == "mlp" and group["hparams"]["batch.size"] == "64"
        last = {tag: points[-1][1] for tag, points in tbkit.expected_scalars(job).items()}
        values = {m["name"]["tag"]: m["value"] for m in group["metricValues"]}
        for tag in ("train/loss", "eval/loss"):
            assert math.isclose(values[tag], last[tag], rel_tol=1e-7), (job.name, tag)


def test_custom_scalar_layout_merges_the_runs_charts(board):
    layout = tbkit.get(board.url, "data/plugin/custom_scalars/layout")
    charts = {c["title"]: [ch["title"] for ch in c["chart"]] for c in layout["category"]}
    assert list(charts)[:3] == ["loss", "gradients", "optimizer"]
    assert charts["loss"][:2] == [
        "train and eval loss (x = step)",
        "train loss: interval mean within its min/max",
    ]
    assert "gradient norm ‖∇J‖, global and per layer" in charts["gradients"]
    assert "learning rate η" in charts["optimizer"]
    assert not {"curvature", "taylor", "function gradients"} & set(charts)  # no probe ran
    for titles in charts.values():
        assert len(titles) == len(set(titles))  # 4 runs' layouts merged, not repeated


def test_custom_scalar_chart_regexes_select_their_tags(board, sweep):
    run = tbkit.jobs(sweep)[0].name
    route = "data/plugin/custom_scalars/scalars"
    loss = tbkit.get(board.url, route, run=run, tag="train/loss$")["tag_to_events"]
    assert list(loss) == ["train/loss"]  # not train/loss_min or _max
    grads = tbkit.get(board.url, route, run=run, tag="grad_norm/.*")["tag_to_events"]
    assert sorted(grads) == [f"grad_norm/layer{i}.{p}" for i in (1, 2) for p in ("bias", "weight")]
