"""Data sets: loaders that return arrays, and the split that puts them on the device as tensors."""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from gradexp.errors import ConfigError, check_choice

SKLEARN = ("digits", "iris", "breast_cancer", "wine", "diabetes")
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
    # Parsed once per process (0.1–0.3 s for digits): a sweep's jobs share the read-only arrays.
    from sklearn import datasets

    bunch = getattr(datasets, f"load_{name}")()
    x, y = bunch.data.astype(np.float64), bunch.target
    x.flags.writeable = y.flags.writeable = False
    return x, y


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


def from_file(path: str, target: str, task: str = "auto") -> Arrays:
    """A CSV with a header row, or an .npz of named arrays; every value numeric and finite."""
    check_choice("task", task, ("auto", *TASKS))
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError("path", path, "no such file (give a CSV or .npz path)")
    columns = _read_npz(file, path, target) if file.suffix == ".npz" else _read_csv(file, path)
    if target not in columns:
        raise ConfigError(
            "target", target, f"not a column of {path}; columns: {', '.join(columns)}"
        )
    y = columns.pop(target)
    if not columns:
        raise ConfigError("path", path, "has no feature columns besides the target")
    x = np.column_stack(list(columns.values()))
    if x.shape[0] == 0:
        raise ConfigError("path", path, "holds no rows of data")
    if task == "auto":
        integral = np.all(y == np.round(y))
        task = "classification" if integral and len(np.unique(y)) <= 50 else "regression"
    return Arrays(x, y, task, {"columns": list(columns)})


def _read_npz(file: Path, path: str, target: str) -> dict[str, np.ndarray]:
    try:
        arrays = dict(np.load(file, allow_pickle=False))
    except Exception as e:
        raise ConfigError("path", path, f"not a readable .npz file ({e})") from None
    columns = {}
    for name, a in arrays.items():
        if a.dtype.kind not in "biuf":
            raise ConfigError("path", path, f"array {name!r} is not numeric (dtype {a.dtype})")
        if a.ndim == 2 and name != target:  # a feature matrix: one column per feature
            columns |= {f"{name}[{j}]": a[:, j].astype(np.float64) for j in range(a.shape[1])}
        elif a.ndim == 1:
            columns[name] = a.astype(np.float64)
        else:
            raise ConfigError("path", path, f"array {name!r} has shape {a.shape}; need 1-D or 2-D")
    lengths = {len(c) for c in columns.values()}
    if len(lengths) > 1:
        raise ConfigError("path", path, f"arrays have different lengths {sorted(lengths)}")
    _check_finite(columns, path)
    return columns


def _read_csv(file: Path, path: str) -> dict[str, np.ndarray]:
    with file.open(newline="") as f:
        rows = list(csv.reader(f))
    if not rows or not any(rows[0]):
        raise ConfigError("path", path, "is empty; need a header row and data rows")
    header, body = [h.strip() for h in rows[0]], rows[1:]
    values = np.empty((len(body), len(header)))
    for i, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise ConfigError(
                "path", path, f"line {i} has {len(row)} fields, the header {len(header)}"
            )
        for j, cell in enumerate(row):
            try:
                values[i - 2, j] = float(cell)
            except ValueError:
                raise ConfigError(
                    "path", path, f"line {i}, column {header[j]!r}: {cell!r} is not a number"
                ) from None
    columns = {h: values[:, j] for j, h in enumerate(header)}
    _check_finite(columns, path)
    return columns


def _check_finite(columns: dict[str, np.ndarray], path: str) -> None:
    for name, c in columns.items():
        bad = np.flatnonzero(~np.isfinite(c))
        if bad.size:
            raise ConfigError(
                "path",
                path,
                f"column {name!r} has {c[bad[0]]} in row {bad[0] + 1}; all values must be finite",
            )


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
    num_classes = None
    if arrays.task == "classification":
        classes, y = np.unique(y, return_inverse=True)  # labels 0..C-1 whatever the file used
        num_classes = len(classes)
    else:
        y = y.astype(np.float64)
    order = np.random.default_rng(split_seed).permutation(len(x))
    n_eval = round(eval_fraction * len(x))
    train, held = order[n_eval:], order[:n_eval]
    meta = dict(arrays.meta)
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
