"""The sink: TensorBoard events, metrics.jsonl and summary.json in the run's own directory."""

from __future__ import annotations

import json
import math
import os
import socket
import time
from pathlib import Path

from tensorboard.compat.proto.event_pb2 import Event, SessionLog
from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
from tensorboard.summary.writer.record_writer import RecordWriter
from torch.utils.tensorboard.summary import hparams as hparams_pb
from torch.utils.tensorboard.summary import text as text_pb

HPARAM_METRICS = ("train/loss", "eval/loss", "eval/accuracy", "grad/norm")


class EventFile:
    """A TensorBoard event file written synchronously. gradexp writes in bursts at each flush,
    so SummaryWriter's writer thread only added a lock hand-off per event to the hot loop."""

    def __init__(self, run_dir: Path, purge_step: int | None = None):
        now = time.time()
        name = f"events.out.tfevents.{now:.0f}.{socket.gethostname()}.{os.getpid()}.0"
        self.path = Path(run_dir) / name
        self.records = RecordWriter(self.path.open("wb"))
        self.add(Event(wall_time=now, file_version="brain.Event:2"))
        if purge_step is not None:  # TensorBoard drops earlier events at or after this step
            start = SessionLog(status=SessionLog.START)
            self.add(Event(wall_time=now, step=purge_step, session_log=start))

    def add(self, event: Event) -> None:
        self.records.write(event.SerializeToString())

    def add_summary(self, summary: Summary, step: int = 0, wall_time: float | None = None):
        self.add(Event(summary=summary, step=step, wall_time=wall_time or time.time()))

    def flush(self) -> None:
        self.records.flush()

    def close(self) -> None:
        self.records.close()


class Logger:
    """Writes host floats. One event per logged step holds all of that step's values."""

    def __init__(self, run_dir: Path, purge_step: int | None = None):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.events = EventFile(self.run_dir, purge_step)
        self.jsonl = (self.run_dir / "metrics.jsonl").open("a")
        self.start = time.time()

    def write(self, step: int, values: dict[str, float], elapsed: float, epoch: int | None = None):
        """One point: TensorBoard x is `step`, or `epoch` for the per-epoch series."""
        summary = Summary(value=[Summary.Value(tag=k, simple_value=v) for k, v in values.items()])
        self.events.add_summary(summary, step if epoch is None else epoch, self.start + elapsed)
        record = {"step": step, "time": round(elapsed, 6)}
        if epoch is not None:
            record["epoch"] = epoch
        self.jsonl.write(json.dumps(_finite_or_str(record | values)) + "\n")

    def text(self, tag: str, text: str) -> None:
        self.events.add_summary(text_pb(tag, text))

    def hparams(self, hparams: dict[str, object], status: str) -> None:
        """The HPARAMS tab's session for this run, in this run's own directory (no sub-run).
        Its metrics are the run's own tags, so TensorBoard shows their last values."""
        experiment, start, _ = hparams_pb(hparams, dict.fromkeys(HPARAM_METRICS, 0.0))
        code = api_pb2.STATUS_SUCCESS if status in ("ok", "diverged") else api_pb2.STATUS_FAILURE
        for summary in (experiment, start, _session_end(code)):
            self.events.add_summary(summary)

    def flush(self) -> None:
        self.events.flush()
        self.jsonl.flush()

    def close(self) -> None:
        self.events.close()
        self.jsonl.close()


def _session_end(status: int) -> Summary:
    # torch's hparams() always says STATUS_SUCCESS; a failed run should say so in the HPARAMS tab.
    content = plugin_data_pb2.HParamsPluginData(
        session_end_info=plugin_data_pb2.SessionEndInfo(status=status),
        version=metadata.PLUGIN_DATA_VERSION,
    )
    meta = SummaryMetadata(
        plugin_data=SummaryMetadata.PluginData(
            plugin_name=metadata.PLUGIN_NAME, content=content.SerializeToString()
        )
    )
    return Summary(value=[Summary.Value(tag=metadata.SESSION_END_INFO_TAG, metadata=meta)])


def write_summary(run_dir: Path, summary: dict) -> None:
    """summary.json, written whole to a temporary file and renamed: never half a file."""
    tmp = Path(run_dir) / "summary.json.tmp"
    tmp.write_text(json.dumps(_finite_or_str(summary), indent=2) + "\n")
    tmp.replace(Path(run_dir) / "summary.json")


def _finite_or_str(value):
    # JSON has no NaN or inf; write them as strings a reader can still float() back.
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite_or_str(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_str(v) for v in value]
    return value
