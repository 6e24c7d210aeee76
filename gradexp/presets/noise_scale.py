"""The gradient noise scale against the critical batch size (McCandlish et al. 2018).

Each batch size B keeps the learning rate that reaches the target eval loss in the fewest
steps S(B). The paper's model S = S_min (1 + B_crit / B) is fitted by least squares on the
relative error (a line in 1/B: S = S_min + E_min / B, B_crit = E_min / S_min); at B = B_crit
doubling the batch cuts the steps by 4/3 instead of 2. B_simple = tr Σ / ‖G‖² is the noise
probe's, along the fastest of the probed runs, averaged from its start to its target step
(the noise scale grows as the loss falls: the paper compares B_crit with its average over
training)."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure

from gradexp.presets.common import save, series


def batch_size(run) -> int:
    """The samples an update sees: size × accumulate (the whole set for size null)."""
    batch = run.config.get("batch") or {}
    size = batch.get("size") or run.summary.get("n_train", 0)
    return int(size) * int(batch.get("accumulate") or 1)


def steps_to(run, target: float) -> float:
    """The first step after θ₀ whose eval loss is at or below the target (inf: never)."""
    steps, loss = series(run, "eval/loss")
    hit = np.flatnonzero((np.asarray(loss, float) <= target) & (np.asarray(steps) >= 1))
    return float(steps[hit[0]]) if hit.size else math.inf


def fit(sizes: np.ndarray, steps: np.ndarray) -> tuple[float, float]:
    """(S_min, B_crit) of S = S_min (1 + B_crit / B), relative least squares; nan if unfit."""
    if len(sizes) < 2 or (steps <= 0).any():
        return math.nan, math.nan
    a = np.stack([np.ones_like(sizes), 1 / sizes], 1) / steps[:, None]
    (s_min, e_min), *_ = np.linalg.lstsq(a, np.ones_like(steps), rcond=None)
    if s_min <= 0 or e_min <= 0:
        return math.nan, math.nan
    return float(s_min), float(e_min / s_min)


def noise_scale(run, until: float) -> tuple[float, np.ndarray, np.ndarray]:
    """B_simple averaged over the run's logged points up to step `until`, and the series."""
    steps, values = series(run, "noise/noise_scale")
    values = np.asarray(values, float)
    keep = (steps <= until) & np.isfinite(values)
    return (float(values[keep].mean()) if keep.any() else math.nan), steps, values


def best_per_size(runs, target: float) -> dict[int, tuple[float, float | None]]:
    """{B: (steps to target, lr)} with each batch size's fastest run."""
    best: dict[int, tuple[float, float]] = {}
    for run in runs:  # ties go to the smaller lr, whatever order the runs load in
        b, s = batch_size(run), steps_to(run, target)
        if b not in best or (s, run.lr) < best[b]:
            best[b] = (s, run.lr)
    return {b: (s, lr if math.isfinite(s) else None) for b, (s, lr) in sorted(best.items())}


def figure(best, s_min, b_crit, b_simple, probe, until) -> Figure:
    fig = Figure(figsize=(10, 4))
    left, right = fig.subplots(1, 2)
    sizes = np.array([b for b, (s, _) in best.items() if math.isfinite(s)], float)
    left.loglog(sizes, [best[int(b)][0] for b in sizes], "o", label="measured (best lr per B)")
    if math.isfinite(b_crit):
        grid = np.geomspace(sizes.min(), sizes.max(), 100)
        left.loglog(grid, s_min * (1 + b_crit / grid), "-", color="C1",
                    label=f"S_min(1 + B_crit/B): B_crit = {b_crit:.0f}")  # fmt: skip
        left.axvline(b_crit, color="C1", ls=":")
    if math.isfinite(b_simple):
        left.axvline(b_simple, color="C3", ls="--", label=f"B_simple = {b_simple:.0f}")
    left.set(xlabel="batch size B", ylabel="steps to the target loss", title="critical batch")
    left.legend(fontsize=7)
    if probe is not None:
        _, steps, values = probe
        right.semilogy(steps, values, color="C3", lw=0.6, alpha=0.5, label="per step (batch 32)")
        fine = np.isfinite(values)
        right.semilogy(steps[fine], np.cumsum(values[fine]) / np.arange(1, fine.sum() + 1),
                       color="C3", lw=2, label="average from the start")  # fmt: skip
        right.axvline(until, color="gray", ls=":", label=f"target reached (step {until:.0f})")
        right.legend(fontsize=7)
    right.set(xlabel="step", ylabel="B_simple = tr Σ / ‖G‖²", title="noise scale (batch-32 run)")
    return fig


