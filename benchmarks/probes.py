"""What each probe costs: training time with the probe against the same run without it.

    python benchmarks/probes.py [--steps 300] [--repeats 5]

Runs the default experiment (digits MLP, mini-batches of 64) through gradexp's own composition
and loop, in this process, interleaving the variants and taking the median of the repeats, so
load from other processes hurts every variant alike. Prints time per step and the ratio to
the plain run. Targets (issue 3): per-sample statistics every step ≤ 3× a plain step;
sharpness (20 Hessian-vector products) every 50 steps adds ≤ 25%.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from gradexp import CONF_DIR, VERSION_BASE, run

VARIANTS = {
    "plain": [],
    "noise every step (hooks, no G)": ["probes=[noise]", "probes.noise.full_every=null"],
    "noise every step (hooks, G every 10)": ["probes=[noise]"],
    "noise every step (hooks, G every step)": ["probes=[noise]", "probes.noise.full_every=1"],
    "noise every step (vmap, no G)": [
        "probes=[noise]", "probes.noise.method=vmap", "probes.noise.full_every=null",
    ],
    "sharpness every 50 (20 HVPs)": ["probes=[sharpness]", "probes.sharpness.tol=0"],
    "sharpness every 50 (≤ 20 HVPs, tol 1e-3)": ["probes=[sharpness]"],
    "sharpness every 50 (20 HVPs, fixed batch 256)": [
        "probes=[sharpness]", "probes.sharpness.batch=256", "probes.sharpness.tol=0",
    ],
    "sharpness every 50 (20 HVPs, lanczos)": [
        "probes=[sharpness]", "probes.sharpness.method=lanczos",
    ],
    "hessian trace every 100 (10 samples)": ["probes=[hessian]"],
    "taylor every 10": ["probes=[taylor]"],
    "trajectory every 10": ["probes=[trajectory]"],
    "gradcheck every 100 (20 coords)": ["probes=[gradcheck]"],
}  # fmt: skip


def train_seconds(overrides: list[str], steps: int) -> float:
    """Seconds of training (history's clock: the loop, probes and logging, not the set-up)."""
    with initialize_config_dir(config_dir=str(CONF_DIR), **VERSION_BASE):
        cfg = compose("config", [*overrides, f"max_steps={steps}", "progress=false"],
                      return_hydra_config=True)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        summary = run.run(cfg, Path(tmp), {}, overrides)
    assert summary["status"] == "ok", summary
    return summary["elapsed_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", nargs="*", help="variant names containing these words")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()
    # One thread: on a shared 2-core machine two threads fight other processes for the cores and
    # single timings then vary 5×; with one, repeats agree within about 10%.
    torch.set_num_threads(args.threads)
    names = [n for n in VARIANTS if n == "plain" or not args.only or any(w in n for w in args.only)]
    for name in names:  # warm-up: imports, torch.func's first-call set-up, the data loader
        train_seconds(VARIANTS[name], 30)
    times: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(args.repeats):
        for name in names:  # interleaved: slow spells of a shared machine hit every variant
            times[name].append(train_seconds(VARIANTS[name], args.steps))
    base = statistics.median(times["plain"])
    print(f"{'variant':<42} {'ms/step':>8} {'ratio':>7}")
    for name in names:
        t = statistics.median(times[name])
        print(f"{name:<42} {1000 * t / args.steps:8.3f} {t / base:7.2f}")


if __name__ == "__main__":
    main()
