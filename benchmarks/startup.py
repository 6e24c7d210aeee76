"""Start-up: `python -m gradexp max_steps=1` against `python -c "import torch"`, interleaved.

    python benchmarks/startup.py              # median of 7 pairs
    python benchmarks/startup.py --repeats 15 data=iris

Both run as fresh processes from a temporary directory; the figure is the median of the
per-pair ratios (the machine's load moves both). It also reports what the one-step run
imported that it need not (scikit-learn, SymPy, torch's compiler stack).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

IMPORTED = ("sklearn", "sympy", "torch._dynamo", "torch._inductor", "matplotlib")
REPORT = (
    "import atexit, sys\n"
    "atexit.register(lambda: print('IMPORTED', [m for m in {names} if m in sys.modules "
    "and type(sys.modules[m]).__name__ == 'module'], file=sys.stderr))\n"
    "import runpy; sys.argv = ['gradexp', *{args}]; runpy.run_module('gradexp', "
    "run_name='__main__')"
)


def timed(argv: list[str], cwd: str) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, check=True, capture_output=True,
                   env=os.environ | {"TQDM_DISABLE": "1"})  # fmt: skip
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("overrides", nargs="*", help="more overrides for the run")
    args = parser.parse_args()
    run = ["max_steps=1", "progress=false", *args.overrides]
    with tempfile.TemporaryDirectory() as tmp:
        ratios, runs, imports = [], [], []
        for i in range(args.repeats):
            pair = [(0, [sys.executable, "-c", "import torch"]),
                    (1, [sys.executable, "-m", "gradexp", *run])]  # fmt: skip
            times = {k: timed(argv, tmp) for k, argv in (pair if i % 2 == 0 else pair[::-1])}
            ratios.append(times[1] / times[0])
            runs.append(times[1])
            imports.append(times[0])
        code = REPORT.format(names=IMPORTED, args=run)
        out = subprocess.run([sys.executable, "-c", code], cwd=tmp, capture_output=True,
                             text=True, env=os.environ | {"TQDM_DISABLE": "1"})  # fmt: skip
        found = [line for line in out.stderr.splitlines() if line.startswith("IMPORTED")]
    print(
        f"python -m gradexp {' '.join(run)}: median {statistics.median(runs):.2f} s; "
        f"import torch: median {statistics.median(imports):.2f} s"
    )
    print(
        f"ratio (median of {args.repeats} interleaved pairs): {statistics.median(ratios):.2f}×"
        f" (range {min(ratios):.2f}–{max(ratios):.2f})"
    )
    print(f"heavy modules the run imported: {found[0].split(' ', 1)[1] if found else '?'}")


if __name__ == "__main__":
    main()
