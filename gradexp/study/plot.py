"""Axes helpers shared by the report's figures: legend labels, colours, log scales."""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from gradexp.study.configs import Config


def labels(configs: list[Config]) -> tuple[dict[str, str], str]:
    """Legend labels show what differs between configurations; what all share goes in a title."""
    items = [c.key.split(",") if c.key else [] for c in configs]
    common = set.intersection(*(set(i) for i in items)) if items else set()
    names = {c.key: " ".join(o for o in i if o not in common) or "defaults"
             for c, i in zip(configs, items)}  # fmt: skip
    shared = " ".join(o for o in items[0] if o in common) if items else ""
    return names, shared


def colours(n: int) -> list:
    cmap = colormaps["tab10" if n <= 10 else "tab20" if n <= 20 else "turbo"]
    return [cmap(i if n <= 20 else i / max(1, n - 1)) for i in range(n)]


def scale(ax, axis: str) -> None:
    """Log scale for positive data spanning more than a decade and a half; linear otherwise.
    Steps start at 0 (the initial loss): x then goes linear up to its first positive value
    and logarithmic beyond (symlog), so step 0 stays on the axis."""
    data = [line.get_ydata() if axis == "y" else line.get_xdata() for line in ax.get_lines()]
    v = np.concatenate([np.asarray(d, float) for d in data]) if data else np.array([])
    v = v[np.isfinite(v)]
    positive = v[v > 0]
    if axis == "x" and len(positive) and v.min() == 0 and positive.max() / positive.min() > 30:
        ax.set_xscale("symlog", linthresh=positive.min(), linscale=0.5)
        ax.set_xlim(left=0)  # no negative decades in the margin
    elif len(v) and v.min() > 0 and v.max() / v.min() > 30:
        (ax.set_yscale if axis == "y" else ax.set_xscale)("log")


def legend(fig: Figure):
    seen = {}
    for ax in fig.axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(lab, h)
    return list(seen.values()), list(seen)
