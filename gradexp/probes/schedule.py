"""When a probe runs: every K steps, or log-spaced (dense early, sparse late)."""

from __future__ import annotations

import math

from gradexp.errors import ConfigError


class Scheduled:
    """Base of the probes: `every: K` runs on steps K, 2K, …; `every: log` runs on the steps
    where ⌊per_decade·log10(step)⌋ changes: 1, 2, 3, 4, 6, … 10, 13, 16, 20, … 100, 126, …"""

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


def _bucket(step: int, per_decade: int) -> int:
    # The 1e-9 keeps exact powers of ten (log10(1000) = 2.9999999999999996) in their own bucket.
    return math.floor(per_decade * math.log10(step) + 1e-9)
