"""The path of an optimizer drawn over the contour plot of the function it minimises (PNG)."""

from __future__ import annotations

import numpy as np
import sympy
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from gradexp.function import evaluate

START, END = "#1a9850", "#d73027"


def _box(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # The path with a 25% margin, at least ±1 around it: the start, the end and the valley show.
    lo, hi = points.min(0), points.max(0)
    pad = np.maximum(0.25 * (hi - lo), 1.0)
    return lo - pad, hi + pad


def _on_grid(expr, symbols, axes: list[np.ndarray]) -> np.ndarray:
    mesh = np.meshgrid(*axes, indexing="xy")
    values = {s: torch.as_tensor(m, dtype=torch.float64) for s, m in zip(symbols, mesh)}
    with torch.no_grad():
        z = evaluate(expr, values).numpy()
    return np.broadcast_to(z, mesh[0].shape)


def draw(expr: sympy.Expr, symbols: list, path: np.ndarray, values: np.ndarray, title: str):
    """A Figure: left, the path over f's contours (over f itself for one variable; the first
    two variables, others held at their final value, for more); right, f against the step."""
    fig = Figure(figsize=(11, 4.8), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2, width_ratios=[1.25, 1])
    finite = np.isfinite(path).all(1) & (np.abs(path) < 1e6).all(1)
    shown = path[finite]
    names = [s.name for s in symbols]
    _values(right, values)
    if not len(shown):
        left.text(0.5, 0.5, "no point of the path within |θ| < 1e6", ha="center",
                  transform=left.transAxes)  # fmt: skip
        left.set_title(title, fontsize=10)
        return fig
    if len(symbols) == 1:
        lo, hi = _box(shown)
        xs = np.linspace(lo[0], hi[0], 400)
        left.plot(xs, _on_grid(expr, symbols, [xs]), color="0.3", lw=1.5, label=f"f({names[0]})")
        style = "o-" if len(shown) <= 80 else "-"
        left.plot(shown[:, 0], values[finite], style, color="#4575b4", ms=3, lw=1, label="path")
        left.set_xlabel(names[0])
        left.set_ylabel(f"f({names[0]})")
        ends = [(shown[0, 0], values[finite][0]), (shown[-1, 0], values[finite][-1])]
    else:
        sub = expr.subs({s: float(path[-1, i]) for i, s in enumerate(symbols) if i >= 2})
        lo, hi = _box(shown[:, :2])
        axes = [np.linspace(lo[i], hi[i], 300) for i in range(2)]
        z = np.ma.masked_invalid(_on_grid(sub, symbols[:2], axes))
        levels = np.unique(np.quantile(z.compressed(), np.linspace(0, 1, 25) ** 2))
        filled = left.contourf(*axes, z, levels=levels, cmap="viridis", alpha=0.55)
        left.contour(*axes, z, levels=levels, colors="k", linewidths=0.4, alpha=0.5)
        fig.colorbar(filled, ax=left, label="f")
        style = "o-" if len(shown) <= 80 else "-"  # dots while they can still be told apart
        left.plot(
            shown[:, 0], shown[:, 1], style, color="#ff7f00", mec="k", ms=3, lw=1.2, label="path"
        )
        left.set_xlabel(names[0])
        left.set_ylabel(names[1])
        ends = [tuple(shown[0, :2]), tuple(shown[-1, :2])]
    left.plot(*ends[0], "o", color=START, ms=11, mec="k", label="start", zorder=5)
    left.plot(*ends[1], "*", color=END, ms=16, mec="k", label="end", zorder=5)
    left.legend(loc="best", fontsize=8)
    if not finite.all():
        title += f" ({(~finite).sum()} points beyond |θ| > 1e6 not drawn)"
    left.set_title(title, fontsize=10)
    return fig


def _values(ax, values: np.ndarray) -> None:
    """f against the step, on a log axis where it spans more than a factor of 100."""
    steps = np.arange(len(values))
    positive = np.isfinite(values) & (values > 0)
    ax.plot(steps, values, color="#4575b4")
    if positive.all() and values.max() / max(values.min(), 1e-300) > 100:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("f(θ)")
    ax.set_title("objective along the path", fontsize=10)
    ax.grid(alpha=0.3)


def to_rgb(fig: Figure) -> np.ndarray:
    """H×W×3 uint8 pixels, for TensorBoard's image dashboard."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
