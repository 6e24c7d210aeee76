"""Configurations of finished runs: the runs of one setting (all seeds), their metrics, order."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from gradexp.study import runs as runs_io
from gradexp.study.runs import Run

# name → where it sits in summary.json; the --sort choices. Accuracy sorts best-first (highest).
METRICS = {
    "eval_loss": ("final", "eval/loss"),
    "best_eval_loss": ("best", "eval/loss"),
    "train_loss": ("final", "train/loss"),
    "best_train_loss": ("best", "train/loss"),
    "eval_accuracy": ("final", "eval/accuracy"),
    "best_eval_accuracy": ("best", "eval/accuracy"),
    "steps": (None, "steps"),
    "epochs": (None, "epochs"),
    "wall_time_s": (None, "wall_time_s"),
}
HIGHER_IS_BETTER = {"eval_accuracy", "best_eval_accuracy"}
STATUSES = ("ok", "diverged", "failed")


def metric(run: Run, name: str) -> float:
    section, key = METRICS[name]
    source = run.summary.get(section, {}) if section else run.summary
    return runs_io.to_float(source.get(key))


@dataclass
class Config:
    """One configuration (overrides minus seed) and its runs, one per seed."""

    key: str
    runs: list[Run] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.runs)

    def values(self, name: str) -> np.ndarray:
        """The metric over the runs that finished (ok or diverged); a failed run has none."""
        return np.array([metric(r, name) for r in self.runs if r.status != "failed"], float)

    def mean_std(self, name: str) -> tuple[float, float]:
        """Mean and sample standard deviation (ddof=1) over seeds; std is nan for one seed.
        A diverged seed's inf or nan carries into the mean: the setting is not safe."""
        v = self.values(name)
        if not len(v):
            return math.nan, math.nan
        return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else math.nan


def group(runs: list[Run]) -> list[Config]:
    configs: dict[str, Config] = {}
    for run in runs:
        configs.setdefault(run.key, Config(run.key)).runs.append(run)
    return list(configs.values())


def sort(configs: list[Config], by: str) -> list[Config]:
    def key(c: Config):
        m = c.mean_std(by)[0]
        m = -m if by in HIGHER_IS_BETTER else m
        return (math.isnan(m), m)  # nan (no finished run) last

    return sorted(configs, key=key)
