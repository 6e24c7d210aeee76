"""The catapult phase: each run placed by ηλ₀/2, with λ₀ its sharpness at step 1 (before the
first update: every run starts from the same θ₀), then judged on its own logged loss and
sharpness: a spike in the first 100 steps, the last sharpness against 2/η, the final loss."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from gradexp.presets.common import final, save, series


def regime(x: float) -> str:
    return "below 2/λ₀" if x < 1 else "catapult" if x < 2 else "beyond 4/λ₀"


def judged(run, spike: float) -> dict:
    steps, loss = series(run, "train/loss")
    at, sharp = series(run, "curvature/sharpness")
    lam0 = float(sharp[0]) if len(sharp) and at[0] == 1 else float("nan")
    start, edge = float(loss[0]), 2 / run.lr
    peak = float(np.max(loss[steps <= 100])) if len(loss) else float("nan")
    x = run.lr * lam0 / 2
    out = {"lr": run.lr, "lambda0": lam0, "lr_lambda0_over_2": x, "regime": regime(x),
           "initial_loss": start, "peak_loss": peak, "final_loss": final(run),
           "final_sharpness": float(sharp[-1]) if len(sharp) else None, "two_over_lr": edge,
           "spiked": bool(peak > spike * start)}  # fmt: skip
    flatter = out["final_sharpness"] is not None and out["final_sharpness"] < edge
    out["as_predicted"] = (not out["spiked"] if out["regime"] == "below 2/λ₀" else
                           out["spiked"] and flatter and final(run) < start
                           if out["regime"] == "catapult" else None)  # fmt: skip
    return out


def verdict(runs, spec: dict, root) -> dict:
    spike = float(spec.get("spike", 2.0))
    rows = [judged(r, spike) for r in sorted(runs, key=lambda r: r.lr)]
    fig = Figure(figsize=(10, 4))
    loss_ax, sharp_ax = fig.subplots(1, 2)
    for i, (run, row) in enumerate(zip(sorted(runs, key=lambda r: r.lr), rows)):
        label = f"η = {row['lr']:g} (ηλ₀/2 = {row['lr_lambda0_over_2']:.2f})"
        steps, loss = series(run, "train/loss")
        loss_ax.semilogy(steps, loss, color=f"C{i}", lw=1, label=label)
        sharp_ax.semilogy(*series(run, "curvature/sharpness"), "o-", color=f"C{i}", ms=2.5)
        sharp_ax.axhline(2 / row["lr"], color=f"C{i}", ls="--", lw=0.8)
    loss_ax.set(xlabel="step", ylabel="training loss", title="catapult: the spike")
    sharp_ax.set(xlabel="step", ylabel="sharpness (dashed: 2/η)", title="and the flatter region")
    loss_ax.legend(fontsize=7)
    judged_rows = [r for r in rows if r["as_predicted"] is not None]
    seen = {r["regime"] for r in judged_rows}
    ok = seen == {"below 2/λ₀", "catapult"} and all(r["as_predicted"] for r in judged_rows)
    said = "; ".join(f"η={r['lr']:g} ({r['regime']}): " + (
        f"spike to {r['peak_loss'] / r['initial_loss']:.0f}× the initial loss, sharpness "
        f"{r['final_sharpness']:.3g} vs 2/η {r['two_over_lr']:.3g}" if r["spiked"] else
        "no spike") for r in rows)  # fmt: skip
    return {"reproduced": ok, "said": said, "measured": {"runs": rows},
            "expected": {"below 2/λ₀": "no spike", "catapult": "spike, then sharpness < 2/η "
                         "and a final loss below the initial one", "spike_factor": spike},
            "figures": [save(fig, root, "catapult.png")]}  # fmt: skip
