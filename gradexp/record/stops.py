"""Stop rules, checked on the host over every step of a flush: the first step that breaks one."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class Stop:
    reason: str  # diverged | grad_tol | loss_tol
    step: int
    message: str


@dataclass
class Rules:
    grad_tol: float | None = None  # ‖∇J‖ below it: converged
    loss_tol: float | None = None  # the training loss below it: converged
    diverge_factor: float | None = None  # |loss| above this × its initial level: diverged
    window: int = 10  # the initial level: the mean loss of the first `window` steps


def levels(head: list[float], loss: np.ndarray, window: int) -> tuple[np.ndarray, list[float]]:
    """The initial level each loss of this block is compared with, the mean of the run's first
    min(t, window) losses (t: the step's place in the run), and the run's first losses so far
    (`head`: those of the earlier blocks, at most `window`)."""
    first = head + loss[: max(0, window - len(head))].tolist()
    if not first:
        return np.zeros(0), first
    means = np.cumsum(first) / np.arange(1, len(first) + 1)
    return means[np.minimum(len(head) + np.arange(len(loss)), len(first) - 1)], first


def first_stop(rows, columns, steps, lrs, rules: Rules, level=None) -> Stop | None:
    """The earliest step whose row is non-finite, whose loss exceeds diverge_factor × `level`,
    or that meets a tolerance (rows: steps × columns)."""
    if rows is None or not len(rows):
        return None
    loss, gnorm = rows[:, 0], rows[:, columns.index("grad/norm")]
    found = [("diverged", ~np.isfinite(rows).all(1))]
    if rules.diverge_factor is not None and level is not None:
        with np.errstate(invalid="ignore"):
            found.append(("exploded", np.abs(loss) > rules.diverge_factor * np.abs(level)))
    if rules.grad_tol is not None:
        found.append(("grad_tol", gnorm < rules.grad_tol))
    if rules.loss_tol is not None:
        found.append(("loss_tol", loss < rules.loss_tol))
    hits = [(int(np.argmax(hit)), reason) for reason, hit in found if hit.any()]
    if not hits:
        return None
    i, reason = min(hits)
    step, lr = steps[i], lrs[i]
    at = f"at step {step}, loss={loss[i]:.4g}, ‖∇J‖={gnorm[i]:.4g}, lr={lr:g}"
    if reason == "diverged":
        message = f"diverged {at}: {culprit(rows[i], columns, step)}"
    elif reason == "exploded":
        message = (
            f"diverged {at}: the loss is above diverge.factor={rules.diverge_factor:g} × "
            f"its initial level {level[i]:.4g} (the mean of its first {rules.window} steps)"
        )
    elif reason == "grad_tol":
        message = f"converged at step {step}: ‖∇J‖={gnorm[i]:.3g} < grad_tol={rules.grad_tol}"
    else:
        message = f"converged at step {step}: loss={loss[i]:.4g} < loss_tol={rules.loss_tol}"
    return Stop("diverged" if reason == "exploded" else reason, step, message)


def culprit(row: np.ndarray, columns: list[str], step: int) -> str:
    """Name the first non-finite value of a row: the loss, the penalty or a parameter's grad."""
    order = [c for c in columns if c != "grad/norm"] + ["grad/norm"]
    for column in order:
        value = row[columns.index(column)]
        if not math.isfinite(value):
            what = {"train/loss": "loss", "train/l2": "l2 penalty", "grad/norm": "grad norm"}
            name = what.get(column) or f"grad of {column.removeprefix('grad_norm/')}"
            return f"{name} is {value} at step {step}"
    return "no value is non-finite"


def blown_parameters(step: int, norm: float) -> Stop | None:
    """A run whose last step took θ to inf or NaN: no later loss can show it, so the loop
    checks ‖θ‖ once at the end (after any other step, the next step's loss is non-finite)."""
    if np.isfinite(norm):
        return None
    return Stop("diverged", step, f"diverged at step {step}: θ is not finite after the update "
                f"(‖θ‖={norm})")  # fmt: skip
