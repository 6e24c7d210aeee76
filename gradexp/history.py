"""Per-step values kept on the device, copied to the host once per flush, checked and aggregated."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from itertools import chain

import numpy as np
import torch
from torch import Tensor

log = logging.getLogger("gradexp")
BEST = {"train/loss": min, "eval/loss": min, "eval/accuracy": max}
SPREAD = ("train/loss", "grad/norm")  # tags that also get _min/_max over a logged interval


@dataclass
class Stop:
    reason: str  # diverged | grad_tol | loss_tol
    step: int
    message: str


class History:
    """Rows per step and snapshots at logged steps, kept on the device; flush() writes floats.

    Rows stay on the device until flush(), which copies everything pending in one stacked
    transfer, finds the first step that breaks a stop rule (exactly, not per interval),
    averages rows per logged interval and writes them with the snapshots.
    """

    def __init__(
        self, sink, columns: list[str], log_every: int, grad_tol=None, loss_tol=None, watch=None
    ):
        """columns name what the loop records per step; grad/norm is added here, composed
        from the grad_norm/<layer> columns (‖∇J‖² = Σ ‖∇J_layer‖²) on the host."""
        self.recorded = len(columns)
        self.layers = [i for i, c in enumerate(columns) if c.startswith("grad_norm/")]
        columns = [*columns[: self.layers[0]], "grad/norm", *columns[self.layers[0] :]]
        self.sink, self.columns, self.log_every = sink, columns, log_every
        self.grad_tol, self.loss_tol = grad_tol, loss_tol
        self.watch = watch  # a GrowthWatch: warns of an exploding gradient norm (or None)
        self.warnings: list[str] = []
        self.rows: list[Tensor] = []
        self.steps: list[tuple[int, float]] = []  # (step, lr) of each row
        self.points: list[tuple[int, dict]] = []
        self.epochs: list[tuple[int, int, dict]] = []
        self.epoch_rows: list[np.ndarray] = []  # this epoch's blocks of rows so far
        self.interval: list[np.ndarray] = []  # blocks of rows (n, columns) not yet logged
        self.last: dict[str, float] = {}
        self.best: dict[str, float] = {}
        self.start = time.perf_counter()
        self.stopped: Stop | None = None

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def record(self, step: int, lr: float, row: list[Tensor]) -> None:
        self.rows.append(row)
        self.steps.append((step, lr))

    def point(self, step: int, values: dict[str, Tensor | float]) -> None:
        self.points.append((step, values))

    def end_epoch(self, epoch: int, step: int, values: dict[str, Tensor | float]) -> None:
        self.epochs.append((epoch, step, {**values, "time": self.elapsed()}))

    def flush(self) -> Stop | None:
        """Copy, check, aggregate and write everything pending; the first stop found, if any."""
        rows = self._host_rows()
        points = self._host(self.points)
        epochs = self._host([(e, v) for _, e, v in self.epochs])
        stop = self._check(rows)
        limit = stop.step if stop else math.inf
        self._watch(rows, limit)
        by_step: dict[int, dict[str, float]] = {}
        epoch_points = []
        epoch_ends = {s: (e, v) for (_, v), (e, s, _) in zip(epochs, self.epochs)}
        steps = [s for s, _ in self.steps if s <= limit]
        rows, done = rows[: len(steps)], 0
        # Only interval and epoch boundaries cost numpy work; the rows between go as blocks.
        for i, step in enumerate(steps):
            logged = step % self.log_every == 0 or step == limit
            if not (logged or step in epoch_ends) and i < len(steps) - 1:
                continue
            block, done = rows[done : i + 1], i + 1
            self.interval.append(block)
            self.epoch_rows.append(block)
            if logged:
                by_step[step] = self._aggregate()
            if step in epoch_ends:
                by_step.setdefault(step, {})
                epoch_points.append((step, *epoch_ends[step], self._epoch_mean()))
        for step, values in points:
            if step <= limit:
                by_step.setdefault(step, {}).update(values)
        for step in sorted(by_step):
            values = by_step[step]
            elapsed = values.pop("time", self.elapsed())
            self._remember(values)
            self.sink.write(step, values, elapsed)
            while epoch_points and epoch_points[0][0] == step:
                _, epoch, extra, mean = epoch_points.pop(0)
                self._write_epoch(step, epoch, extra | mean)
        self.sink.flush()
        self.rows, self.steps, self.points, self.epochs = [], [], [], []
        self.stopped = self.stopped or stop
        return stop

    def _host_rows(self) -> np.ndarray:
        """All pending rows in one device→host copy, with the global gradient norm inserted."""
        if not self.rows:
            return np.zeros((0, len(self.columns)))
        flat = torch.stack(list(chain.from_iterable(self.rows))).double().cpu()  # no grad_fn
        raw = flat.numpy().reshape(len(self.rows), self.recorded)
        total = np.sqrt(np.square(raw[:, self.layers]).sum(1, keepdims=True))
        at = self.layers[0]
        return np.hstack([raw[:, :at], total, raw[:, at:]])

    def close(self, final_step: int) -> Stop | None:
        """Flush, then write the last partial interval so the final step is always logged."""
        stop = self.flush()
        if self.interval:
            values = self._aggregate()
            self._remember(values)
            self.sink.write(final_step, values, self.elapsed())
            self.sink.flush()
        return stop

    def _watch(self, rows: np.ndarray, limit: float) -> None:
        if self.watch is None or not len(rows):
            return
        steps = [s for s, _ in self.steps if s <= limit]
        warning = self.watch.feed(steps, rows[: len(steps), self.columns.index("grad/norm")])
        if warning:
            log.warning("gradexp: warning: %s", warning)
            self.warnings.append(warning)

    def state(self) -> dict:
        """What a resumed run needs to go on logging exactly as this one would (after flush())."""
        return {
            "interval": np.concatenate(self.interval).tolist() if self.interval else [],
            "epoch_rows": np.concatenate(self.epoch_rows).tolist() if self.epoch_rows else [],
            "last": dict(self.last),
            "best": dict(self.best),
            "elapsed": self.elapsed(),
            "warnings": list(self.warnings),
            "watch": self.watch.state() if self.watch is not None else None,
        }

    def load_state(self, state: dict) -> None:
        pending = np.array(state["interval"], dtype=np.float64).reshape(-1, len(self.columns))
        self.interval = [pending] if len(pending) else []
        rows = np.array(state["epoch_rows"], dtype=np.float64).reshape(-1, len(self.columns))
        self.epoch_rows = [rows] if len(rows) else []
        self.last, self.best = dict(state["last"]), dict(state["best"])
        self.start = time.perf_counter() - state["elapsed"]
        self.warnings = list(state["warnings"])
        if self.watch is not None and state["watch"] is not None:
            self.watch.load_state(state["watch"])

    def _aggregate(self) -> dict[str, float]:
        block = np.concatenate(self.interval)
        self.interval = []
        values = dict(zip(self.columns, block.mean(0).tolist()))
        if len(block) > 1:
            for tag in SPREAD:
                col = block[:, self.columns.index(tag)]
                values[f"{tag}_min"], values[f"{tag}_max"] = float(col.min()), float(col.max())
        return values

    def _epoch_mean(self) -> dict[str, float]:
        # One mean over the whole epoch: the same bits however flushes cut it into blocks.
        rows = (
            np.concatenate(self.epoch_rows) if self.epoch_rows else np.zeros((1, len(self.columns)))
        )
        mean = dict(zip(self.columns, rows.mean(0).tolist()))
        self.epoch_rows = []
        return {"epoch/train_loss": mean["train/loss"], "epoch/grad_norm": mean["grad/norm"]}

    def _write_epoch(self, step: int, epoch: int, values: dict[str, float]) -> None:
        elapsed = values.pop("time")
        self.last |= values
        self.sink.write(step, values, elapsed, epoch=epoch)

    def _check(self, rows: np.ndarray) -> Stop | None:
        if not len(rows):
            return None
        loss, gnorm = rows[:, 0], rows[:, self.columns.index("grad/norm")]
        rules = [("diverged", ~np.isfinite(rows).all(1))]
        if self.grad_tol is not None:
            rules.append(("grad_tol", gnorm < self.grad_tol))
        if self.loss_tol is not None:
            rules.append(("loss_tol", loss < self.loss_tol))
        found = [(int(np.argmax(hit)), reason) for reason, hit in rules if hit.any()]
        if not found:
            return None
        i, reason = min(found)
        step, lr = self.steps[i]
        message = {
            "diverged": f"diverged at step {step}, loss={loss[i]:.4g}, ‖∇J‖={gnorm[i]:.4g}, "
            f"lr={lr:g}: {self._culprit(rows[i], step)}",
            "grad_tol": f"converged at step {step}: ‖∇J‖={gnorm[i]:.3g} < grad_tol={self.grad_tol}",
            "loss_tol": f"converged at step {step}: loss={loss[i]:.4g} < loss_tol={self.loss_tol}",
        }[reason]
        return Stop(reason, step, message)

    def _culprit(self, row: np.ndarray, step: int) -> str:
        """Name the first non-finite value of a row: the loss, the penalty or a parameter's grad."""
        order = [c for c in self.columns if c != "grad/norm"] + ["grad/norm"]
        for column in order:
            value = row[self.columns.index(column)]
            if not math.isfinite(value):
                what = {"train/loss": "loss", "train/l2": "l2 penalty", "grad/norm": "grad norm"}
                name = what.get(column) or f"grad of {column.removeprefix('grad_norm/')}"
                return f"{name} is {value} at step {step}"
        return "no value is non-finite"

    def _remember(self, values: dict[str, float]) -> None:
        self.last |= values
        for tag, better in BEST.items():
            if tag in values and math.isfinite(values[tag]):
                self.best[tag] = better(self.best.get(tag, values[tag]), values[tag])

    @staticmethod
    def _host(items: list[tuple[int, dict]]) -> list[tuple[int, dict[str, float]]]:
        tensors = [v for _, d in items for v in d.values() if isinstance(v, Tensor)]
        host = (
            iter(torch.stack([t.detach().double() for t in tensors]).cpu().tolist())
            if tensors
            else None
        )
        return [
            (k, {tag: next(host) if isinstance(v, Tensor) else float(v) for tag, v in d.items()})
            for k, d in items
        ]
