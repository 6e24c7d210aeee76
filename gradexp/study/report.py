"""python -m gradexp.report SWEEP_DIR|RUN_DIR ...: one row per configuration, seeds aggregated,
saved as report.csv, and PNG figures in the sweep's report/ directory."""

from __future__ import annotations

import argparse
import csv
import itertools
import math
import sys
from pathlib import Path

from gradexp.study import runs as runs_io
from gradexp.study.configs import METRICS, STATUSES, Config, group, sort


def rows(configs: list[Config]) -> list[dict]:
    """The CSV: per configuration, run counts, then mean and std of every metric."""
    out = []
    for c in configs:
        first = c.runs[0]
        row = {"config": c.key or "(defaults)", "optimizer": first.optimizer, "lr": first.lr,
               "runs": len(c.runs)} | {s: c.count(s) for s in STATUSES}  # fmt: skip
        for name in METRICS:
            row[f"{name}_mean"], row[f"{name}_std"] = c.mean_std(name)
        out.append(row)
    return out


def table(data: list[dict], columns=("eval_loss", "best_eval_loss", "train_loss",
                                     "best_train_loss", "eval_accuracy", "steps",
                                     "wall_time_s")) -> str:  # fmt: skip
    def cell(row, name):
        m, s = row[f"{name}_mean"], row[f"{name}_std"]
        return "-" if math.isnan(m) else f"{m:.4g}" + ("" if math.isnan(s) else f" ± {s:.2g}")

    head = ["config", "ok/div/fail", *columns]
    body = [[r["config"], f"{r['ok']}/{r['diverged']}/{r['failed']}",
             *(cell(r, c) for c in columns)] for r in data]  # fmt: skip
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    return "\n".join("  ".join(x.ljust(w) for x, w in zip(line, widths)) for line in [head, *body])


def write_csv(data: list[dict], file: Path) -> None:
    with file.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(data[0]))
        writer.writeheader()
        writer.writerows(data)


def out_dir(paths: list[Path], found: list[Path]) -> Path:
    """A single sweep's report/ dir; otherwise report/ beside the runs' common parent."""
    if len(paths) == 1 and not runs_io.is_run(paths[0]):
        return paths[0] / "report"
    parents = [p.resolve().parent for p in found]
    shared = itertools.takewhile(lambda ps: len(set(ps)) == 1, zip(*(p.parts for p in parents)))
    return Path(*(ps[0] for ps in shared)) / "report"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gradexp.report", description=__doc__)
    parser.add_argument("paths", nargs="+", type=Path, help="sweep directories or run directories")
    parser.add_argument("--sort", default="eval_loss", choices=list(METRICS),
                        help="metric that orders the table (accuracy: highest first)")  # fmt: skip
    parser.add_argument("--out", type=Path, help="where report.csv and figures go")
    parser.add_argument("--no-figures", action="store_true", help="table and CSV only")
    args = parser.parse_args(argv)
    found, skipped = runs_io.find(args.paths)
    runs = []
    for path in found:
        try:
            run = runs_io.load(path)
        except runs_io.Damaged as e:
            skipped.append(str(e))
            continue
        if run is None:
            skipped.append(f"{path}: no summary.json yet (still running, or died)")
        else:
            runs.append(run)
    for line in skipped:
        print(f"skipped {line}", file=sys.stderr)
    if not runs:
        print("gradexp.report: no finished runs to report", file=sys.stderr)
        return 1
    configs = sort(group(runs), args.sort)
    data = rows(configs)
    out = args.out or out_dir(args.paths, [r.path for r in runs])
    out.mkdir(parents=True, exist_ok=True)
    write_csv(data, out / "report.csv")
    print(table(data))
    print(f"\n{len(runs)} runs in {len(configs)} configurations, sorted by {args.sort}; "
          f"{len(skipped)} skipped\ntable: {out / 'report.csv'}")  # fmt: skip
    if not args.no_figures:
        from gradexp.study import figures  # matplotlib: only when drawing

        written = figures.write_all(configs, out)
        print(f"figures: {', '.join(p.name for p in written)} in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
