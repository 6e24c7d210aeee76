"""What checkpoints cost: train() with and without them, same model, data and steps, same process.

    python benchmarks/checkpoint_overhead.py            # digits MLP, CPU, every 100 steps
    python benchmarks/checkpoint_overhead.py --every 10

Each repeat runs train() without checkpoints and with a checkpoint every `--every` steps, back to
back, alternating which goes first; the figure is the median of the per-repeat time ratios.
It also reports one checkpoint's size and the median time to save and to load one.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from gradexp import data as datasets
from gradexp.batches import Batches
from gradexp.durable.checkpoint import Checkpointer, Position, checkpoints, load_latest
from gradexp.durable.signals import StopSignals
from gradexp.models import MLP
from gradexp.record.history import History
from gradexp.record.logger import Logger
from gradexp.train import Plan, train


def setup(run_dir: Path, size: int | None):
    torch.manual_seed(0)
    d = datasets.split(datasets.sklearn_dataset("digits"), eval_fraction=0.2, standardize=True,
                       split_seed=0, device=torch.device("cpu"), dtype=torch.float32)  # fmt: skip
    model = MLP(64, 10, hidden=[128])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    batches = Batches(d.x_train, d.y_train, size=size, accumulate=1, shuffle=True,
                      drop_last=False, generator=torch.Generator().manual_seed(0))  # fmt: skip
    columns = ["train/loss", *(f"grad_norm/{n}" for n, _ in model.named_parameters())]
    logger = Logger(run_dir)
    history = History(logger, columns, 10)
    return model, optimizer, batches, history, logger


def checkpointer(run_dir, every, model, optimizer, batches, history, logger) -> Checkpointer:
    return Checkpointer(
        run_dir,
        every,
        model=model,
        optimizer=optimizer,
        scheduler=None,
        batches=batches,
        history=history,
        logger=logger,
        config={},
    )


def once(every: int, steps: int, size: int | None) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        model, optimizer, batches, history, logger = setup(Path(tmp), size)
        saver = (
            checkpointer(tmp, every, model, optimizer, batches, history, logger) if every else None
        )
        start = time.perf_counter()
        with StopSignals() as interrupt:
            plan = Plan(epochs=10**6, max_steps=steps, log_every=10, flush_secs=2.0)
            train(model, torch.nn.CrossEntropyLoss(), optimizer, None, batches, history, plan,
                  checkpoint=saver, interrupt=interrupt)  # fmt: skip
        elapsed = time.perf_counter() - start
        logger.close()
        return elapsed


def save_load_cost() -> tuple[int, float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        model, optimizer, batches, history, logger = setup(Path(tmp), 64)
        saver = checkpointer(tmp, 1, model, optimizer, batches, history, logger)
        saves, loads = [], []
        for step in range(1, 21):
            t = time.perf_counter()
            saver.save(Position(step=step))
            saves.append(time.perf_counter() - t)
            t = time.perf_counter()
            load_latest(tmp)
            loads.append(time.perf_counter() - t)
        size = checkpoints(Path(tmp) / "checkpoints")[0].stat().st_size
        logger.close()
    return size, statistics.median(saves), statistics.median(loads)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for mode, size, steps in (("minibatch", 64, 1000), ("stochastic", 1, 3000)):
        once(args.every, 50, size)  # warm-up
        ratios = []
        for r in range(args.repeats):
            order = (0, args.every) if r % 2 == 0 else (args.every, 0)
            times = {every: once(every, steps, size) for every in order}
            ratios.append(times[args.every] / times[0])
        print(
            f"{mode:10s} {steps} steps, checkpoint every {args.every}: "
            f"{statistics.median(ratios):.3f}× the time without (median of {args.repeats})"
        )
    size, save, load = save_load_cost()
    print(
        f"one checkpoint (digits MLP, 10k parameters): {size / 1024:.0f} KiB, "
        f"save {1000 * save:.1f} ms (with fsync), load {1000 * load:.1f} ms"
    )


if __name__ == "__main__":
    main()
