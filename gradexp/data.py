"""Data sets: loaders that return arrays, and the split that puts them on the device as tensors."""

from __future__ import annotations

import csv
import functools
import gzip
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from gradexp.errors import check_choice

SKLEARN = ("digits", "iris", "breast_cancer", "wine", "diabetes")
CSV_SETS = {"iris": "iris.csv", "wine": "wine_data.csv", "breast_cancer": "breast_cancer.csv"}
TASKS = ("classification", "regression")


@dataclass
class Arrays:
    """A data set as loaded, before the split: features (n, d), targets (n,) and its task."""

    x: np.ndarray
    y: np.ndarray
    task: str
    meta: dict = field(default_factory=dict)  # e.g. the true w and b of synthetic regression


@dataclass
class Data:
    """Train and eval tensors on the device. Classification targets are class indices."""

    x_train: Tensor
    y_train: Tensor
    x_eval: Tensor
    y_eval: Tensor
    task: str
    num_classes: int | None
    meta: dict

    @property
    def n_train(self) -> int:
        return self.x_train.shape[0]

    @property
    def in_features(self) -> int:
        return self.x_train.shape[1]

    @property
    def out_features(self) -> int:
        if self.task == "classification":
            return self.num_classes
        return 1 if self.y_train.ndim == 1 else self.y_train.shape[1]


def sklearn_dataset(name: str) -> Arrays:
    """One of scikit-learn's bundled data sets (no download)."""
    check_choice("name", name, SKLEARN)
    x, y = _bundled(name)
    task = "regression" if name == "diabetes" else "classification"
    return Arrays(x, y, task)


@functools.cache
def _bundled(name: str) -> tuple[np.ndarray, np.ndarray]:
    """The arrays scikit-learn's load_<name>() returns, read from the files it ships, parsed as
    it parses them, without importing it (0.6–0.9 s here; tested equal to its loaders).
    Parsed once per process: a sweep's jobs share the read-only arrays."""
    folder = _sklearn_data()
    if name == "digits" and (folder / "digits.csv.gz").is_file():
        with gzip.open(folder / "digits.csv.gz", "rt", encoding="utf-8") as f:
            table = np.loadtxt(f, delimiter=",")
        x, y = table[:, :-1], table[:, -1].astype(int)
    elif name in CSV_SETS and (folder / CSV_SETS[name]).is_file():
        with (folder / CSV_SETS[name]).open(encoding="utf-8", newline="") as f:
            rows = csv.reader(f)
            n, d = (int(v) for v in next(rows)[:2])
            x, y = np.empty((n, d)), np.empty(n, dtype=int)
            for i, row in enumerate(rows):
                x[i], y[i] = np.asarray(row[:-1], dtype=np.float64), int(row[-1])
    else:  # diabetes (scaled by sklearn itself), or a scikit-learn that moved its files
        from sklearn import datasets

        bunch = getattr(datasets, f"load_{name}")()
        x, y = bunch.data, bunch.target
    x, y = x.astype(np.float64), np.asarray(y)
    x.flags.writeable = y.flags.writeable = False
    return x, y


def _sklearn_data() -> Path:
    spec = importlib.util.find_spec("sklearn")  # locates the package without importing it
    where = spec.submodule_search_locations if spec else None
    return Path(where[0]) / "datasets" / "data" if where else Path("/nonexistent")


def regression(n: int, features: int, noise: float, seed: int) -> Arrays:
    """y = Xw + b + noise·ε with X, w, b, ε standard normal; w and b are kept in meta."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, features))
    w, b = rng.standard_normal(features), rng.standard_normal()
    y = x @ w + b + noise * rng.standard_normal(n)
    return Arrays(x, y, "regression", {"true_w": w, "true_b": b})


def blobs(n: int, features: int, classes: int, spread: float, seed: int) -> Arrays:
    from sklearn.datasets import make_blobs

    x, y = make_blobs(n, features, centers=classes, cluster_std=spread, random_state=seed)
    return Arrays(x, y, "classification")


def moons(n: int, noise: float, seed: int) -> Arrays:
    from sklearn.datasets import make_moons

    x, y = make_moons(n, noise=noise, random_state=seed)
    return Arrays(x, y, "classification")


def split(
    arrays: Arrays,
    *,
    eval_fraction: float,
    standardize: bool,
    split_seed: int,
    device: torch.device,
    dtype: torch.dtype,
) -> Data:
    """A seeded train/eval split, standardised on the training part, moved to the device once."""
    x, y = arrays.x.astype(np.float64), np.asarray(arrays.y)
    num_classes, meta = None, dict(arrays.meta)
    if arrays.task == "classification":
        classes, y = np.unique(y, return_inverse=True)  # labels 0..C-1 whatever the file used
        num_classes = len(classes)
        if "classes" not in meta and not np.array_equal(classes, np.arange(num_classes)):
            meta["classes"] = classes.tolist()  # class k is the k-th smallest label
    else:
        y = y.astype(np.float64)
    order = np.random.default_rng(split_seed).permutation(len(x))
    n_eval = round(eval_fraction * len(x))
    train, held = order[n_eval:], order[:n_eval]
    if standardize:
        mean, std = x[train].mean(0), x[train].std(0)
        std[std == 0] = 1.0  # constant features (digits' blank pixels) stay as they are
        x = (x - mean) / std
        if arrays.task == "regression":
            y_mean, y_std = y[train].mean(0), y[train].std(0)
            y = (y - y_mean) / np.where(y_std == 0, 1.0, y_std)
            meta |= {"target_mean": y_mean, "target_std": y_std}

    def tensor(a, kind):
        return torch.as_tensor(a, device=device, dtype=torch.long if kind else dtype)

    is_cls = arrays.task == "classification"
    return Data(
        tensor(x[train], False),
        tensor(y[train], is_cls),
        tensor(x[held], False),
        tensor(y[held], is_cls),
        arrays.task,
        num_classes,
        meta,
    )
