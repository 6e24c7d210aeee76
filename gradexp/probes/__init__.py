"""Gradient measurements: functions of what they need, returning 0-d tensors (no host sync)."""

from __future__ import annotations

from typing import Protocol

from torch import Tensor, nn


class Probe(Protocol):
    """A measurement taken between backward() and step() on the steps it is due.

    Optional: `finish(run_dir, logger, steps, model) -> dict` reports at the end (into
    summary.json's `probes`); `state_dict()` / `load_state_dict(state, device)` carry what the
    probe keeps between calls through a checkpoint (Scheduled provides both from STATE)."""

    def due(self, step: int) -> bool: ...

    def __call__(
        self, *, model: nn.Module, micro: list, loss_fn: nn.Module, optimizer
    ) -> dict[str, Tensor]: ...
