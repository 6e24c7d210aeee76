"""What the preset judges share: a run's experiment rebuilt from its saved config, its logged
series, a figure saved beside the verdict."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from omegaconf import OmegaConf


def rebuilt(run):
    """The run's experiment (data, model at its initial parameters), built again from its
    .hydra/config.yaml: the data the verdict's closed form is computed on."""
    from gradexp.build import build

    return build(OmegaConf.create(run.config), dict(run.summary.get("choices", {})))


def series(run, tag: str) -> tuple[np.ndarray, np.ndarray]:
    steps, values = run.metrics.get(tag, (np.array([], dtype=int), np.array([])))
    return steps, values


def final(run, tag: str = "train/loss") -> float:
    value = run.summary.get("final", {}).get(tag, float("nan"))
    return float(value) if isinstance(value, int | float | str) else float("nan")


def save(fig: Figure, root: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(root / name, dpi=110)
    return name


def relative(a: float, b: float) -> float:
    return abs(a - b) / abs(b) if b else abs(a - b)
