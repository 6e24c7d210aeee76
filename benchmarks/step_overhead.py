"""Harness step vs a hand-written PyTorch loop: same model, data and steps, same process.

    python benchmarks/step_overhead.py                 # digits MLP, CPU, the three batch modes
    python benchmarks/step_overhead.py --mnist --device cuda

Each repeat runs gradexp's train() (loss, global and per-layer gradient norms every step,
interval aggregation, TensorBoard events and metrics.jsonl) and a hand-written loop that takes
the same measurements every step (kept on the device), back to back, alternating which goes
first; the figure is the median of the per-repeat time ratios. "vs bare" is the ratio to the
hand-written loop without the measurements, for reference.
Both wall time and this process's CPU time are measured: on a shared machine the CPU-time
ratio is the steadier one (run with --threads 1 so CPU time is one thread's work).
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

import torch
from torch import nn

from gradexp import data as datasets
from gradexp.batches import Batches
from gradexp.models import MLP
from gradexp.record.history import History
from gradexp.record.logger import Logger
from gradexp.train import Plan, train

MODES = {"minibatch": (64, 300), "full": (None, 60), "stochastic": (1, 3000)}  # size, steps


def load(mnist: bool, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    if mnist:  # MNIST-sized random data: 60,000 × 784, 10 classes
        g = torch.Generator().manual_seed(0)
        x, y = torch.randn(60_000, 784, generator=g), torch.randint(0, 10, (60_000,), generator=g)
        return x.to(device), y.to(device), [784, 256, 256, 10]
    d = datasets.split(
        datasets.sklearn_dataset("digits"),
        eval_fraction=0.2,
        standardize=True,
        split_seed=0,
        device=device,
        dtype=torch.float32,
    )
    return d.x_train, d.y_train, [64, 128, 10]


def model_and_optimizer(sizes: list[int], device: torch.device):
    torch.manual_seed(0)
    model = MLP(sizes[0], sizes[-1], hidden=sizes[1:-1]).to(device)
    return model, torch.optim.SGD(model.parameters(), lr=0.01)


def hand_loop(x, y, sizes, size, steps, device, measure: bool = True) -> tuple[float, float]:
    """The loop one writes by hand: data on the device, slices of a per-epoch permutation.
    With `measure`, it also takes the loss and the global and per-layer gradient norms every
    step and keeps them on the device, as a careful hand-written loop would; without, it is
    the bare loop."""
    model, opt = model_and_optimizer(sizes, device)
    loss_fn, gen = nn.CrossEntropyLoss(), torch.Generator(device=device).manual_seed(0)
    n, size = len(x), size or len(x)
    sync(device)
    clock, step, kept = Clock(), 0, []
    while step < steps:
        perm = torch.randperm(n, generator=gen, device=device)
        xs, ys = x[perm], y[perm]
        for i in range(0, n, size):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xs[i : i + size]), ys[i : i + size])
            loss.backward()
            if measure:
                layer = torch._foreach_norm([p.grad for p in model.parameters()])
                kept.append((loss.detach(), torch.linalg.vector_norm(torch.stack(layer)), layer))
            opt.step()
            step += 1
            if step == steps:
                break
    sync(device)
    return clock.stop()


def harness(x, y, sizes, size, steps, device, out: Path) -> float:
    model, opt = model_and_optimizer(sizes, device)
    gen = torch.Generator(device=device).manual_seed(0)
    batches = Batches(x, y, size=size, accumulate=1, shuffle=True, drop_last=False, generator=gen)
    names = [n for n, _ in model.named_parameters()]
    columns = ["train/loss", *(f"grad_norm/{n}" for n in names)]
    logger = Logger(out)
    history = History(logger, columns, log_every=10)
    sync(device)
    clock = Clock()
    plan = Plan(epochs=10**9, max_steps=steps, log_every=10, flush_secs=2.0)
    train(model, nn.CrossEntropyLoss(), opt, None, batches, history, plan)
    sync(device)
    elapsed = clock.stop()
    logger.close()
    return elapsed


class Clock:
    def __init__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def stop(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--mnist", action="store_true", help="784-256-256-10 MLP, 60k samples")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: CUDA is not available here; use --device cpu")
    x, y, sizes = load(args.mnist, device)
    print(
        f"model {'-'.join(map(str, sizes))}, {len(x)} samples, {device}, "
        f"{torch.get_num_threads()} threads, median of {args.repeats} repeats"
    )
    print(
        f"{'mode':<11}{'steps':>7}{'hand ms/step':>14}{'gradexp ms/step':>17}"
        f"{'wall ratio':>12}{'cpu ratio':>11}{'vs bare':>12}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for mode in args.modes:
            size, steps = MODES[mode]
            if args.mnist and mode == "stochastic":
                steps = 2000
            hand_loop(x, y, sizes, size, max(5, steps // 10), device)  # warm-up
            harness(x, y, sizes, size, max(5, steps // 10), device, Path(tmp, f"warm-{mode}"))
            walls, cpus, bare_walls, hands = [], [], [], []
            for r in range(args.repeats):
                out = Path(tmp, f"{mode}-{r}")
                runs = [
                    partial(harness, x, y, sizes, size, steps, device, out),
                    partial(hand_loop, x, y, sizes, size, steps, device),
                    partial(hand_loop, x, y, sizes, size, steps, device, measure=False),
                ]
                order = runs if r % 2 else runs[::-1]  # alternate who goes first
                times = {id(f): f() for f in order}
                ours, hand, bare = (times[id(f)] for f in runs)
                walls.append(ours[0] / hand[0])
                cpus.append(ours[1] / hand[1])
                bare_walls.append(ours[0] / bare[0])
                hands.append(hand[0])
            hand_ms = 1000 * statistics.median(hands) / steps
            ratio, cpu = statistics.median(walls), statistics.median(cpus)
            bare = statistics.median(bare_walls)
            print(
                f"{mode:<11}{steps:>7}{hand_ms:>14.3f}{hand_ms * ratio:>17.3f}"
                f"{ratio:>11.2f}×{cpu:>10.2f}×{bare:>11.2f}×"
            )
            assert math.isfinite(ratio) and math.isfinite(cpu)


if __name__ == "__main__":
    main()
