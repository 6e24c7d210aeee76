"""The sink: TensorBoard events, metrics.jsonl and summary.json in the run's own directory."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
from tensorboard.compat.proto.tensor_pb2 import TensorProto
from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto
from tensorboard.plugins.text.plugin_data_pb2 import TextPluginData

from gradexp.record import hparams as sessions
from gradexp.record import layouts
from gradexp.record.events import EventFile


class Logger:
    """Writes host floats. One event per logged step holds all of that step's values."""

    def __init__(self, run_dir: Path, purge_step: int | None = None):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.events = EventFile(self.run_dir, purge_step)
        self.jsonl = (self.run_dir / "metrics.jsonl").open("a")
        self.start = time.time()
        self.tags: set[str] = set()  # every scalar tag written: the custom-scalar layout's input
        self.laid_out = 0  # how many tags the last layout written knew

    def write(self, step: int, values: dict[str, float], elapsed: float, epoch: int | None = None):
        """One point: TensorBoard x is `step`, or `epoch` for the per-epoch series."""
        self.events.add_scalars(values, step if epoch is None else epoch, self.start + elapsed)
        self.tags.update(values)
        record = {"step": step, "time": round(elapsed, 6)}
        if epoch is not None:
            record["epoch"] = epoch
        self.jsonl.write(_json_line(record | values) + "\n")

    def text(self, tag: str, text: str) -> None:
        """Markdown for the TEXT tab, as torch's summary.text() writes it (without importing
        torch.utils.tensorboard, which a run needs only for images)."""
        content = TextPluginData(version=0).SerializeToString()
        plugin = SummaryMetadata.PluginData(plugin_name="text", content=content)
        shape = TensorShapeProto(dim=[TensorShapeProto.Dim(size=1)])
        tensor = TensorProto(dtype="DT_STRING", string_val=[text.encode()], tensor_shape=shape)
        value = Summary.Value(tag=f"{tag}/text_summary", tensor=tensor,
                              metadata=SummaryMetadata(plugin_data=plugin))  # fmt: skip
        self.events.add_summary(Summary(value=[value]))

    def image(self, tag: str, pixels, step: int) -> None:
        """An H×W×3 uint8 image (a figure) for TensorBoard's IMAGES tab."""
        from torch.utils.tensorboard.summary import image

        self.events.add_summary(image(tag, pixels, dataformats="HWC"), step)

    def hparams(self, hparams: dict[str, object], status: str) -> None:
        """The HPARAMS tab's session for this run, in this run's own directory (no sub-run).
        Its metrics are the run's own tags, so TensorBoard shows their last values."""
        ok = status in ("ok", "diverged")
        for summary in (sessions.session_start(hparams), sessions.session_end(ok)):
            self.events.add_summary(summary)

    def flush(self) -> None:
        if len(self.tags) > self.laid_out:
            # The Custom Scalars tab's charts, rewritten when new tags appear (TensorBoard shows
            # the latest), so a run still training has them too.
            self.events.add_summary(layouts.for_tags(frozenset(self.tags)))
            self.laid_out = len(self.tags)
        self.events.flush()
        self.jsonl.flush()

    def close(self) -> None:
        self.flush()
        self.events.close()
        self.jsonl.close()

    def sizes(self) -> dict[str, int]:
        """Bytes in each log file, flushed and fsynced: what a resumed run rewinds to (see
        rewind). On disk before the checkpoint that records them, so that a power cut cannot
        leave a checkpoint that is newer than its logs."""
        self.flush()
        for f in (self.events.file, self.jsonl):
            os.fsync(f.fileno())
        return {f.name: f.stat().st_size for f in log_files(self.run_dir)}


EVENTS = "events.out.tfevents.*"


def log_files(run_dir: Path) -> list[Path]:
    return sorted([*Path(run_dir).glob(EVENTS), *Path(run_dir).glob("metrics.jsonl")])


def rewind(run_dir: Path, sizes: dict[str, int]) -> None:
    """Cut the logs back to a checkpoint's sizes: what a crash or an interrupt wrote after it
    (a torn last line or event record included) goes, and files started after it are removed.
    Events and jsonl lines are only ever appended, so a prefix is a valid file."""
    for file in log_files(run_dir):
        size = sizes.get(file.name)
        if size is None:
            file.unlink()
        elif file.stat().st_size > size:
            os.truncate(file, size)


def uncovered(run_dir: Path, sizes: dict[str, int]) -> str | None:
    """Why the logs on disk are shorter than a checkpoint says they were (a power cut lost
    what the page cache held), or None if they cover it."""
    for name, size in sizes.items():
        file = Path(run_dir) / name
        have = file.stat().st_size if file.is_file() else None
        if have is None or have < size:
            held = "is missing" if have is None else f"has {have} of its {size} bytes"
            return f"it is newer than the logs: {name} {held}"
    return None


def write_summary(run_dir: Path, summary: dict) -> None:
    """summary.json, written whole to a temporary file and renamed: never half a file."""
    Path(run_dir).mkdir(parents=True, exist_ok=True)  # a run refused before it made its dir
    tmp = Path(run_dir) / "summary.json.tmp"
    tmp.write_text(json.dumps(_finite_or_str(summary), indent=2) + "\n")
    tmp.replace(Path(run_dir) / "summary.json")


def _json_line(record: dict) -> str:
    try:  # every value finite (the common case): json's C encoder alone
        return json.dumps(record, allow_nan=False)
    except ValueError:
        return json.dumps(_finite_or_str(record))


def _finite_or_str(value):
    # JSON has no NaN or inf; write them as strings a reader can still float() back.
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite_or_str(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_str(v) for v in value]
    return value
