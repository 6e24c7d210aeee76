"""Gradient measurements: functions of what they need, returning 0-d tensors (no host sync)."""

from __future__ import annotations

from typing import Protocol

from torch import Tensor, nn


class Probe(Protocol):
    """A measurement taken between backward() and step() on the steps it is due."""

    def due(self, step: int) -> bool: ...

    def __call__(
        self, *, model: nn.Module, micro: list, loss_fn: nn.Module, optimizer
    ) -> dict[str, Tensor]: ...
