"""How large `diverge.factor` should be: the loss's largest excursion in runs that converge,
against the step at which runs that blow up would be caught.

    python benchmarks/divergence.py

Each run logs every step's loss (log_every=1, the rule itself off). The excursion of a run is
max over t of loss_t / mean(loss_1 … loss_min(t, W)), W = explode.window (10): what the rule
compares with diverge.factor. Healthy runs span the data sets, models, losses, optimizers and
batch modes at learning rates up to near their stability edge (catapult-like spikes included);
the diverging runs are the cases the rule exists for.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir

from gradexp import CONF_DIR, VERSION_BASE, run
from gradexp.record.stops import levels

COMMON = ["log_every=1", "diverge.factor=null", "progress=false", "eval_every=null"]
HEALTHY = [
    [], ["optimizer.lr=1.0"], ["batch=stochastic", "epochs=1", "optimizer.lr=0.01"],
    ["batch=stochastic", "epochs=1", "optimizer=adam"], ["batch=full", "epochs=200",
                                                          "optimizer.lr=1.5"],
    ["optimizer=momentum", "optimizer.lr=0.1"], ["optimizer=adam", "optimizer.lr=0.01"],
    ["loss=mse", "batch=full", "epochs=300", "optimizer.lr=2", "model.activation=tanh"],
    ["loss=mse", "batch=full", "epochs=300", "optimizer.lr=1", "model.hidden=[512]"],
    ["loss=hinge", "model=linear", "l2=0.01"], ["data=iris", "batch=stochastic", "epochs=5"],
    ["data=wine", "optimizer=rmsprop"], ["data=breast_cancer", "model=linear",
                                          "batch=stochastic", "epochs=3", "optimizer.lr=0.05"],
    ["data=diabetes", "loss=mse", "model=linear", "batch=stochastic", "epochs=3",
     "optimizer.lr=0.01"],
    ["data=regression", "loss=mse", "model=linear", "batch=stochastic", "epochs=2",
     "optimizer.lr=0.05"],
    ["data=regression", "loss=mse", "model=linear", "batch=full", "epochs=100",
     "optimizer.lr=0.9"],
    ["data=moons", "model.activation=tanh", "batch=stochastic", "epochs=3"],
    ["model=rosenbrock", "optimizer=adam", "optimizer.lr=0.02", "epochs=1500"],
    ["model=quadratic", "optimizer.lr=0.19", "epochs=200"],
    ["model=parabola", "optimizer.lr=0.99", "epochs=100"],
]  # fmt: skip
DIVERGING = [
    ["model=parabola", "optimizer.lr=1.1", "epochs=60"],
    ["batch=stochastic", "epochs=1", "optimizer.lr=0.1", "data=diabetes", "loss=mse",
     "model=linear"],
    ["optimizer=sgd", "batch=stochastic", "epochs=1"],
    ["model=quadratic", "optimizer.lr=0.21", "epochs=300"],
    ["loss=mse", "batch=full", "epochs=200", "optimizer.lr=8"],
]  # fmt: skip


def losses(overrides: list[str]) -> np.ndarray:
    with initialize_config_dir(config_dir=str(CONF_DIR), **VERSION_BASE):
        cfg = compose("config", overrides=[*COMMON, *overrides], return_hydra_config=True)
    choices = {k: v for k, v in cfg.hydra.runtime.choices.items() if not k.startswith("hydra/")}
    with tempfile.TemporaryDirectory() as tmp:
        summary = run.main(cfg, Path(tmp), choices, overrides)
        lines = (Path(tmp) / "metrics.jsonl").read_text().splitlines()
    assert summary["status"] in ("ok", "diverged"), summary
    rows = [json.loads(x) for x in lines]
    return np.array([float(r["train/loss"]) for r in rows if "epoch" not in r and
                     "train/loss" in r])  # fmt: skip


def excursion(loss: np.ndarray, window: int = 10) -> np.ndarray:
    """loss_t over the mean of the first min(t, window) losses (gradexp's own levels())."""
    level, _ = levels([], loss, window)
    with np.errstate(all="ignore"):
        return np.abs(loss) / np.abs(level)


def main() -> None:
    worst = []
    for o in HEALTHY:
        r = excursion(losses(o))
        worst.append(np.nanmax(r))
        print(f"healthy   max excursion {worst[-1]:10.3g}   {' '.join(o) or '(defaults)'}")
    for o in DIVERGING:
        r = excursion(losses(o))
        caught = {f: int(np.argmax(~(r <= f))) + 1 if (~(r <= f)).any() else None
                  for f in (1e2, 1e3, 1e4, 1e6)}  # fmt: skip
        print(f"diverging caught at step {caught}   {' '.join(o)}")
    print(f"largest excursion of a healthy run: {max(worst):.3g}")


if __name__ == "__main__":
    main()
