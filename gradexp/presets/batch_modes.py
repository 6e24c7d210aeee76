"""Batch modes on least squares: each run's final loss on the whole training set against
L* = min mean((Xw + b − y)²) from lstsq (closed form); examples seen until the logged loss is
within 10 % of L*; the accumulated run against mini-batch 32's, step by step."""

from __future__ import annotations

import math

import numpy as np
import torch
from matplotlib.figure import Figure

from gradexp.presets.common import final, rebuilt, save, series


def mode(run) -> str:
    batch = run.config["batch"]
    if batch.get("size") is None:
        return "full"
    if batch["size"] == 1:
        return "stochastic"
    return "accumulate" if batch.get("accumulate", 1) > 1 else "minibatch"


def least_squares(run) -> tuple[float, float]:
    """lstsq's w on the training set: its training loss L* and its eval loss."""
    data = rebuilt(run).data

    def design(x):
        x = x.double()
        return torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)

    y = data.y_train.double().reshape(-1, 1)
    w = torch.linalg.lstsq(design(data.x_train), y).solution
    on_eval = ((design(data.x_eval) @ w - data.y_eval.double().reshape(-1, 1)) ** 2).mean()
    return ((design(data.x_train) @ w - y) ** 2).mean().item(), on_eval.item()


def examples_to(run, target: float) -> float:
    """Examples seen at the first evaluation whose eval loss is within target (the held-out
    loss is what the whole run is measured on: a single sample's loss is too noisy)."""
    steps, loss = series(run, "eval/loss")
    at, seen = series(run, "train/examples")
    by_step = dict(zip(at.tolist(), seen.tolist()))
    for step, value in zip(steps.tolist(), loss.tolist()):
        if value <= target and step in by_step:
            return float(by_step[step])
    return math.inf


def figure(runs: dict, best: tuple[float, float], root) -> str:
    fig = Figure(figsize=(10, 4))
    per_epoch, per_example = fig.subplots(1, 2)
    for name, run in runs.items():
        per_epoch.semilogy(*series_of(run.epoch_metrics, "epoch/train_loss"), "o-", label=name)
        at, seen = series(run, "train/examples")
        steps, loss = series(run, "eval/loss")
        steps, loss = steps[steps > 0], loss[steps > 0]  # a log axis of examples has no 0
        x = np.interp(steps, at, seen) if len(at) else steps
        per_example.loglog(x, loss, ".-", label=name)
    for ax, x, y, b in ((per_epoch, "epoch", "training loss (epoch mean)", best[0]),
                        (per_example, "examples seen", "eval loss", best[1])):  # fmt: skip
        ax.axhline(b, color="k", ls=":", label=f"lstsq's w: {b:.4g}")
        ax.set(xlabel=x, ylabel=y)
        ax.legend(fontsize=8)
    return save(fig, root, "batch_modes.png")


def series_of(metrics: dict, tag: str):
    return metrics.get(tag, ([], []))


def verdict(runs, spec: dict, root) -> dict:
    best, best_eval = least_squares(runs[0])
    by = {mode(r): r for r in runs}
    tol, floor_tol = float(spec.get("tolerance", 0.05)), float(spec.get("stochastic", 0.15))
    excess = {m: final(r) / best - 1 for m, r in by.items()}
    seen = {m: examples_to(r, 1.1 * best_eval) for m, r in by.items()}
    same = math.nan
    if {"accumulate", "minibatch"} <= by.keys():
        a, b = series(by["accumulate"], "train/loss")[1], series(by["minibatch"], "train/loss")[1]
        same = float(np.max(np.abs(a - b) / np.abs(b))) if len(a) == len(b) else math.inf
    reached = {m: e <= (floor_tol if m == "stochastic" else tol) for m, e in excess.items()}
    faster = seen.get("stochastic", math.inf) < seen.get("full", math.inf)
    ok = len(by) == 4 and all(reached.values()) and faster and same <= 1e-9
    said = ", ".join(f"{m} {100 * e:+.2f} %" for m, e in excess.items())
    said = (f"final loss vs L* {best:.4g}: {said}; examples until the eval loss is within 10 % "
            "of lstsq's: " + ", ".join(f"{m} {v:.0f}" for m, v in seen.items())
            + f"; accumulate 4×8 vs mini-batch 32: {same:.1e}")  # fmt: skip
    return {"reproduced": ok, "said": said,
            "measured": {"final_loss": {m: final(r) for m, r in by.items()},
                         "excess_over_lstsq": excess, "examples_to_target": seen,
                         "stochastic_noise_floor": excess.get("stochastic"),
                         "accumulate_vs_minibatch_max_rel": same},
            "expected": {"least_squares_loss": best, "least_squares_eval_loss": best_eval,
                         "tolerance": tol, "stochastic_tolerance": floor_tol},
            "figures": [figure(by, (best, best_eval), root)]}  # fmt: skip
