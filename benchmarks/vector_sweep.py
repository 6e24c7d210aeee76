"""A sweep's whole-process wall time: hydra/launcher=vectorized against the default launcher.

    python benchmarks/vector_sweep.py                       # the three sweeps below, median of 3
    python benchmarks/vector_sweep.py --sweeps minibatch --repeats 5
    python benchmarks/vector_sweep.py --sweeps mnist device=cuda            # on a GPU

Each sweep is 32 jobs (Adam, 8 learning rates × 4 seeds, the digits MLP 64-128-10) run as a fresh
`python -m gradexp -m …` process with either launcher, alternating which goes first; the figure
is the median of the per-pair ratios. Peak memory is the process's maximum resident set (RSS),
against one sequential job of the same sweep. The `mnist` sweep (not in the default set) is the
same grid on MNIST-sized data: 784-256-256-10 on 60,000 synthetic samples, mini-batch 128, one
epoch; `sharpness` (not in the default set either) adds the sharpness probe every 20 steps to a
5-epoch mini-batch sweep, and `noise` the noise probe every 5 steps to one. Positional
overrides (`device=cuda`, `threads=2`) go to every job.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LRS = "1e-4,3e-4,1e-3,3e-3,1e-2,3e-2,0.1,0.3"
SWEEPS = {
    "minibatch": ["batch=minibatch", "epochs=20"],
    "stochastic": ["batch=stochastic", "epochs=2"],
    "full": ["batch=full", "epochs=300"],
}
MNIST = ["data=blobs", "data.n=70000", "data.features=784", "data.classes=10",
         "data.eval_fraction=0.142857", "model.hidden=[256,256]", "batch=minibatch",
         "batch.size=128", "epochs=1"]  # fmt: skip
# The batched sharpness probe: mini-batch 64, λ_max by 20 power iterations every 20 steps.
SHARPNESS = ["batch=minibatch", "epochs=5", "probes=[sharpness]", "probes.sharpness.every=20",
             "probes.sharpness.tol=0"]  # fmt: skip
# The batched noise probe: per-sample gradient norms every 5 steps, G every 10th of those.
NOISE = ["batch=minibatch", "epochs=5", "probes=[noise]", "probes.noise.every=5"]
EVERY = {**SWEEPS, "mnist": MNIST, "sharpness": SHARPNESS, "noise": NOISE}
COMMON = ["optimizer=adam", f"optimizer.lr={LRS}", "seed=range(4)", "progress=false"]


def run(args: list[str], cwd: str) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one process."""
    start = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    proc = subprocess.run([sys.executable, "-m", "gradexp", *args], cwd=cwd, capture_output=True,
                          text=True, env=os.environ | {"TQDM_DISABLE": "1"})  # fmt: skip
    wall = time.perf_counter() - start
    if proc.returncode:
        sys.exit(f"failed ({proc.returncode}): {' '.join(args)}\n{proc.stderr[-3000:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, max(peak, before) / 1024  # ru_maxrss of children: the largest so far, in kB


def peak_rss(args: list[str], cwd: str) -> float:
    """Peak RSS (MB) of one process, measured alone (RUSAGE_CHILDREN keeps the maximum)."""
    code = (
        "import resource, runpy, sys; sys.argv = ['gradexp', *sys.argv[1:]]\n"
        "try:\n    runpy.run_module('gradexp', run_name='__main__')\nfinally:\n"
        "    print('RSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)"
    )
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True,
                          text=True, env=os.environ | {"TQDM_DISABLE": "1"})  # fmt: skip
    line = [x for x in proc.stderr.splitlines() if x.startswith("RSS")]
    return int(line[-1].split()[1]) / 1024 if line else float("nan")


def train_seconds(sweep: Path) -> float:
    return sum(json.loads(f.read_text())["elapsed_s"] for f in sweep.glob("*/summary.json"))


def compare(name: str, extra: list[str], repeats: int) -> dict:
    ratios, walls = [], {"gradexp": [], "vectorized": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats):
            order = ["gradexp", "vectorized"] if r % 2 == 0 else ["vectorized", "gradexp"]
            wall = {}
            for launcher in order:
                out = f"{launcher}-{r}"
                args = ["-m", *COMMON, *EVERY[name], *extra, f"hydra/launcher={launcher}",
                        f"hydra.sweep.dir={out}"]  # fmt: skip
                wall[launcher] = run(args, tmp)[0]
                walls[launcher].append(wall[launcher])
            ratios.append(wall["gradexp"] / wall["vectorized"])
        one = [*COMMON[:1], "optimizer.lr=1e-3", "seed=0", "progress=false", *EVERY[name],
               *extra, "hydra.run.dir=one"]  # fmt: skip
        vec = ["-m", *COMMON, *EVERY[name], *extra, "hydra/launcher=vectorized",
               "hydra.sweep.dir=rss"]  # fmt: skip
        rss_one, rss_vec = peak_rss(one, tmp), peak_rss(vec, tmp)
        inside = train_seconds(Path(tmp) / "gradexp-0")
    return {"sweep": name, "sequential_s": statistics.median(walls["gradexp"]),
            "vectorized_s": statistics.median(walls["vectorized"]),
            "ratio": statistics.median(ratios), "ratios": ratios, "train_s": inside,
            "rss_one_mb": rss_one, "rss_vectorized_mb": rss_vec}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweeps", nargs="+", default=list(SWEEPS), choices=list(EVERY))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("extra", nargs="*", help="more overrides for every job")
    args = parser.parse_args()
    extra = [f"threads={args.threads}", *args.extra]
    print(
        f"32 jobs (adam, 8 lrs × 4 seeds, digits MLP), {args.threads} thread(s), median of "
        f"{args.repeats} interleaved pairs; whole-process wall time"
    )
    for name in args.sweeps:
        r = compare(name, extra, args.repeats)
        print(
            f"{name:11} sequential {r['sequential_s']:6.1f} s  vectorized {r['vectorized_s']:5.1f}"
            f" s  ratio {r['ratio']:5.2f}× ({', '.join(f'{x:.2f}' for x in r['ratios'])});"
            f" train() {r['train_s']:.1f} s of the sequential sweep; peak RSS "
            f"{r['rss_vectorized_mb']:.0f} MB vectorized vs {r['rss_one_mb']:.0f} MB one job "
            f"({r['rss_vectorized_mb'] / r['rss_one_mb']:.2f}×)",
            flush=True,
        )


if __name__ == "__main__":
    main()
