"""HParams sessions: a run's hyperparameters and its status, for TensorBoard's HPARAMS tab.

Each run writes a session start (its hyperparameters) and a session end (its status) into its own
directory, and no `experiment` summary. With no experiment summary anywhere, TensorBoard builds the
experiment from all the runs it sees: every hyperparameter of every run, one type per name across
the runs, the set of values each took, `differs` (the HPARAMS tab shows the hyperparameters that
differ first) and every scalar tag as a metric (its last value). An experiment summary written by
each run, as torch's `add_hparams` does, would be read from one run picked arbitrarily: its names,
its own single value as the domain, and `differs` false everywhere.
"""

from __future__ import annotations

from google.protobuf.struct_pb2 import ListValue
from google.protobuf.struct_pb2 import Value as ProtoValue
from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

Value = bool | int | float | str


# Integer knobs (counts, sizes, seeds): shown as their digits and filtered as categories. Any
# other number is real (an lr of 1 as well as 0.1), so a column never mixes text and numbers.
INTEGER = ("seed", "epochs", "max_steps", "log_every", "eval_every", "threads", "checkpoint_every",
           "data.n", "data.features", "data.classes", "data.seed", "data.split_seed",
           "schedule.warmup_steps", "schedule.step_size")  # fmt: skip
INTEGER_GROUPS = ("batch.", "probes.")


def typed(name: str, value: Value) -> bool | float | str:
    """A hyperparameter as the HPARAMS tab holds it: a real number, a bool, or text (an integer
    knob: a seed, a batch size, shown as 0 and not 0.0000)."""
    if isinstance(value, bool | float):
        return value
    if isinstance(value, int):
        return str(value) if name in INTEGER or name.startswith(INTEGER_GROUPS) else float(value)
    return str(value)


def session_start(hparams: dict[str, Value | None]) -> Summary:
    """The run's hyperparameters, typed: real numbers as numbers (so the tab sorts and filters
    them as numbers), integers as their digits (seeds and sizes are categories, and a number
    would show as 0.0000), None left out (a run without the value shows an empty cell)."""
    info = plugin_data_pb2.SessionStartInfo()
    for name, value in hparams.items():
        if value is None:
            continue
        value = typed(name, value)
        if isinstance(value, bool):  # before int: bool is an int in Python
            info.hparams[name].bool_value = value
        elif isinstance(value, float):
            info.hparams[name].number_value = value
        else:
            info.hparams[name].string_value = value
    data = plugin_data_pb2.HParamsPluginData(session_start_info=info)
    return _summary(metadata.SESSION_START_INFO_TAG, data)


FIRST_METRICS = ("eval/loss", "eval/accuracy", "train/loss")  # the HPARAMS tab's first columns


def experiment(sessions: list[dict], metrics: list[str]) -> Summary:
    """The sweep's experiment, written once at the sweep root at its end: every run's
    hyperparameters with their domains and whether they differ, and the metrics in this
    order: final eval loss, eval accuracy and train loss first, then the given tags (those
    every run has: a metric some runs lack would drop the others from parallel coordinates)."""
    exp = api_pb2.Experiment()
    names = list(dict.fromkeys(k for hp in sessions for k, v in hp.items() if v is not None))
    for name in names:
        values = [typed(name, hp[name]) for hp in sessions if hp.get(name) is not None]
        info = exp.hparam_infos.add(name=name, differs=len({repr(v) for v in values}) > 1)
        if all(isinstance(v, bool) for v in values):
            info.type = api_pb2.DATA_TYPE_BOOL
            shown = [ProtoValue(bool_value=b) for b in sorted(set(values))]
            info.domain_discrete.CopyFrom(ListValue(values=shown))
        elif all(isinstance(v, float) for v in values):
            info.type = api_pb2.DATA_TYPE_FLOAT64
            info.domain_interval.min_value, info.domain_interval.max_value = (
                min(values),
                max(values),
            )
        else:
            info.type = api_pb2.DATA_TYPE_STRING
            shown = [ProtoValue(string_value=v) for v in sorted({str(v) for v in values})]
            info.domain_discrete.CopyFrom(ListValue(values=shown))
    ordered = [m for m in FIRST_METRICS if m in metrics] + [
        m for m in metrics if m not in FIRST_METRICS
    ]
    for tag in ordered:
        exp.metric_infos.add(name=api_pb2.MetricName(group="", tag=tag), display_name=tag)
    return _summary(metadata.EXPERIMENT_TAG, plugin_data_pb2.HParamsPluginData(experiment=exp))


def session_end(ok: bool) -> Summary:
    # torch's hparams() always says STATUS_SUCCESS; a failed run should say so in the HPARAMS tab.
    status = api_pb2.STATUS_SUCCESS if ok else api_pb2.STATUS_FAILURE
    data = plugin_data_pb2.HParamsPluginData(
        session_end_info=plugin_data_pb2.SessionEndInfo(status=status)
    )
    return _summary(metadata.SESSION_END_INFO_TAG, data)


def _summary(tag: str, data: plugin_data_pb2.HParamsPluginData) -> Summary:
    data.version = metadata.PLUGIN_DATA_VERSION
    plugin = SummaryMetadata.PluginData(
        plugin_name=metadata.PLUGIN_NAME, content=data.SerializeToString()
    )
    return Summary(value=[Summary.Value(tag=tag, metadata=SummaryMetadata(plugin_data=plugin))])
