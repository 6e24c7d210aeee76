"""The report's figures: one line per configuration with a band over seeds. Each function returns
its matplotlib Figure (no pyplot state, no display), so tests can read the axes back."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from gradexp.study.configs import Config
from gradexp.study.paths import paths_figure
from gradexp.study.plot import colours, labels, legend, scale
from gradexp.study.runs import Run
from gradexp.study.sensitivity import lr_figure

X_LABELS = {
    "step": "optimizer step",
    "epoch": "epoch (passes over the training set)",
    "examples": "training examples seen",
    "time": "wall time in training (s)",
}
X_TAGS = {"epoch": "train/epoch", "examples": "train/examples"}
CORE_GROUPS = {"train", "eval", "epoch", "grad"}  # drawn by the loss and gradient-norm figures
ONE_POINT = {"final"}  # final/*: one value per run, in summary.json and the report's table
MAX_PANELS = 12


def x_of(run: Run, steps: np.ndarray, x: str) -> np.ndarray:
    """x for the given steps. Epoch, examples and a true time are logged on logged steps only
    (a point logged between them, such as an evaluation, is stamped when it is written), so
    other steps are placed by linear interpolation over the step."""
    if x == "step":
        return steps
    tag = X_TAGS.get(x, "time")
    known = [(p["step"], p[tag]) for p in run.points if "train/epoch" in p and tag in p]
    s, v = zip(*([(0.0, 0.0), *known]))
    return np.interp(steps, s, v)


def band(config: Config, tag: str, x: str = "step"):
    """(x, mean, low, high) of `tag` over the config's seeds, aligned on the step: the mean and
    the seeds' range (positive wherever the values are, so it stays drawable on a log axis).
    Non-finite values (a diverged seed) are left out; x is the seeds' mean x at each step."""
    at: dict[int, list[tuple[float, float]]] = {}
    for run in config.runs:
        pts = [p for p in run.points if tag in p and math.isfinite(p[tag])]
        steps = np.array([p["step"] for p in pts], float)
        for s, xv, y in zip(steps, x_of(run, steps, x), (p[tag] for p in pts)):
            if math.isfinite(xv):
                at.setdefault(int(s), []).append((xv, y))
    steps = sorted(at)
    xs = np.array([np.mean([a for a, _ in at[s]]) for s in steps])
    ys = [np.array([b for _, b in at[s]]) for s in steps]
    mean = np.array([y.mean() for y in ys])
    return xs, mean, np.array([y.min() for y in ys]), np.array([y.max() for y in ys])


# A tag drawn inside another's panel, dashed in the same colour: the sharpness beside its 2/η.
COMPANIONS = {"curvature/sharpness": "curvature/threshold"}


def draw(ax, configs: list[Config], tag: str, x: str, colour, label) -> bool:
    """One line per configuration and its seed band; evaluations (eval/*) marked at each point
    they were taken (they are sparser than the steps), a series of one point by a marker."""
    drawn = False
    for c in configs:
        xs, mean, low, high = band(c, tag, x)
        if not len(xs):
            continue
        marked = len(xs) == 1 or tag.startswith("eval/")
        ax.plot(xs, mean, color=colour[c.key], label=label[c.key], lw=1.4,
                marker="o" if marked else None, ms=3.5)  # fmt: skip
        if len(c.runs) > 1:
            ax.fill_between(xs, low, high, color=colour[c.key], alpha=0.2, lw=0)
        companion = COMPANIONS.get(tag)
        if companion:
            cx, cmean, *_ = band(c, companion, x)
            if len(cx):
                ax.plot(cx, cmean, color=colour[c.key], ls="--", lw=1, gid=companion)
        drawn = True
    return drawn


def robust_limits(ax) -> None:
    """y limits from the 5th to the 95th percentile of the drawn values (log scale aware), so
    that one pathological member (a noise scale of 1e12 where the others sit near 10) does
    not flatten the others against an axis."""
    v = np.concatenate([np.asarray(line.get_ydata(), float) for line in ax.get_lines()] or [[]])
    v = v[np.isfinite(v)]
    if ax.get_yscale() == "log":
        v = v[v > 0]
    if len(v) < 10:
        return
    low, high = np.percentile(v, [5, 95])
    if ax.get_yscale() == "log" and low > 0:
        ax.set_ylim(low / 1.5, high * 1.5)
    elif high > low:
        pad = 0.1 * (high - low)
        ax.set_ylim(low - pad, high + pad)


