"""A group's record: one device→host copy per flush for all members, then each member's own
History checks, aggregates and writes its own logs, exactly as its sequential run would."""

from __future__ import annotations

import numpy as np

from gradexp.record.history import History
from gradexp.record.rows import DeviceRows, Pending
from gradexp.record.stops import Stop


def part(pending: Pending, k: int) -> Pending:
    """Member k's share of a group's pending values."""

    def pick(values: dict) -> dict:  # Python floats, as one run's are (and checkpoints hold)
        return {t: float(v[k]) if isinstance(v, np.ndarray) else v for t, v in values.items()}

    rows = pending.rows[:, :, k] if pending.rows is not None else None
    return Pending(list(pending.steps), [float(lr[k]) for lr in pending.lrs], rows,
                   [(s, pick(v)) for s, v in pending.points],
                   [(e, s, pick(v)) for e, s, v in pending.epochs])  # fmt: skip


class GroupRecord:
    """Rows of [K] tensors per step and points of [K] tensors, for K member Histories."""

    def __init__(self, members: list[History]):
        self.members = members
        self.device = DeviceRows(members[0].recorded, stacked=True)

    def elapsed(self) -> float:
        return self.members[0].elapsed()

    def record(self, step: int, lrs: np.ndarray, row: list) -> None:
        self.device.record(step, lrs, row)

    def point(self, step: int, values: dict) -> None:
        self.device.point(step, values)

    def end_epoch(self, epoch: int, step: int, values: dict) -> None:
        self.device.end_epoch(epoch, step, {**values, "time": self.elapsed()})

    def flush(self, extra: dict | None = None) -> list[Stop | None]:
        """Every member's stop (None: still going) after writing what was pending, with the
        member's `extra` points (its final values) in the same write, as one run's would be."""
        pending = self.device.take()
        for k, history in enumerate(self.members):
            mine = part(pending, k)
            mine.points += (extra or {}).get(k, [])
            history.ingest(mine)
        return [h.stopped for h in self.members]

    def close(self, final_step: int, extra: dict | None = None) -> list[Stop | None]:
        stops = self.flush(extra)
        for history in self.members:
            history.finish_interval(final_step)
        return stops
