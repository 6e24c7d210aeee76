"""A run's logged history: device rows in, checked and aggregated host floats out to a sink."""

from __future__ import annotations

import logging
import math
import time

import numpy as np

from gradexp.record.aggregate import Aggregator
from gradexp.record.rows import DeviceRows, Pending
from gradexp.record.stops import Rules, Stop, first_stop, levels

log = logging.getLogger("gradexp")
BEST = {"train/loss": min, "eval/loss": min, "eval/accuracy": max}


class History:
    """The loop records 0-d tensors per step and at chosen steps; flush() copies them to the host
    (DeviceRows), finds the first step that breaks a stop rule (exactly, not per interval),
    averages rows per logged interval and epoch (Aggregator) and writes them to the sink.

    `columns` name what the loop records per step; grad/norm is inserted on the host, composed
    from the grad_norm/<layer> columns (‖∇J‖² = Σ ‖∇J_layer‖²)."""

    def __init__(self, sink, columns: list[str], log_every: int, rules: Rules | None = None,
                 watch=None):  # fmt: skip
        self.recorded = len(columns)
        self.layers = [i for i, c in enumerate(columns) if c.startswith("grad_norm/")]
        at = self.layers[0]
        self.columns = [*columns[:at], "grad/norm", *columns[at:]]
        self.sink, self.log_every, self.rules = sink, log_every, rules or Rules()
        self.watch = watch  # a GrowthWatch: warns of an exploding gradient norm (or None)
        self.device = DeviceRows(self.recorded)
        self.aggregate = Aggregator(self.columns)
        self.warnings: list[str] = []
        self.last: dict[str, float] = {}
        self.best: dict[str, float] = {}
        self.start = time.perf_counter()
        self.stopped: Stop | None = None
        self.head: list[float] = []  # the first losses: the level diverge.factor compares with

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def record(self, step: int, lr: float, row: list) -> None:
        self.device.record(step, lr, row)

    def point(self, step: int, values: dict) -> None:
        self.device.point(step, values)

    def end_epoch(self, epoch: int, step: int, values: dict) -> None:
        self.device.end_epoch(epoch, step, {**values, "time": self.elapsed()})

    def flush(self) -> Stop | None:
        """Copy, check, aggregate and write everything pending; the first stop found, if any."""
        return self.ingest(self.device.take())

    def ingest(self, pending: Pending) -> Stop | None:
        """Check, aggregate and write host values (one member's, for a vectorised group)."""
        rows = self._with_total(pending.rows)
        level, self.head = levels(self.head, rows[:, 0], self.rules.window)
        stop = first_stop(rows, self.columns, pending.steps, pending.lrs, self.rules, level)
        limit = min(
            stop.step if stop else math.inf, self.stopped.step if self.stopped else math.inf
        )
        steps = [s for s in pending.steps if s <= limit]
        rows = rows[: len(steps)]
        self._watch(steps, rows)
        by_step: dict[int, dict[str, float]] = {}
        epoch_ends = {s: (e, v) for e, s, v in pending.epochs}
        epoch_points, done = [], 0
        # Only interval and epoch boundaries cost numpy work; the rows between go as blocks.
        for i, step in enumerate(steps):
            logged = step % self.log_every == 0 or step == limit
            if not (logged or step in epoch_ends) and i < len(steps) - 1:
                continue
            self.aggregate.add(rows[done : i + 1])
            done = i + 1
            if logged:
                by_step[step] = self.aggregate.interval_values()
            if step in epoch_ends:
                by_step.setdefault(step, {})
                epoch_points.append((step, *epoch_ends[step], self.aggregate.epoch_values()))
        for step, values in pending.points:
            if step <= limit:
                by_step.setdefault(step, {}).update(values)
        for step in sorted(by_step):
            values = by_step[step]
            elapsed = values.pop("time", self.elapsed())
            if step > 0:  # step 0 (the initial losses) is logged, never a final or best value
                self._remember(values)
            self.sink.write(step, values, elapsed)
            while epoch_points and epoch_points[0][0] == step:
                _, epoch, extra, mean = epoch_points.pop(0)
                self._write_epoch(step, epoch, extra | mean)
        self.sink.flush()
        self.stopped = self.stopped or stop
        return stop

    def judge_final(self, step: int, loss: float) -> Stop | None:
        """The stop rules on the final parameters' loss over the whole training set: after the
        last step no later loss would show that it went to inf or blew up."""
        rows = np.array([[loss, *[0.0] * (len(self.columns) - 1)]])
        level = np.array([np.mean(self.head)]) if self.head else None
        stop = first_stop(rows, self.columns, [step], [math.nan], self.rules, level)
        if stop is None or stop.reason != "diverged":
            return None
        why = stop.message.partition(": ")[2].replace("the loss", "the final parameters' loss")
        return Stop("diverged", step, f"diverged at step {step}, final train loss={loss:.4g}: "
                    f"{why}")  # fmt: skip

    def close(self, final_step: int) -> Stop | None:
        """Flush, then write the last partial interval so the final step is always logged."""
        stop = self.flush()
        self.finish_interval(final_step)
        return stop

    def finish_interval(self, final_step: int) -> None:
        """The last partial interval, written at the final step (nothing after a stop)."""
        if self.stopped is not None and self.stopped.step < final_step:
            self.aggregate.interval = []
        if self.aggregate.interval:
            values = self.aggregate.interval_values()
            self._remember(values)
            self.sink.write(final_step, values, self.elapsed())
            self.sink.flush()

    def _with_total(self, raw: np.ndarray | None) -> np.ndarray:
        """The rows with the global gradient norm inserted before the per-layer norms."""
        if raw is None:
            return np.zeros((0, len(self.columns)))
        layers = raw[:, self.layers]
        # Scaled by the largest layer norm: squares of norms beyond 1e154 would overflow to inf
        # (and below 1e-154 underflow to 0) in float64 while the norm itself is finite.
        scale = np.abs(layers).max(1, keepdims=True)
        scale[~np.isfinite(scale) | (scale == 0)] = 1.0
        total = scale * np.sqrt(np.square(layers / scale).sum(1, keepdims=True))
        at = self.layers[0]
        return np.hstack([raw[:, :at], total, raw[:, at:]])

    def _watch(self, steps: list[int], rows: np.ndarray) -> None:
        if self.watch is None or not len(rows):
            return
        warning = self.watch.feed(steps, rows[:, self.columns.index("grad/norm")])
        if warning:
            log.warning("gradexp: warning: %s", warning)
            self.warnings.append(warning)

    def state(self) -> dict:
        """What a resumed run needs to go on logging exactly as this one would (after flush())."""
        return self.aggregate.state() | {
            "last": dict(self.last),
            "best": dict(self.best),
            "elapsed": self.elapsed(),
            "warnings": list(self.warnings),
            "watch": self.watch.state() if self.watch is not None else None,
            "head": list(self.head),
        }

    def load_state(self, state: dict) -> None:
        self.aggregate.load_state(state)
        self.last, self.best = dict(state["last"]), dict(state["best"])
        self.start = time.perf_counter() - state["elapsed"]
        self.warnings = list(state["warnings"])
        self.head = list(state.get("head", []))
        if self.watch is not None and state["watch"] is not None:
            self.watch.load_state(state["watch"])

    def _write_epoch(self, step: int, epoch: int, values: dict[str, float]) -> None:
        elapsed = values.pop("time")
        self.last |= values
        self.sink.write(step, values, elapsed, epoch=epoch)

    def _remember(self, values: dict[str, float]) -> None:
        self.last |= values
        for tag, better in BEST.items():
            if tag in values and math.isfinite(values[tag]):
                self.best[tag] = better(self.best.get(tag, values[tag]), values[tag])
