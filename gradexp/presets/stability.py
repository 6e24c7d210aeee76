"""The stability edge of gradient descent on least squares. Full-batch GD on
J(w) = mean((Xw + b − y)²) multiplies the error along the Hessian's top eigenvector by
(1 − ηλ_max) each step, so it converges for η < 2/λ_max and diverges above. λ_max is computed
in closed form from the data, H = (2/n)[X 1]ᵀ[X 1]; the measured edge is the midpoint between
the largest η that converged and the smallest that diverged."""

from __future__ import annotations

import math

import torch
from matplotlib.figure import Figure

from gradexp.presets.common import final, rebuilt, relative, save


def closed_form(run) -> tuple[float, float]:
    """(λ_max of the MSE Hessian, the least-squares loss L*) on the run's training set."""
    data = rebuilt(run).data
    x, y = data.x_train.double(), data.y_train.double().reshape(-1, 1)
    a = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)
    lam = torch.linalg.eigvalsh(2 / len(x) * a.T @ a)[-1].item()
    w = torch.linalg.lstsq(a, y).solution
    return lam, ((a @ w - y) ** 2).mean().item()


def outcome(run, best: float) -> str:
    """converged (final loss within 1 % of L*), diverged (the run says so, or its loss ends
    above where it started), or slow (neither, in the steps given)."""
    loss, first = final(run), run.points[0].get("train/loss", math.inf) if run.points else math.inf
    if run.summary.get("status") == "diverged" or not math.isfinite(loss) or loss > first:
        return "diverged"
    return "converged" if loss <= best * 1.01 else "slow"


def verdict(runs, spec: dict, root) -> dict:
    lam, best = closed_form(runs[0])
    edge = 2 / lam
    by_lr = sorted((r.lr, outcome(r, best), final(r)) for r in runs)
    conv = [lr for lr, o, _ in by_lr if o == "converged"]
    div = [lr for lr, o, _ in by_lr if o == "diverged"]
    monotone = bool(conv and div and max(conv) < min(div)) and all(
        o != "slow" for lr, o, _ in by_lr if lr <= max(conv) or lr >= min(div)
    )
    measured_edge = (max(conv) + min(div)) / 2 if conv and div else math.nan
    tol = float(spec.get("tolerance", 0.02))
    ok = monotone and relative(measured_edge, edge) <= tol
    fig = Figure(figsize=(6.4, 4))
    ax = fig.subplots()
    ax.semilogy([lr for lr, *_ in by_lr], [min(v, 1e30) for *_, v in by_lr], "o-")
    ax.axvline(edge, color="C3", ls="--", label=f"2/λ_max = {edge:.4f} (closed form)")
    ax.axhline(best, color="gray", ls=":", label=f"least-squares loss {best:.3g}")
    ax.set(xlabel="learning rate η", ylabel="final training loss", title="stability edge of GD")
    ax.legend()
    off = 100 * relative(measured_edge, edge)
    said = f"measured edge {measured_edge:.4g} vs 2/λ_max {edge:.4g} ({off:.2f} %, tolerance "
    said += f"{100 * tol:g} %)"
    if not monotone:
        said += "; converged and diverged runs do not split the grid at one η"
    return {"reproduced": ok, "said": said,
            "measured": {"edge": measured_edge, "largest_converged_lr": max(conv, default=None),
                         "smallest_diverged_lr": min(div, default=None),
                         "outcomes": {str(lr): o for lr, o, _ in by_lr}},
            "expected": {"edge": edge, "lambda_max": lam, "least_squares_loss": best,
                         "tolerance": tol},
            "figures": [save(fig, root, "stability.png")]}  # fmt: skip
