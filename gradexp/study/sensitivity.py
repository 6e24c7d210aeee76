"""The learning-rate sensitivity figure: final loss against the learning rate, log axis."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure

from gradexp.study.configs import Config
from gradexp.study.plot import colours, labels, legend, scale


def lr_figure(configs: list[Config], name: str = "eval_loss") -> Figure:
    """Final loss against the learning rate (log axis): one line per setting of everything else
    (the optimizer, when a sweep varies only optimizer and lr), error bars over seeds, and ×
    at the top for settings where every seed diverged."""
    lines: dict[str, list[tuple[float, float, float]]] = {}
    for c in configs:
        if not len(c.values(name)):  # every seed failed: nothing to place
            continue
        rest = ",".join(o for o in c.key.split(",") if not o.startswith("optimizer.lr="))
        rest = rest if rest else c.runs[0].optimizer
        mean, std = c.mean_std(name)
        lines.setdefault(rest, []).append((c.runs[0].lr, mean, std))
    keys = [Config(k) for k in lines]
    label, shared = labels(keys)
    fig = Figure(figsize=(10, 4.8), layout="constrained")
    ax = fig.subplots()
    finite = [m for pts in lines.values() for _, m, _ in pts if math.isfinite(m)]
    top = max(finite) * 1.5 if finite else 1.0
    for (key, pts), col in zip(lines.items(), colours(len(lines))):
        pts = sorted(p for p in pts if math.isfinite(p[0]))
        ok = [(lr, m, 0.0 if math.isnan(s) else s) for lr, m, s in pts if math.isfinite(m)]
        if ok:
            lr, m, s = map(np.array, zip(*ok))
            ax.errorbar(lr, m, yerr=s, color=col, marker="o", ms=4, capsize=3, label=label[key])
        bad = [lr for lr, m, _ in pts if not math.isfinite(m)]
        if bad:
            ax.scatter(bad, [top] * len(bad), marker="x", color=col, s=40,
                       label=None if ok else label[key])  # fmt: skip
    ax.set_xscale("log")
    scale(ax, "y")
    ax.set(xlabel="learning rate α (log scale)", ylabel=f"final {name.replace('_', ' ')}",
           title=f"Learning-rate sensitivity: final {name.replace('_', ' ')} "
                 "(mean ± std over seeds; × = diverged)")  # fmt: skip
    if shared:
        fig.suptitle(f"all runs: {shared}", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    fig.legend(*legend(fig), loc="outside right upper", fontsize=7, title="setting")
    return fig
