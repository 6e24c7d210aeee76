"""When a probe runs (every K steps, or log-spaced), and what it must keep across a resume."""

from __future__ import annotations

import math

import torch

from gradexp.errors import ConfigError


class Scheduled:
    """Base of the probes: `every: K` runs on steps K, 2K, …; `every: log` runs on the steps
    where ⌊per_decade·log10(step)⌋ changes: 1, 2, 3, 4, 6, … 10, 13, 16, 20, … 100, 126, …

    A probe that carries something from one call to the next (a warm start, a random
    generator, θ₀, the failures seen so far) names those attributes in STATE: they go into
    every checkpoint, so a resumed run measures exactly what the uninterrupted one does."""

    STATE: tuple[str, ...] = ()

    def __init__(self, every: int | str = 1, per_decade: int = 10):
        if every != "log" and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
            raise ConfigError("every", every, "must be an integer ≥ 1 or 'log'")
        if isinstance(per_decade, bool) or not isinstance(per_decade, int) or per_decade < 1:
            raise ConfigError("per_decade", per_decade, "must be an integer ≥ 1")
        self.every, self.per_decade = every, per_decade

    def due(self, step: int) -> bool:
        if self.every == "log":
            return step == 1 or _bucket(step, self.per_decade) > _bucket(step - 1, self.per_decade)
        return step % self.every == 0

    def state_dict(self) -> dict:
        """The STATE attributes as tensors, numbers, strings, lists and dicts (weights_only)."""
        return {name: encode(getattr(self, name)) for name in self.STATE}

    def load_state_dict(self, state: dict, device: torch.device | None = None) -> None:
        for name in self.STATE:
            setattr(self, name, decode(state[name], device))


def _bucket(step: int, per_decade: int) -> int:
    # The 1e-9 keeps exact powers of ten (log10(1000) = 2.9999999999999996) in their own bucket.
    return math.floor(per_decade * math.log10(step) + 1e-9)


def encode(value):
    """Generators, dicts with any keys and tuples, as torch.load(weights_only=True) takes them."""
    if isinstance(value, torch.Generator):
        return {"generator": str(value.device), "state": value.get_state()}
    if isinstance(value, dict):
        return {"items": [[encode(k), encode(v)] for k, v in value.items()]}
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    return value


def decode(value, device: torch.device | None = None):
    """encode()'s inverse; tensors go to `device` (checkpoints are loaded onto the CPU)."""
    if isinstance(value, dict) and "generator" in value:
        generator = torch.Generator(device=value["generator"])
        generator.set_state(value["state"])
        return generator
    if isinstance(value, dict):
        return {decode(k): decode(v, device) for k, v in value["items"]}
    if isinstance(value, list):
        return [decode(v, device) for v in value]
    if isinstance(value, torch.Tensor) and device is not None:
        return value.to(device)
    return value
