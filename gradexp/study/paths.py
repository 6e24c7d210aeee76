"""A sweep of model=function runs on one picture: every run's path θ_t (its logged
function/<variable>) over the contours of the f they share (over f itself for one variable),
f evaluated on a grid by gradexp.formula.numeric (numpy; the study layer loads no torch)."""

from __future__ import annotations

import json

import numpy as np
from matplotlib.figure import Figure

from gradexp import formula
from gradexp.study.configs import Config
from gradexp.study.plot import colours, labels

NOT_VARIABLES = ("value", "grad_error_symbolic", "grad_error_fd")


def shared_function(configs: list[Config]) -> tuple[str, dict, list[str]] | None:
    """(expression, constants, variables) when every run with points is a model=function run
    of one expression with one to two variables; None otherwise (no such figure)."""
    runs = [r for c in configs for r in c.runs if r.points]
    models = [r.config.get("model") for r in runs]
    if not runs or not all(isinstance(m, dict) and "expression" in m for m in models):
        return None
    seen = {(m["expression"], json.dumps(m.get("constants") or {}, sort_keys=True)) for m in models}
    tags = {t for r in runs for p in r.points for t in p if t.startswith("function/")}
    names = sorted(t.split("/", 1)[1] for t in tags)
    names = [n for n in names if "/" not in n and n not in NOT_VARIABLES]
    if len(seen) != 1 or not 1 <= len(names) <= 2:
        return None
    return models[0]["expression"], dict(models[0].get("constants") or {}), names


def path(run, names: list[str]) -> np.ndarray:
    """[steps, variables]: θ_t as the function probe logged it (θ₀ at step 1)."""
    columns = [np.asarray(run.metrics.get(f"function/{n}", ([], []))[1], float) for n in names]
    n = min(map(len, columns))
    return np.stack([c[:n] for c in columns], 1) if n else np.zeros((0, len(names)))


def box(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The paths with a 25 % margin, at least ±1 around them."""
    lo, hi = points.min(0), points.max(0)
    pad = np.maximum(0.25 * (hi - lo), 1.0)
    return lo - pad, hi + pad


def paths_figure(configs: list[Config]) -> Figure | None:
    found = shared_function(configs)
    if found is None:
        return None
    expression, constants, names = found
    label, shared = labels(configs)
    colour = dict(zip((c.key for c in configs), colours(len(configs))))
    runs = [(c, r, path(r, names)) for c in configs for r in c.runs if r.points]
    # The box holds the paths of the runs that did not diverge (all of them if every one did):
    # a diverged path leaves the picture instead of shrinking the others to a dot.
    kept = [p for _, r, p in runs if r.status != "diverged"] or [p for *_, p in runs]
    allp = np.concatenate(kept) if kept else np.zeros((0, len(names)))
    allp = allp[np.isfinite(allp).all(1) & (np.abs(allp) < 1e6).all(1)]
    if not len(allp):
        return None
    fig = Figure(figsize=(8.5, 6), layout="constrained")
    ax = fig.subplots()
    lo, hi = box(allp)
    axes = [np.linspace(lo[i], hi[i], 300) for i in range(len(names))]

    # A name SymPy simplified away (x + y - y) is never logged; f does not depend on it.
    gone = dict.fromkeys(formula.names(expression) - set(names) - set(constants), 0.0)

    def f(*columns):  # f on arrays of the variables, in the order of `names`
        return formula.numeric(expression, constants | gone | dict(zip(names, columns)))

    if len(names) == 2:
        gx, gy = np.meshgrid(*axes)
        z = np.ma.masked_invalid(f(gx, gy))
        if z.count():  # f may be undefined on the whole box (log of a negative)
            levels = np.unique(np.quantile(z.compressed(), np.linspace(0, 1, 25) ** 2))
            ax.contour(gx, gy, z, levels=levels, cmap="Greys", linewidths=0.8)
    else:
        ax.plot(axes[0], f(axes[0]), color="0.3", lw=1.5, label=f"f({names[0]})")
    seen = set()
    for c, run, p in runs:
        y = p[:, 1] if len(names) == 2 else f(p[:, 0])
        name = label[c.key] + (" (diverged)" if run.status == "diverged" else "")
        ax.plot(p[:, 0], y, color=colour[c.key], lw=1.2, gid="path",
                label=None if c.key in seen else name)  # fmt: skip
        if len(p):
            ax.plot(p[-1, 0], y[-1], "x", color=colour[c.key], ms=7)
        seen.add(c.key)
    first = runs[0][2]
    if len(first):
        start = first[0, 1] if len(names) == 2 else f(first[0, 0])
        ax.plot(first[0, 0], start, "ko", ms=6, label="start of the first run")
    ax.set_xlim(lo[0], hi[0])
    if len(names) == 2:
        ax.set_ylim(lo[1], hi[1])
    ax.set(xlabel=names[0], ylabel=names[1] if len(names) == 2 else f"f({names[0]})",
           title=f"every path on one {'contour' if len(names) == 2 else 'curve'}: f = "
           f"{expression}" + (f"\nall runs: {shared}" if shared else ""))  # fmt: skip
    ax.legend(fontsize=7, loc="best")
    return fig
