"""The linear scaling rule: each run's per-epoch training loss against the base run's (k = 1),
the largest relative gap from epoch 2 on; the rule holds up to the largest k within tolerance."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure

from gradexp.presets.common import save


def curve(run) -> tuple[np.ndarray, np.ndarray]:
    epochs, loss = run.epoch_metrics.get("epoch/train_loss", (np.array([]), np.array([])))
    return np.asarray(epochs), np.asarray(loss, float)


def verdict(runs, spec: dict, root) -> dict:
    tol = float(spec.get("tolerance", 0.2))
    by_batch = sorted(runs, key=lambda r: r.config["batch"]["size"])
    base = by_batch[0]
    b0, lr0 = base.config["batch"]["size"], base.lr
    e0, l0 = curve(base)
    gaps, fig = {}, Figure(figsize=(6.4, 4))
    ax = fig.subplots()
    for i, run in enumerate(by_batch):
        k = run.config["batch"]["size"] / b0
        e, loss = curve(run)
        later = (e >= 2) & np.isin(e, e0)
        ref = l0[np.isin(e0, e[later])]
        gap = float(np.max(np.abs(loss[later] - ref) / ref)) if later.any() else math.inf
        gaps[f"{k:g}"] = gap if math.isfinite(gap) else math.inf
        size = run.config["batch"]["size"]
        ax.semilogy(
            e, loss, "o-", color=f"C{i}", ms=3, label=f"k={k:g}: batch {size}, lr {run.lr:g}"
        )
    ax.set(xlabel="epoch", ylabel="training loss (epoch mean)", title="linear scaling rule")
    ax.legend(fontsize=7)
    ks = sorted(gaps, key=float)
    holds = [k for k in ks if all(gaps[j] <= tol for j in ks if float(j) <= float(k))]
    largest = float(holds[-1]) if holds else 0.0
    breaks = largest < float(ks[-1])
    ok = largest >= 4 and breaks and abs(by_batch[-1].lr / lr0 - float(ks[-1])) < 1e-9
    said = (
        f"the per-epoch curve stays within {100 * tol:g} % of the base up to k = {largest:g} "
        f"(batch {int(b0 * largest)})"
        + (
            f", and breaks beyond (gap at k = {ks[-1]}: {100 * gaps[ks[-1]]:.0f} %)"
            if breaks
            else ", and never breaks in this grid"
        )
    )
    return {"reproduced": ok, "said": said,
            "measured": {"gap_to_base": gaps, "holds_up_to_k": largest},
            "expected": {"tolerance": tol, "holds_at_least_to_k": 4, "breaks_before_k": ks[-1]},
            "figures": [save(fig, root, "linear_scaling.png")]}  # fmt: skip
