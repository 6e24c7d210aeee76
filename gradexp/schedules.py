"""Learning-rate schedules as multipliers of the configured lr, stepped once per update."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def _warm(factor: Callable[[int], float], warmup_steps: int, step: int) -> float:
    # Linear warm-up: lr·(step+1)/warmup_steps for the first warmup_steps updates.
    ramp = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
    return ramp * factor(step)


def _schedule(optimizer: Optimizer, factor: Callable[[int], float], warmup_steps: int):
    if warmup_steps == 0 and factor is _one:
        return None  # a constant rate needs no scheduler, and the hot loop skips its step()
    return LambdaLR(optimizer, partial(_warm, factor, warmup_steps))


def _one(step: int) -> float:
    return 1.0


def constant(optimizer: Optimizer, total_steps: int, warmup_steps: int = 0) -> LambdaLR | None:
    return _schedule(optimizer, _one, warmup_steps)


def step(
    optimizer: Optimizer, total_steps: int, step_size: int, gamma: float, warmup_steps: int = 0
) -> LambdaLR:
    return _schedule(optimizer, lambda s: gamma ** (s // step_size), warmup_steps)


def cosine(
    optimizer: Optimizer, total_steps: int, min_factor: float = 0.0, warmup_steps: int = 0
) -> LambdaLR:
    def factor(s: int) -> float:
        t = min(s, total_steps) / max(1, total_steps)
        return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * t))

    return _schedule(optimizer, factor, warmup_steps)
