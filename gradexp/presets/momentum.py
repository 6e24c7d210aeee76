"""Rates of GD and heavy ball on f = (x² + κy²)/2 (Hessian diag(1, κ)). The expected rate at
the settings a run used is the spectral radius of its iteration on each eigen-direction λ,
θ_{t+1} = θ_t − ηλθ_t + β(θ_t − θ_{t−1}), i.e. of [[1 + β − ηλ, −β], [1, 0]]; at the optimal
settings these are (κ − 1)/(κ + 1) and (√κ − 1)/(√κ + 1). The measured rate is r with
f(θ_t) ∝ r^{2t}, fitted over the second half of the run (where the slowest mode dominates)."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure

from gradexp.presets.common import relative, save, series


def spectral_radius(lr: float, beta: float, lams: tuple[float, ...]) -> float:
    return max(max(abs(np.linalg.eigvals([[1 + beta - lr * lam, -beta], [1.0, 0.0]])))
               for lam in lams)  # fmt: skip


def measured_rate(run) -> float:
    steps, f = series(run, "function/value")
    keep = (steps >= steps.max() / 2) & (f > 1e-280) & np.isfinite(f)
    if keep.sum() < 3:
        return math.nan
    slope = np.polyfit(steps[keep], np.log(f[keep]), 1)[0]
    return math.exp(slope / 2)


def verdict(runs, spec: dict, root) -> dict:
    tol = float(spec.get("tolerance", 0.03))
    out, fig = {}, Figure(figsize=(6.4, 4))
    ax = fig.subplots()
    for run in runs:
        opt, kappa = run.config["optimizer"], float(run.config["model"]["constants"]["kappa"])
        beta = float(opt.get("momentum", 0.0) or 0.0)
        name = "heavy_ball" if beta else "gd"
        textbook = ((math.sqrt(kappa) - 1) / (math.sqrt(kappa) + 1) if beta
                    else (kappa - 1) / (kappa + 1))  # fmt: skip
        out[name] = {"lr": float(opt["lr"]), "beta": beta, "measured": measured_rate(run),
                     "at_these_settings": spectral_radius(float(opt["lr"]), beta, (1.0, kappa)),
                     "textbook_optimum": textbook}  # fmt: skip
        ax.semilogy(
            *series(run, "function/value"), label=f"{name}: rate {out[name]['measured']:.4f}"
        )
    ax.set(xlabel="step", ylabel="f(θ)", title=f"κ = {kappa:g}: GD vs heavy ball")
    ax.legend()
    ok = set(out) == {"gd", "heavy_ball"} and all(
        relative(v["measured"], v["textbook_optimum"]) <= tol for v in out.values()
    )
    said = "; ".join(f"{k} rate {v['measured']:.4f} vs {v['textbook_optimum']:.4f} "
                     f"({100 * relative(v['measured'], v['textbook_optimum']):.2f} %)"
                     for k, v in out.items())  # fmt: skip

    def each(field):
        return {k: v[field] for k, v in out.items()}

    return {"reproduced": ok, "said": f"{said} (tolerance {100 * tol:g} %)",
            "measured": each("measured"),
            "expected": {"textbook_optimum": each("textbook_optimum"),
                         "at_these_settings": each("at_these_settings"),
                         "settings": {k: {"lr": v["lr"], "beta": v["beta"]}
                                      for k, v in out.items()},
                         "kappa": kappa, "tolerance": tol},
            "figures": [save(fig, root, "momentum.png")]}  # fmt: skip
