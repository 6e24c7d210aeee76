"""Rows averaged per logged interval (with the spread of a few tags) and per epoch."""

from __future__ import annotations

import numpy as np

SPREAD = ("train/loss", "grad/norm")  # tags that also get _min/_max over a logged interval


class Aggregator:
    """Blocks of host rows (steps × columns) pending in the current interval and epoch."""

    def __init__(self, columns: list[str]):
        self.columns = columns
        self.interval: list[np.ndarray] = []  # blocks of rows not yet logged
        self.epoch: list[np.ndarray] = []  # this epoch's blocks of rows so far

    def add(self, block: np.ndarray) -> None:
        self.interval.append(block)
        self.epoch.append(block)

    def interval_values(self) -> dict[str, float]:
        """The mean of the interval's rows (min and max of the SPREAD tags), and a new interval."""
        block = np.concatenate(self.interval)
        self.interval = []
        values = dict(zip(self.columns, block.mean(0).tolist()))
        if len(block) > 1:
            for tag in SPREAD:
                col = block[:, self.columns.index(tag)]
                values[f"{tag}_min"], values[f"{tag}_max"] = float(col.min()), float(col.max())
        return values

    def epoch_values(self) -> dict[str, float]:
        # One mean over the whole epoch: the same bits however flushes cut it into blocks.
        rows = np.concatenate(self.epoch) if self.epoch else np.zeros((1, len(self.columns)))
        mean = dict(zip(self.columns, rows.mean(0).tolist()))
        self.epoch = []
        return {"epoch/train_loss": mean["train/loss"], "epoch/grad_norm": mean["grad/norm"]}

    def state(self) -> dict:
        return {
            "interval": np.concatenate(self.interval).tolist() if self.interval else [],
            "epoch_rows": np.concatenate(self.epoch).tolist() if self.epoch else [],
        }

    def load_state(self, state: dict) -> None:
        width = len(self.columns)
        pending = np.array(state["interval"], dtype=np.float64).reshape(-1, width)
        self.interval = [pending] if len(pending) else []
        rows = np.array(state["epoch_rows"], dtype=np.float64).reshape(-1, width)
        self.epoch = [rows] if len(rows) else []
