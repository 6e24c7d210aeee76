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


def first_stop(rows, columns, steps, lrs, rules: Rules) -> Stop | None:
    """The earliest step whose row is non-finite or meets a tolerance (rows: steps × columns)."""
    if rows is None or not len(rows):
        return None
    loss, gnorm = rows[:, 0], rows[:, columns.index("grad/norm")]
    found = [("diverged", ~np.isfinite(rows).all(1))]
    if rules.grad_tol is not None:
        found.append(("grad_tol", gnorm < rules.grad_tol))
    if rules.loss_tol is not None:
        found.append(("loss_tol", loss < rules.loss_tol))
    hits = [(int(np.argmax(hit)), reason) for reason, hit in found if hit.any()]
    if not hits:
        return None
    i, reason = min(hits)
    step, lr = steps[i], lrs[i]
    message = {
        "diverged": f"diverged at step {step}, loss={loss[i]:.4g}, ‖∇J‖={gnorm[i]:.4g}, "
        f"lr={lr:g}: {culprit(rows[i], columns, step)}",
        "grad_tol": f"converged at step {step}: ‖∇J‖={gnorm[i]:.3g} < grad_tol={rules.grad_tol}",
        "loss_tol": f"converged at step {step}: loss={loss[i]:.4g} < loss_tol={rules.loss_tol}",
    }[reason]
    return Stop(reason, step, message)


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
