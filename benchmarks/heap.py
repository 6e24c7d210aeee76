"""What gradexp's malloc settings (gradexp.runtime.keep_heap) change: the time of a training
step with them against glibc's defaults (GRADEXP_MALLOC=default), for one run and for a
32-member vectorised group, in each batch mode; each measured in a fresh process, the two
settings alternating, median of the per-pair ratios.

    python benchmarks/heap.py                 # 3 pairs per case, 1 thread
    python benchmarks/heap.py --pairs 5 --modes full
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODES = {"minibatch": "batch=minibatch", "stochastic": "batch=stochastic", "full": "batch=full"}
CHILD = r"""
import sys, time, torch
sys.path.insert(0, {tests!r})
from conftest import make_cfg
from gradexp.build import build, build_member
from gradexp.runtime import keep_heap
from gradexp.vector.members import stack
from gradexp.vector.train import forward_backward
from gradexp.train import forward_backward as one_forward_backward
torch.set_num_threads(1)
keep_heap()
mode, members = {mode!r}, {members}
exps, seeds = [], []
for i in range(members):
    cfg, ch = make_cfg("optimizer=adam", f"optimizer.lr={{1e-4 * 2**i}}", f"seed={{i % 4}}",
                       "progress=false", mode)
    exps.append(build(cfg, ch) if not exps else build_member(cfg, ch, exps[0]))
    seeds.append(i % 4)
if members > 1:
    g = stack(exps, seeds)
    micro = next(iter(g.batches.epoch()))
    lrs = torch.full((members, 1), 1e-3, dtype=torch.float64)
    def step():
        g.stack.grad.zero_()
        forward_backward(g, micro, g.alive)
        g.optimizer.step(g.stack.flat, g.stack.grad, lrs, g.alive)
else:
    e = exps[0]
    micro = next(iter(e.batches.epoch()))
    def step():
        e.optimizer.zero_grad(set_to_none=False)
        for x, y in micro:
            e.loss_fn(e.model(x), y).backward()
        e.optimizer.step()
for _ in range(20):
    step()
best = []
for _ in range(5):
    t = time.perf_counter()
    for _ in range(30):
        step()
    best.append((time.perf_counter() - t) / 30)
print(min(best) * 1e3)
"""


def step_ms(mode: str, members: int, tuned: bool) -> float:
    code = CHILD.format(tests=str(ROOT / "tests"), mode=MODES[mode], members=members)
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    if not tuned:
        env["GRADEXP_MALLOC"] = "default"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if out.returncode:
        sys.exit(out.stderr[-2000:])
    return float(out.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    args = parser.parse_args()
    print("step time, glibc defaults / keep_heap (>1: keep_heap faster), median of pairs")
    for mode in args.modes:
        for members in (1, 32):
            ratios, fast = [], []
            for i in range(args.pairs):
                order = (True, False) if i % 2 == 0 else (False, True)
                ms = {tuned: step_ms(mode, members, tuned) for tuned in order}
                ratios.append(ms[False] / ms[True])
                fast.append(ms[True])
            print(f"{mode:10} {'one run' if members == 1 else '32 members':10} "
                  f"{statistics.median(fast):7.3f} ms/step  ratio "
                  f"{statistics.median(ratios):.2f} ({', '.join(f'{r:.2f}' for r in ratios)})",
                  flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