def measure(runs, target: float) -> dict:
    """S(B) at each batch size's best lr, the fit, and B_simple along the fastest probed run."""
    best = best_per_size(runs, target)
    reached = {b: v for b, v in best.items() if math.isfinite(v[0])}
    sizes = np.array(sorted(reached), float)
    steps = np.array([reached[int(b)][0] for b in sizes], float)
    s_min, b_crit = fit(sizes, steps) if len(sizes) >= 4 else (math.nan, math.nan)
    probed = [r for r in runs if "noise/noise_scale" in r.metrics]
    fastest = min(probed, key=lambda r: (steps_to(r, target), r.lr), default=None)
    until = steps_to(fastest, target) if fastest is not None else math.inf
    probe = noise_scale(fastest, until) if math.isfinite(until) else None
    b_simple = probe[0] if probe is not None else math.nan
    ratio = b_crit / b_simple if b_simple > 0 else math.nan
    return {"best": best, "sizes": len(sizes), "s_min": s_min, "b_crit": b_crit,
            "b_simple": b_simple, "ratio": ratio, "probe": probe, "until": until}  # fmt: skip


def verdict(runs, spec: dict, root) -> dict:
    runs = [r for r in runs if r.config.get("batch")]  # a run dir without .hydra says nothing
    target, factor = float(spec.get("target", 0.13)), float(spec.get("factor", 3.0))
    factor = max(factor, 1 / factor)
    m = measure(runs, target)
    best, ratio = m["best"], m["ratio"]
    ok = bool(math.isfinite(ratio) and 1 / factor <= ratio <= factor)
    lrs = sorted({r.lr for r in runs})
    edge = [b for b, (s, lr) in best.items() if math.isfinite(s) and lr in (lrs[0], lrs[-1])]
    said = (
        f"B_crit {m['b_crit']:.0f} (fit of the steps to eval loss {target:g} over {m['sizes']} "
        f"batch sizes) vs B_simple {m['b_simple']:.0f}: ratio {ratio:.2f}, allowed "
        f"1/{factor:g} … {factor:g}"
    )
    if m["probe"] is None:
        said += "; no run with the noise probe reached the target (B_simple unmeasured)"
    if m["sizes"] < 4:
        said += f"; only {m['sizes']} batch sizes reached the target (4 needed for the fit)"
    if edge:
        said += f"; the best lr is at the grid's edge for B = {', '.join(map(str, edge))}"
    scan = {f"{t:g}": measure(runs, t)["ratio"] for t in (0.15, 0.14, 0.13, 0.12, 0.11, 0.1)}
    fig = figure(best, m["s_min"], m["b_crit"], m["b_simple"], m["probe"], m["until"])
    return {"reproduced": ok, "said": said,
            "measured": {"b_crit": m["b_crit"], "s_min": m["s_min"], "b_simple": m["b_simple"],
                         "ratio": ratio, "target_step_of_probe": m["until"],
                         "steps_to_target": {str(b): s for b, (s, _) in best.items()},
                         "best_lr": {str(b): lr for b, (_, lr) in best.items()},
                         "best_lr_at_grid_edge": edge, "ratio_at_other_targets": scan},
            "expected": {"ratio_within": [1 / factor, factor], "target_eval_loss": target},
            "figures": [save(fig, root, "noise_scale.png")]}  # fmt: skip
