"""How much of a sweep's wall time is spent outside the training steps.

The issue's sweep: 4 optimizers × 3 batch modes × 2 learning rates on the digits MLP, one epoch
each (24 jobs). Time inside train() is each summary's elapsed_s; the rest of the sweep's wall time
(interpreter and torch start-up, Hydra composing each job, building, writing logs and summaries)
is overhead. The basic launcher runs every job in one process, so torch is imported once.

    python benchmarks/sweep_overhead.py                      # basic launcher, median of 3
    python benchmarks/sweep_overhead.py --launcher joblib --repeats 1
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SWEEP = [
    "optimizer=sgd,momentum,adam,rmsprop",
    "batch=full,minibatch,stochastic",
    "optimizer.lr=0.01,0.001",
    "epochs=1",
    "progress=false",
]


def sweep(launcher: str, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        args = [sys.executable, "-m", "gradexp", "-m", *SWEEP, f"hydra.sweep.dir={tmp}/sweep"]
        if launcher != "basic":
            args.append(f"hydra/launcher={launcher}")
        start = time.perf_counter()
        proc = subprocess.run([*args, *extra], capture_output=True, text=True,
                              env=os.environ | {"TQDM_DISABLE": "1"})  # fmt: skip
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(f"sweep failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        summaries = [json.loads(f.read_text()) for f in Path(tmp).glob("sweep/*/summary.json")]
    train = sum(s["elapsed_s"] for s in summaries)
    in_job = sum(s["wall_time_s"] for s in summaries)
    return {"jobs": len(summaries), "wall": wall, "train": train, "in_job": in_job}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--launcher", default="basic", help="basic, joblib, submitit_local…")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("extra", nargs="*", help="more overrides for every job")
    args = parser.parse_args()
    results = [sweep(args.launcher, args.extra) for _ in range(args.repeats)]
    for r in results:
        print(f"{r['jobs']} jobs: wall {r['wall']:.1f} s, in train() {r['train']:.1f} s, "
              f"in run.main {r['in_job']:.1f} s, outside train() "
              f"{100 * (1 - r['train'] / r['wall']):.1f}%")  # fmt: skip
    mid = sorted(results, key=lambda r: r["wall"])[len(results) // 2]  # the median sweep
    print(
        f"median ({args.launcher}): wall {mid['wall']:.1f} s; outside the training steps "
        f"{100 * (1 - mid['train'] / mid['wall']):.1f}% of the wall time"
    )


if __name__ == "__main__":
    main()
