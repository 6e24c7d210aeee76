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

from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

Value = bool | int | float | str


def session_start(hparams: dict[str, Value | None]) -> Summary:
    """The run's hyperparameters, typed: numbers as numbers (so the tab sorts and filters them
    as numbers), None left out (a run without the value shows an empty cell)."""
    info = plugin_data_pb2.SessionStartInfo()
    for name, value in hparams.items():
        if value is None:
            continue
        if isinstance(value, bool):  # before int: bool is an int in Python
            info.hparams[name].bool_value = value
        elif isinstance(value, int | float):
            info.hparams[name].number_value = value
        else:
            info.hparams[name].string_value = str(value)
    data = plugin_data_pb2.HParamsPluginData(session_start_info=info)
    return _summary(metadata.SESSION_START_INFO_TAG, data)


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
