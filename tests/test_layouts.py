"""Custom-scalar layouts and HParams sessions, as written into a run's event file."""

from __future__ import annotations

import json
import re
from pathlib import Path

from conftest import cli, metrics, run_experiment
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.custom_scalar import metadata as cs_metadata
from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2
from tensorboard.plugins.hparams import metadata as hp_metadata

from gradexp.record import layouts

PROBES = ["curvature/sharpness", "curvature/threshold", "noise/scale", "noise/snr",
          "gradcheck/max_rel_error", "taylor/actual", "taylor/first_order",
          "taylor/second_order", "function/grad_autograd/x", "function/grad_symbolic/x",
          "function/grad_fd/x", "function/grad_autograd/w[0]", "function/grad_fd/w[0]"]  # fmt: skip
# In Time Series only (final/*: one point each, at the last step, summarised in summary.json).
UNCHARTED = {"train/epoch", "train/examples", "epoch/eval_accuracy", "final/train_loss",
             "final/train_accuracy", "final/train_l2"}  # fmt: skip


def charts(layout: layout_pb2.Layout) -> dict[str, dict[str, layout_pb2.Chart]]:
    return {c.title: {ch.title: ch for ch in c.chart} for c in layout.category}


def matched(chart: layout_pb2.Chart, tags) -> set[str]:
    """The tags TensorBoard draws in a chart: its regexes match from the start (re.match)."""
    if chart.HasField("margin"):
        s = chart.margin.series[0]
        return {s.value, s.lower, s.upper} & set(tags)
    return {t for t in tags for p in chart.multiline.tag if re.match(p, t)}


def test_a_category_appears_only_when_its_tags_exist():
    assert list(charts(layouts.build(["train/loss"]))) == ["loss"]
    assert [c.title for c in layouts.build([]).category] == []
    with_probes = charts(layouts.build(["train/loss", "grad/norm", *PROBES]))
    assert list(with_probes) == ["loss", "gradients", "curvature", "gradient noise",
                                 "gradient checks", "taylor", "function gradients"]  # fmt: skip


def test_related_tags_share_a_chart_and_no_chart_takes_a_stranger():
    tags = ["train/loss", "train/loss_min", "train/loss_max", "eval/loss", "grad/norm",
            "grad/norm_min", "grad/norm_max", "grad_norm/layer1.weight", "grad_norm/layer2.bias",
            "train/lr", "param/norm", "update/norm", "update/ratio", *PROBES]  # fmt: skip
    got = {title: matched(chart, tags) for cs in charts(layouts.build(tags)).values()
           for title, chart in cs.items()}  # fmt: skip
    assert got["train and eval loss (x = step)"] == {"train/loss", "eval/loss"}
    assert got["train loss: interval mean within its min/max"] == {
        "train/loss", "train/loss_min", "train/loss_max"}  # fmt: skip
    assert got["gradient norm ‖∇J‖, global and per layer"] == {
        "grad/norm", "grad_norm/layer1.weight", "grad_norm/layer2.bias"}  # fmt: skip
    assert got["sharpness λ_max beside the 2/η stability line"] == {
        "curvature/sharpness", "curvature/threshold"}  # fmt: skip
    assert got["gradient noise"] == {"noise/scale", "noise/snr"}
    assert got["actual loss change and its Taylor approximations"] == {
        "taylor/actual", "taylor/first_order", "taylor/second_order"}  # fmt: skip
    assert got["∂f/∂x: autograd, symbolic and finite differences"] == {
        "function/grad_autograd/x",
        "function/grad_symbolic/x",
        "function/grad_fd/x",
    }
    assert got["∂f/∂w[0]: autograd, symbolic and finite differences"] == {
        "function/grad_autograd/w[0]",
        "function/grad_fd/w[0]",
    }  # the name's [ ] escaped


def test_margin_charts_need_the_min_and_max():
    plain = charts(layouts.build(["train/loss", "grad/norm"]))  # log_every=1 writes no _min/_max
    assert [ch.HasField("margin") for cs in plain.values() for ch in cs.values()] == [False, False]


def events(run_dir: Path):
    for file in sorted(run_dir.glob("events.out.tfevents.*")):
        yield from EventFileLoader(str(file)).Load()


def test_a_run_writes_the_layout_of_the_tags_it_wrote_and_charts_nearly_all(run_dir):
    run_experiment(run_dir, "data=iris", "epochs=2", "log_every=2", "l2=0.001")
    written = {t for row in metrics(run_dir) for t in row} - {"step", "time", "epoch"}
    found = [v.tensor.string_val[0] for e in events(run_dir) for v in e.summary.value
             if v.tag == cs_metadata.CONFIG_SUMMARY_TAG]  # fmt: skip
    assert found, "no layout written"
    last = layout_pb2.Layout.FromString(found[-1])
    assert last == layouts.build(written)
    every_chart = [ch for cs in charts(last).values() for ch in cs.values()]
    charted = {t for chart in every_chart for t in matched(chart, written)}
    assert written - charted == UNCHARTED


