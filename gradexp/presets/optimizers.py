"""Optimizers on Rosenbrock: each run's path θ_t from its logged function/x, function/y, the
first step within `within` of the minimiser (1, 1) (the closed form: f ≥ 0 and f(1, 1) = 0), and
every path on one contour of f."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from gradexp.presets.common import save, series

FASTER = ("momentum", "nesterov", "adam")  # the claim: each beats plain GD


def name_of(run) -> str:
    opt = run.summary.get("choices", {}).get("optimizer", "?")
    return str(opt)


def path(run) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    steps, x = series(run, "function/x")
    _, y = series(run, "function/y")
    return steps, x, y[: len(x)]


def steps_to(run, within: float) -> float:
    steps, x, y = path(run)
    near = np.nonzero(np.hypot(x - 1, y - 1) < within)[0]
    return float(steps[near[0]]) if len(near) else math.inf


def contour(runs, root) -> str:
    fig = Figure(figsize=(7, 5))
    ax = fig.subplots()
    gx, gy = np.meshgrid(np.linspace(-2, 2, 300), np.linspace(-1, 3, 300))
    f = (1 - gx) ** 2 + 100 * (gy - gx**2) ** 2
    ax.contour(gx, gy, f + 1e-3, levels=np.logspace(-2, 3.5, 18), norm=LogNorm(), cmap="Greys")
    for i, run in enumerate(runs):
        _, x, y = path(run)
        ax.plot(x, y, color=f"C{i}", lw=1.2, label=name_of(run))
    ax.plot([1], [1], "k*", ms=12, label="minimum (1, 1)")
    ax.plot([-1.5], [2], "ko", label="start")
    ax.set(xlabel="x", ylabel="y", title="Rosenbrock: every path on one contour")
    ax.legend(fontsize=8, loc="lower right")
    return save(fig, root, "optimizers.png")


def verdict(runs, spec: dict, root) -> dict:
    within = float(spec.get("within", 1e-3))
    steps = {name_of(r): steps_to(r, within) for r in runs}
    gd = steps.get("sgd", math.inf)
    ran = {"sgd", *FASTER} <= steps.keys()  # the claim compares these: each must have run
    ok = ran and all(steps[n] < gd and math.isfinite(steps[n]) for n in FASTER)
    said = ", ".join(f"{n} {'never' if math.isinf(s) else int(s)}" for n, s in steps.items())
    return {"reproduced": ok, "said": f"steps to within {within:g} of (1, 1): {said}",
            "measured": {"steps_to_minimum": steps,
                         "final_point": {name_of(r): [float(path(r)[1][-1]), float(path(r)[2][-1])]
                                         for r in runs}},
            "expected": {"minimum": [1.0, 1.0], "within": within,
                         "faster_than_gd": list(FASTER)},
            "figures": [contour(runs, root)]}  # fmt: skip
