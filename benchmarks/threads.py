"""How many torch threads a small model should train with, on an idle and on a busy machine.

    python benchmarks/threads.py                  # idle, then beside 2 busy processes
    python benchmarks/threads.py --load 0 4       # the competing loads to try

For each competing load (that many processes spinning on the CPU, started here and stopped
after) and each batch mode, gradexp's train() runs the digits MLP with 1, 2, … threads,
interleaved, median of the repeats; the figure is each thread count's time over 1 thread's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from gradexp import data as datasets
from gradexp.batches import Batches
from gradexp.models import MLP
from gradexp.record.history import History
from gradexp.record.logger import Logger
from gradexp.train import Plan, train

MODES = {"stochastic": (1, 1500), "minibatch": (64, 300), "full": (None, 60)}  # size, steps
SPIN = "import time\nend = time.time() + 600\nwhile time.time() < end: pass"


def once(x, y, size: int | None, steps: int, threads: int, optimizer: str) -> float:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = MLP(64, 10, hidden=[128])
    opt = getattr(torch.optim, optimizer)(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    batches = Batches(x, y, size=size, accumulate=1, shuffle=True, drop_last=False, generator=gen)
    names = [n for n, _ in model.named_parameters()]
    with tempfile.TemporaryDirectory() as tmp:
        logger = Logger(Path(tmp))
        history = History(logger, ["train/loss", *(f"grad_norm/{n}" for n in names)], 10)
        start = time.perf_counter()
        train(model, nn.CrossEntropyLoss(), opt, None, batches, history,
              Plan(epochs=10**6, max_steps=steps))  # fmt: skip
        elapsed = time.perf_counter() - start
        logger.close()
    return elapsed / steps


def measure(x, y, threads: list[int], repeats: int, optimizer: str) -> dict:
    out = {}
    for mode, (size, steps) in MODES.items():
        times = {t: [] for t in threads}
        for r in range(repeats):
            for t in threads if r % 2 == 0 else threads[::-1]:
                times[t].append(once(x, y, size, steps, t, optimizer))
        out[mode] = {t: statistics.median(v) for t, v in times.items()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--load", type=int, nargs="+", default=[0, 2],
                        help="competing processes spinning on the CPU")  # fmt: skip
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--optimizer", default="Adam")
    args = parser.parse_args()
    d = datasets.split(datasets.sklearn_dataset("digits"), eval_fraction=0.2, standardize=True,
                       split_seed=0, device=torch.device("cpu"), dtype=torch.float32)  # fmt: skip
    print(
        f"digits MLP 64-128-10, {args.optimizer}, {os.cpu_count()} cores, median of "
        f"{args.repeats}; ms/step and the ratio to 1 thread"
    )
    for load in args.load:
        spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(load)]
        try:
            result = measure(d.x_train, d.y_train, args.threads, args.repeats, args.optimizer)
        finally:
            for p in spinners:
                p.kill()
                p.wait()
        for mode, by in result.items():
            cells = [f"{t} thr {1e3 * v:.3f} ms ({v / by[args.threads[0]]:.2f}×)"
                     for t, v in by.items()]  # fmt: skip
            print(f"load {load}  {mode:10} " + "   ".join(cells))


if __name__ == "__main__":
    main()