def series_figure(configs, panels: list[tuple[str, str]], x: str, title: str) -> Figure:
    """Panels of (tag, y label) against x, sharing the legend."""
    label, shared = labels(configs)
    colour = dict(zip((c.key for c in configs), colours(len(configs))))
    cols = min(3, len(panels))  # at most 3 panels a row: many tags wrap into a grid
    rows = math.ceil(len(panels) / cols)
    fig = Figure(figsize=(max(5.2 * cols + 3, 10), 4.2 * rows + 0.4), layout="constrained")
    grid = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in grid[len(panels) :]:
        fig.delaxes(ax)
    for ax, (tag, ylabel) in zip(grid, panels):
        if draw(ax, configs, tag, x, colour, label):
            scale(ax, "y")
            if x in ("step", "examples"):
                scale(ax, "x")
        ax.set(title=tag, xlabel=X_LABELS.get(x, x), ylabel=ylabel)
        ax.grid(alpha=0.3, which="both")
    seeds = max(len(c.runs) for c in configs)
    notes = [f"line: mean, band: min–max over {seeds} seeds"] if seeds > 1 else []
    notes += [f"all runs: {shared}"] if shared else []
    fig.suptitle("\n".join([title, "; ".join(notes)]).strip(), fontsize=11)
    fig.legend(*legend(fig), loc="outside right upper", fontsize=7, title="configuration")
    return fig


def loss_figure(configs: list[Config], x: str = "step") -> Figure:
    panels = [("train/loss", "training loss (interval mean; step 0: at θ₀)")]
    if any("eval/loss" in p for c in configs for r in c.runs for p in r.points):
        panels.append(("eval/loss", "held-out loss"))
    return series_figure(configs, panels, x, f"Loss against {X_LABELS[x]}")


def grad_norm_figure(configs: list[Config]) -> Figure:
    return series_figure(configs, [("grad/norm", "‖∇J(θ)‖")], "step", "Gradient norm")


def tag_groups(configs: list[Config]) -> dict[str, list[str]]:
    """Tag groups beyond the core loss and gradient-norm series: probes, per-layer norms…"""
    tags = sorted({t for c in configs for r in c.runs for p in r.points for t in p if "/" in t})
    groups: dict[str, list[str]] = {}
    for t in tags:
        g = t.split("/")[0]
        if g not in CORE_GROUPS | ONE_POINT and not t.endswith(("_min", "_max")):
            groups.setdefault(g, []).append(t)
    return groups


def group_figure(configs: list[Config], group: str, tags: list[str]) -> Figure:
    shown = [t for t in tags if not (t in COMPANIONS.values()
                                     and any(COMPANIONS.get(o) == t for o in tags))]  # fmt: skip
    panels = [(t, PANEL_LABELS.get(t, t.split("/", 1)[1])) for t in shown[:MAX_PANELS]]
    more = f" (first {MAX_PANELS} of {len(shown)} tags)" if len(shown) > MAX_PANELS else ""
    fig = series_figure(configs, panels, "step", f"{group}/ against the step{more}")
    if group == "noise":
        for ax in fig.axes:
            robust_limits(ax)
    return fig


PANEL_LABELS = {"curvature/sharpness": "sharpness λ_max (dashed: its threshold 2/η)"}


def write_all(configs: list[Config], out: Path) -> list[Path]:
    """Every figure as a PNG in `out`; returns the files written."""
    figs = {f"loss_vs_{x}": loss_figure(configs, x) for x in X_LABELS}
    figs["grad_norm"] = grad_norm_figure(configs)
    name = "eval_loss" if any(np.isfinite(c.values("eval_loss")).any() for c in configs) else None
    figs["lr_sensitivity"] = lr_figure(configs, name or "train_loss")
    for group, tags in tag_groups(configs).items():
        figs[f"tags_{group}"] = group_figure(configs, group, tags)
    try:  # a sweep of one model=function's runs on one contour; never the report's end
        paths = paths_figure(configs)
    except Exception as e:
        paths = None
        print(f"gradexp.report: paths.png not drawn: {type(e).__name__}: {e}", file=sys.stderr)
    if paths is not None:
        figs["paths"] = paths
    written = []
    for name, fig in figs.items():
        fig.savefig(out / f"{name}.png", dpi=110)
        written.append(out / f"{name}.png")
    return written
