"""Early warning of an exploding gradient, before it overflows into inf or NaN."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


class GrowthWatch:
    """Warns once when the median ‖∇J‖ over the last `window` steps exceeds `factor` times its
    median over the first `window` steps.

    Medians, not single steps: with batch size 1 one badly classified sample can have a
    gradient hundreds of times the typical one, and that is noise, not divergence. A run whose
    lr is too large grows its gradient norm geometrically, and the rolling median follows about
    window/2 steps behind: early enough to warn long before float32 overflows (≈3e38).
    """

    def __init__(self, factor: float | None, window: int):
        self.factor, self.window = factor, window
        self.early: list[float] = []  # the first `window` norms: the reference level
        self.recent: list[float] = []  # the last window − 1 norms, carried from flush to flush
        self.warning: str | None = None

    def feed(self, steps: list[int], norms: np.ndarray) -> str | None:
        """The warning if these consecutive steps' norms set it off (only ever once)."""
        if self.factor is None or self.warning is not None or not len(norms):
            return None
        w = self.window
        need = w - len(self.early)
        if need > 0:
            self.early += norms[:need].tolist()
        seq = np.concatenate([self.recent, norms])
        self.recent = seq[len(seq) - (w - 1) :].tolist() if w > 1 else []
        if len(self.early) < w or len(seq) < w:
            return None
        reference = float(np.median(self.early))
        medians = np.median(sliding_window_view(seq, w), axis=1)  # window j ends at seq[j+w-1]
        first_new = len(seq) - len(norms)
        # Windows that end on a step of this flush, after the reference period.
        ends = np.arange(w - 1, len(seq))
        new = ends >= first_new
        at = np.asarray(steps)[ends[new] - first_new]
        hit = (at > w) & (medians[new] > self.factor * reference) & (reference > 0)
        if not hit.any():
            return None
        k = int(np.argmax(hit))
        step, median = int(at[k]), float(medians[new][k])
        self.warning = (
            f"grad/norm is exploding at step {step}: its median over the last {w} steps is "
            f"{median:.3g}, {median / reference:.3g}× its median {reference:.3g} over the first "
            f"{w} (explode.factor={self.factor:g}); lower optimizer.lr or clip gradients"
        )
        return self.warning

    def state(self) -> dict:
        return {"early": self.early, "recent": self.recent, "warning": self.warning}

    def load_state(self, state: dict) -> None:
        self.early, self.recent = list(state["early"]), list(state["recent"])
        self.warning = state["warning"]
