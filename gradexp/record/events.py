"""TensorBoard event files written synchronously, framed as TFRecords with C checksums."""

from __future__ import annotations

import os
import socket
import struct
import time
from pathlib import Path

import google_crc32c
from tensorboard.compat.proto.event_pb2 import Event, SessionLog
from tensorboard.compat.proto.summary_pb2 import Summary


class EventFile:
    """A TensorBoard event file written synchronously. gradexp writes in bursts at each flush,
    so SummaryWriter's writer thread only added a lock hand-off per event to the hot loop."""

    def __init__(self, run_dir: Path, purge_step: int | None = None):
        now = time.time()
        # TensorBoard reads a directory's event files in name order, and a resumed run's file
        # must come after the one it continues (or its purge_step undoes the wrong events):
        # its time stamp is later than any file already there, even within the same second.
        stamps = [int(p.name.split(".")[3]) for p in Path(run_dir).glob("events.out.tfevents.*")
                  if p.name.split(".")[3].isdigit()]  # fmt: skip
        stamp = max(int(now), max(stamps, default=0) + 1)
        self.path = (
            Path(run_dir) / f"events.out.tfevents.{stamp}.{socket.gethostname()}.{os.getpid()}.0"
        )
        self.file = self.path.open("xb")
        self.add(Event(wall_time=now, file_version="brain.Event:2"))
        if purge_step is not None:  # TensorBoard drops earlier events at or after this step
            start = SessionLog(status=SessionLog.START)
            self.add(Event(wall_time=now, step=purge_step, session_log=start))

    def add(self, event: Event) -> None:
        # TFRecord framing: length, masked CRC-32C of the length, data, masked CRC-32C of the
        # data. TensorBoard's own writer computes the CRC in pure Python without TensorFlow
        # (~50 µs an event, a tenth of a small model's step); google-crc32c does it in C.
        data = event.SerializeToString()
        header = struct.pack("<Q", len(data))
        self.file.write(header + _masked_crc(header) + data + _masked_crc(data))

    def add_summary(self, summary: Summary, step: int = 0, wall_time: float | None = None):
        self.add(Event(summary=summary, step=step, wall_time=wall_time or time.time()))

    def flush(self) -> None:
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def _masked_crc(data: bytes) -> bytes:
    crc = google_crc32c.value(data)
    return struct.pack("<I", (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)
