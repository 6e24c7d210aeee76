"""The texts' derivative table: at each point, the gradient three ways as gradexp logs them at
step 1 (autograd, SymPy's symbolic derivative, central differences), each against the
derivative worked out by hand below (not by SymPy: the check must not share its route)."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure

from gradexp.presets.common import save

METHODS = ("autograd", "symbolic", "fd")
# ∂f/∂v by hand, per expression as the preset's cases write it.
BY_HAND = {
    "x**2": lambda x: {"x": 2 * x["x"]},
    "x**2 + y**2": lambda x: {"x": 2 * x["x"], "y": 2 * x["y"]},
    "(1 - x)**2 + 100*(y - x**2)**2": lambda x: {
        "x": -2 * (1 - x["x"]) - 400 * x["x"] * (x["y"] - x["x"] ** 2),
        "y": 200 * (x["y"] - x["x"] ** 2),
    },
}


def row(run) -> dict:
    model = run.config["model"]
    first = next((p for p in run.points if p["step"] >= 1), {})  # step 0: the initial loss
    # the expression's own variables (a start merged over the default may name more)
    point = {k: float(v) for k, v in model["start"].items()
             if f"function/grad_autograd/{k}" in first}  # fmt: skip
    got = {m: {v: first.get(f"function/grad_{m}/{v}", float("nan")) for v in point}
           for m in METHODS}  # fmt: skip
    hand = BY_HAND.get(model["expression"])
    want = hand(point) if hand else None

    def error(m: str, v: str) -> float:
        e = abs(got[m][v] - want[v]) / max(abs(want[v]), 1.0)
        return e if math.isfinite(e) else math.inf  # a NaN or a missing tag fails the check

    complete = want is not None and set(want) == set(point)  # every variable was logged
    errors = ({m: max(error(m, v) for v in point) for m in METHODS} if complete
              else {m: math.inf for m in METHODS} if want else {})  # fmt: skip
    return {"f": model["expression"], "at": point, "by_hand": want, **got, "error": errors}


def figure(rows: list[dict], root) -> str:
    fig = Figure(figsize=(10, 4))
    left, right = fig.subplots(1, 2)
    xs = np.linspace(-1.2, 1.2, 200)
    left.plot(xs, xs**2, color="k", label="f(x) = x²")
    for r in (r for r in rows if r["f"] == "x**2"):
        x0, slope = r["at"]["x"], r["autograd"]["x"]
        t = np.linspace(x0 - 0.5, x0 + 0.5, 2)
        left.plot(t, x0**2 + slope * (t - x0), ls="--", label=f"tangent at {x0:g}: f' = {slope:g}")
    left.set(xlabel="x", ylabel="f", title="x² and its tangents (autograd slopes)")
    left.legend(fontsize=8)
    width = 0.25
    for i, m in enumerate(METHODS):
        errs = [max(r["error"].get(m, np.nan), 1e-17) for r in rows]
        right.bar(np.arange(len(rows)) + (i - 1) * width, errs, width, label=m)
    right.set_yscale("log")
    right.set_xticks(range(len(rows)), [f"{r['f'][:12]}\n{r['at']}" for r in rows], fontsize=6)
    right.set(ylabel="relative error vs by hand", title="error of each method (0 shown as 1e-17)")
    right.legend(fontsize=8)
    return save(fig, root, "derivatives.png")


def verdict(runs, spec: dict, root) -> dict:
    rows = [row(r) for r in runs]
    tol = float(spec.get("tolerance", 1e-6))
    known = all(r["by_hand"] is not None for r in rows)
    worst = {m: max(r["error"].get(m, np.inf) for r in rows) for m in METHODS} if known else {}
    ok = known and all(w <= tol for w in worst.values())
    said = ", ".join(f"{m} {w:.2g}" for m, w in worst.items()) or "an expression with no "
    said = (f"largest relative error over {len(rows)} points: {said} (tolerance {tol:g})"
            if known else "a case has no hand-derived gradient to check against")  # fmt: skip
    return {"reproduced": ok, "said": said,
            "measured": {"table": [{k: r[k] for k in ("f", "at", *METHODS)} for r in rows],
                         "largest_error": worst},
            "expected": {"table": [{"f": r["f"], "at": r["at"], "gradient": r["by_hand"]}
                                   for r in rows], "tolerance": tol},
            "figures": [figure(rows, root)]}  # fmt: skip