def test_a_run_writes_one_typed_session_and_no_experiment(run_dir):
    run_experiment(run_dir, "data=iris", "epochs=1", "optimizer=adam", "optimizer.lr=0.05",
                   "batch.size=16", "model.hidden=[8,8]")  # fmt: skip
    plugin = {v.tag: plugin_data_pb2.HParamsPluginData.FromString(v.metadata.plugin_data.content)
              for e in events(run_dir) for v in e.summary.value
              if v.metadata.plugin_data.plugin_name == hp_metadata.PLUGIN_NAME}  # fmt: skip
    assert set(plugin) == {hp_metadata.SESSION_START_INFO_TAG, hp_metadata.SESSION_END_INFO_TAG}
    hparams = plugin[hp_metadata.SESSION_START_INFO_TAG].session_start_info.hparams
    assert hparams["optimizer"].string_value == "adam"
    assert hparams["optimizer.lr"].number_value == 0.05  # from optimizer.lr=0.05: a number
    assert hparams["batch.size"].string_value == "16"  # an integer: shown as 16, not 16.0000
    assert hparams["model.hidden"].string_value == "[8, 8]"
    assert hparams["data"].string_value == "iris" and hparams["seed"].string_value == "0"
    end = plugin[hp_metadata.SESSION_END_INFO_TAG].session_end_info
    assert end.status == api_pb2.STATUS_SUCCESS


def test_the_sweep_experiment_orders_metrics_keeps_every_run_and_integers(tmp_path):
    """A sweep where only SGD has curvature/threshold (Adam has none): the HParams experiment at
    the sweep root lists the final eval loss, eval accuracy and train loss first and leaves out
    the metric Adam lacks; seeds are categories ("0", "1"), learning rates numbers."""
    out = cli("-m", "data=iris", "model.hidden=[8]", "epochs=2", "optimizer=sgd,adam",
              "seed=0,1", "probes=[sharpness]", "probes.sharpness.every=1", "progress=false",
              "hydra.sweep.dir=s", cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    root = list((tmp_path / "s").glob("events.out.tfevents.*"))
    assert len(root) == 1
    values = [v for e in EventFileLoader(str(root[0])).Load() for v in e.summary.value]
    exp = plugin_data_pb2.HParamsPluginData.FromString(
        values[0].metadata.plugin_data.content
    ).experiment
    assert values[0].tag == hp_metadata.EXPERIMENT_TAG
    tags = [m.name.tag for m in exp.metric_infos]
    assert tags[:3] == ["eval/loss", "eval/accuracy", "train/loss"]
    assert "curvature/sharpness" in tags and "curvature/threshold" not in tags
    jobs = sorted(d for d in (tmp_path / "s").iterdir() if d.is_dir() and d.name[0].isdigit())
    every = set.intersection(*(set(k for m in metrics(d) for k in m) for d in jobs))
    assert set(tags) == every - {"step", "time", "epoch"}  # exactly what every run has
    infos = {h.name: h for h in exp.hparam_infos}
    assert infos["seed"].type == api_pb2.DATA_TYPE_STRING and infos["seed"].differs
    assert [v.string_value for v in infos["seed"].domain_discrete.values] == ["0", "1"]
    assert infos["optimizer.lr"].type == api_pb2.DATA_TYPE_FLOAT64
    assert infos["optimizer"].differs and not infos["data"].differs
    summary = json.loads((jobs[0] / "summary.json").read_text())
    assert summary["hparams"]["seed"] == 0 and summary["hparams"]["optimizer"] == "sgd"


def test_hparam_types_an_lr_of_1_is_a_number_and_a_seed_is_text():
    from gradexp.record.hparams import typed

    assert typed("optimizer.lr", 1) == 1.0 and isinstance(typed("optimizer.lr", 1), float)
    assert typed("data.noise", 0) == 0.0  # a real knob: one type with data.noise=0.1 beside it
    assert typed("l2", 0) == 0.0 and typed("seed", 3) == "3" and typed("batch.size", 64) == "64"
    assert typed("optimizer.nesterov", True) is True and typed("model.hidden", [8]) == "[8]"


def test_a_layout_is_built_once_per_tag_set_and_equals_a_fresh_build():
    tags = frozenset(["train/loss", "eval/loss", "grad/norm", "grad/norm_min", "grad/norm_max"])
    first = layouts.for_tags(tags)
    assert layouts.for_tags(frozenset(set(tags))) is first
    assert first.SerializeToString() == layouts.summary(layouts.build(tags)).SerializeToString()
    other = layouts.for_tags(tags | {"curvature/sharpness"})
    assert other.SerializeToString() != first.SerializeToString()


def test_the_sweep_experiment_reads_a_runs_tags_as_read_metrics_would(run_dir):
    from gradexp.study.runs import read_metrics, tags_of

    def decoded(file: Path) -> set[str]:
        points, epochs = read_metrics(file)
        return set().union(*(p.keys() for p in points), *(e.keys() for e in epochs))

    run_experiment(run_dir, "data=iris", "epochs=2", "log_every=3", "l2=0.001")
    file = run_dir / "metrics.jsonl"
    assert tags_of(file) == decoded(file) and {"train/loss", "epoch/eval_loss"} <= tags_of(file)
    with file.open("a") as f:  # lines read_metrics skips, and a value that is a string
        f.write('{"step": 99, "late/nan": "nan", "late/x": 1.5}\n{"note": 1, "not/a_tag": 2}\n')
        f.write('{"step": 1.5, "float/step": 1}\n{"step": 100, "cut/short": 2.0')
    assert tags_of(file) == decoded(file) and "late/nan" in tags_of(file)
    assert not {"not/a_tag", "float/step", "cut/short"} & tags_of(file)
    with file.open("a") as f:  # an escaped key: every line decoded
        f.write('\n{"step": 101, "quote\\"d": 1.0}\n')
    assert tags_of(file) == decoded(file) and 'quote"d' in tags_of(file)
