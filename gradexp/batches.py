"""Batch modes: full, stochastic and mini-batch, as slices of a seeded per-epoch permutation."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor

Micro = list[tuple[Tensor, Tensor]]  # the micro-batches whose gradients make one update


class Batches:
    """Yields, for each optimizer step, its micro-batches. Data never leaves the device.

    size=None is full batch. With accumulate=k each update sums k micro-batches of `size`
    samples (full batch: the training set cut into k parts). One gather per epoch, then views.
    """

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        *,
        size: int | None,
        accumulate: int,
        shuffle: bool,
        drop_last: bool,
        generator: torch.Generator,
    ):
        n = x.shape[0]
        self.x, self.y, self.n = x, y, n
        self.size = math.ceil(n / accumulate) if size is None else size
        self.accumulate, self.shuffle, self.drop_last = accumulate, shuffle, drop_last
        self.generator = generator
        self.epoch_state: Tensor | None = None  # the generator when this epoch began (checkpoints)
        starts = range(0, n, self.size)
        if drop_last and n % self.size:
            starts = starts[:-1]
        self.slices = [(s, min(s + self.size, n)) for s in starts]

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.slices) / self.accumulate)

    def epoch(self, skip: int = 0) -> Iterator[Micro]:
        """This epoch's updates, after the first `skip` (a resumed run has done those)."""
        x, y = self.x, self.y
        if self.shuffle:
            self.epoch_state = self.generator.get_state()
            perm = torch.randperm(self.n, generator=self.generator, device=self.generator.device)
            x, y = x[perm], y[perm]
        k = self.accumulate
        for i in range(skip * k, len(self.slices), k):
            yield [(x[a:b], y[a:b]) for a, b in self.slices[i : i + k]]
