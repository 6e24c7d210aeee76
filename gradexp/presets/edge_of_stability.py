"""Edge of stability: each run's sharpness probes (λ_max of the full-batch loss's Hessian by
power iteration on Hessian-vector products) against 2/η: the sharpness should start below
band[0]·2/η, rise to 2/η, and from then on sit in band·2/η. The loss curve is shown beside
it: it falls while the sharpness hovers."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from gradexp.presets.common import save, series


def verdict(runs, spec: dict, root) -> dict:
    low, high = (float(x) for x in spec.get("band", (0.8, 1.3)))
    need = float(spec.get("fraction", 0.8))
    fig = Figure(figsize=(10, 4))
    sharp_ax, loss_ax = fig.subplots(1, 2)
    measured, expected = {}, {}
    for i, run in enumerate(sorted(runs, key=lambda r: r.lr)):
        steps, sharp = series(run, "curvature/sharpness")
        edge = 2 / run.lr
        reached = np.nonzero(sharp >= 0.95 * edge)[0]
        later = sharp[reached[0] :] if len(reached) else sharp[:0]  # from the first arrival on
        rose = bool(len(sharp) and sharp[0] <= low * edge)  # it started well below the edge
        inside = (
            float(np.mean((later >= low * edge) & (later <= high * edge))) if len(later) else 0.0
        )
        measured[str(run.lr)] = {
            "initial_sharpness": float(sharp[0]) if len(sharp) else None, "rose": rose,
            "reached_edge_at_step": int(steps[reached[0]]) if len(reached) else None,
            "probes_after": len(later), "fraction_in_band": inside,
            "median_after_over_edge": float(np.median(later) / edge) if len(later) else None,
            "status": run.summary.get("status")}  # fmt: skip
        expected[str(run.lr)] = {"edge": edge}
        colour = f"C{i}"
        sharp_ax.plot(steps, sharp, color=colour, label=f"η = {run.lr:g}")
        sharp_ax.axhline(edge, color=colour, ls="--", lw=1)
        loss_ax.semilogy(*series(run, "train/loss"), color=colour, label=f"η = {run.lr:g}")
    sharp_ax.set(xlabel="step", ylabel="sharpness λ_max (dashed: 2/η)", title="edge of stability")
    loss_ax.set(xlabel="step", ylabel="training loss")
    sharp_ax.legend(fontsize=8)
    loss_ax.legend(fontsize=8)
    ok = bool(measured) and all(
        m["rose"]
        and m["probes_after"] >= 5
        and m["status"] == "ok"
        and m["fraction_in_band"] >= need
        for m in measured.values()
    )
    said = ", ".join(f"η={lr}: from {m['initial_sharpness']:.3g} to 2/η at step "
                     f"{m['reached_edge_at_step']}, then {100 * m['fraction_in_band']:.0f} % of "
                     f"{m['probes_after']} probes in [{low:g}, {high:g}]·2/η"
                     for lr, m in measured.items())  # fmt: skip
    return {"reproduced": ok, "said": f"{said} (need {100 * need:.0f} %)",
            "measured": measured,
            "expected": {"per_lr": expected, "band": [low, high], "fraction": need},
            "figures": [save(fig, root, "edge_of_stability.png")]}  # fmt: skip
