"""Per-step values kept on the device until a flush, then copied to the host in one transfer."""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import chain

import numpy as np
import torch
from torch import Tensor


@dataclass
class Pending:
    """What a flush hands to the host side: floats, or arrays with a trailing member axis when
    the values came from K members trained as one model (see gradexp/vector)."""

    steps: list[int] = field(default_factory=list)
    lrs: list = field(default_factory=list)  # the lr of each row's step (a float, or K of them)
    rows: np.ndarray | None = None  # (steps, columns) or (steps, columns, K)
    points: list[tuple[int, dict]] = field(default_factory=list)  # (step, {tag: value})
    epochs: list[tuple[int, int, dict]] = field(default_factory=list)  # (epoch, step, values)


class DeviceRows:
    """Rows of 0-d (or [K]) tensors, one per step, and points at chosen steps: nothing is read
    back until take(), which copies all of it in two stacked transfers."""

    def __init__(self, width: int, stacked: bool = False):
        self.width = width  # tensors per row
        # stacked: rows of [K] tensors (a vectorised group) go into one growing buffer as they
        # come, so that no small tensor per step outlives the step. Kept in a list instead,
        # they pinned the heap above each step's large temporaries until the flush: the
        # process grew by 1.4 MB a step (32 digits MLPs) although nothing else was held.
        self.stacked = stacked
        self.buffer: Tensor | None = None
        self.rows: list[list[Tensor]] = []
        self.steps: list[int] = []
        self.lrs: list = []
        self.points: list[tuple[int, dict]] = []
        self.epochs: list[tuple[int, int, dict]] = []

    def record(self, step: int, lr, row: list[Tensor]) -> None:
        if self.stacked:
            n = len(self.steps)
            if self.buffer is None or n == self.buffer.shape[0]:
                grown = row[0].new_empty((max(64, 2 * n), self.width, *row[0].shape))
                if self.buffer is not None:
                    grown[:n] = self.buffer
                self.buffer = grown
            torch.stack(row, out=self.buffer[n])
        else:
            self.rows.append(row)
        self.steps.append(step)
        self.lrs.append(lr)

    def point(self, step: int, values: dict[str, Tensor | float]) -> None:
        self.points.append((step, values))

    def end_epoch(self, epoch: int, step: int, values: dict[str, Tensor | float]) -> None:
        self.epochs.append((epoch, step, values))

    def take(self) -> Pending:
        """Everything recorded since the last take(), on the host as float64."""
        rows = None
        if self.stacked and self.steps:
            # A copy: the buffer is written again after this flush, the rows are kept longer.
            rows = self.buffer[: len(self.steps)].to("cpu", torch.float64, copy=True).numpy()
        elif self.rows:
            flat = torch.stack(list(chain.from_iterable(self.rows))).double().cpu()  # no grad_fn
            rows = flat.numpy().reshape(len(self.rows), self.width, *flat.shape[1:])
        values = _host([d for _, d in self.points] + [d for _, _, d in self.epochs])
        points = [(s, v) for (s, _), v in zip(self.points, values)]
        epochs = [(e, s, v) for (e, s, _), v in zip(self.epochs, values[len(points) :])]
        pending = Pending(self.steps, self.lrs, rows, points, epochs)
        self.rows, self.steps, self.lrs, self.points, self.epochs = [], [], [], [], []
        return pending


def _host(dicts: list[dict]) -> list[dict]:
    """Tensor values to floats (0-d) or float64 arrays ([K]) in one device→host copy."""
    tensors = [v for d in dicts for v in d.values() if isinstance(v, Tensor)]
    if tensors:
        flat = torch.cat([t.detach().double().reshape(-1) for t in tensors]).cpu().numpy()
        parts = iter(np.split(flat, np.cumsum([t.numel() for t in tensors])[:-1]))
    out = []
    for d in dicts:
        host = {}
        for tag, v in d.items():
            if isinstance(v, Tensor):
                part = next(parts)
                host[tag] = float(part[0]) if v.ndim == 0 else part
            else:
                host[tag] = v if isinstance(v, np.ndarray) else float(v)
        out.append(host)
    return out
