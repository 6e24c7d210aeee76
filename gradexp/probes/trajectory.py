"""Where the run is going: distance from the initial parameters and the angle between
consecutive updates."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gradexp.probes.objective import flat, trainable
from gradexp.probes.schedule import Scheduled


class Trajectory(Scheduled):
    """trajectory/distance_from_init ‖θ − θ₀‖ and trajectory/update_cosine cos(Δ_{t−1}, Δ_t)
    (near 1: a straight path; near −1: zig-zag across a valley, the sign of a step too large).

    A probe sees θ before this step's update, so the two updates before a logged step s come
    from snapshots at s−2, s−1 and s: it also runs on those steps (and on step 1, for θ₀)."""

    STATE = ("init", "snapshots", "step")

    def __init__(self, every: int | str = 10, per_decade: int = 10, *, data=None, l2=0.0):
        super().__init__(every, per_decade)
        self.init: Tensor | None = None
        self.snapshots: dict[int, Tensor] = {}
        self.step = 0

    def due(self, step: int) -> bool:
        self.step = step  # the loop asks due(step) right before calling the probe
        return step == 1 or any(Scheduled.due(self, step + k) for k in (0, 1, 2))

    def __call__(self, *, model: nn.Module, micro, loss_fn, optimizer) -> dict[str, Tensor]:
        theta = flat(p.detach() for p in trainable(model).values()).clone()
        s = self.step
        if self.init is None:
            self.init = theta
        self.snapshots = {k: v for k, v in self.snapshots.items() if k >= s - 2} | {s: theta}
        if not Scheduled.due(self, s):
            return {}
        out = {"trajectory/distance_from_init": torch.linalg.vector_norm(theta - self.init)}
        if s - 1 in self.snapshots and s - 2 in self.snapshots:
            a = self.snapshots[s - 1] - self.snapshots[s - 2]
            b = theta - self.snapshots[s - 1]
            out["trajectory/update_cosine"] = torch.dot(a, b) / (
                torch.linalg.vector_norm(a) * torch.linalg.vector_norm(b)
            )
        return out
