"""Losses that know which targets they take: class indices, one-hot vectors or values."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class MSELoss(nn.MSELoss):
    """Mean squared error over every output; class labels are compared as one-hot vectors."""

    tasks = ("regression", "classification")

    def targets(self, y: Tensor, num_classes: int | None, dtype: torch.dtype) -> Tensor:
        if num_classes is not None:
            return nn.functional.one_hot(y, num_classes).to(dtype)
        return y.reshape(len(y), -1).to(dtype)


class CrossEntropyLoss(nn.CrossEntropyLoss):
    """Softmax cross-entropy on class indices."""

    tasks = ("classification",)

    def targets(self, y: Tensor, num_classes: int | None, dtype: torch.dtype) -> Tensor:
        return y


class HingeLoss(nn.MultiMarginLoss):
    """Multi-class margin loss: mean over classes j ≠ y of max(0, margin − s_y + s_j)."""

    tasks = ("classification",)

    def targets(self, y: Tensor, num_classes: int | None, dtype: torch.dtype) -> Tensor:
        return y
