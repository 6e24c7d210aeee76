"""Helpers for the dashboard tests: a real 4-job sweep and TensorBoard's HTTP data API."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
from conftest import cli, metrics

SWEEP = ("optimizer=sgd,adam", "optimizer.lr=0.1,0.01", "data=iris", "epochs=3", "log_every=2")


def sweep(tmp_path_factory) -> Path:
    """`python -m gradexp -m` over 2 optimizers × 2 learning rates, made once per test session
    (test modules share it through the session's base temp dir)."""
    root = tmp_path_factory.getbasetemp() / "board-sweep"
    done = root / "sweep" / "summary.csv"
    if not done.is_file():
        root.mkdir(exist_ok=True)
        out = cli("-m", *SWEEP, "hydra.sweep.dir=sweep", cwd=root)
        assert out.returncode == 0, out.stderr[-3000:]
    return root / "sweep"


def jobs(sweep_dir: Path) -> list[Path]:
    return sorted(d for d in sweep_dir.iterdir() if (d / "metrics.jsonl").is_file())


def get(url: str, route: str, **params) -> object:
    query = urllib.parse.urlencode(params)
    with urllib.request.urlopen(f"{url}/{route}?{query}", timeout=30) as r:
        return json.loads(r.read())


def post(url: str, route: str, body: dict) -> object:
    data = json.dumps(body).encode()
    request = urllib.request.Request(
        f"{url}/{route}", data=data, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as r:
        return json.loads(r.read())


def wait_for_runs(url: str, count: int, timeout: float = 60) -> list[str]:
    """Poll /data/runs until TensorBoard has loaded `count` runs with their scalars."""
    deadline = time.monotonic() + timeout
    while True:
        runs = get(url, "data/runs")
        tags = get(url, "data/plugin/scalars/tags")
        if len(runs) >= count and len(tags) >= count and all(tags.values()):
            return runs
        assert time.monotonic() < deadline, f"TensorBoard listed {runs} after {timeout} s"
        time.sleep(0.5)


def expected_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """metrics.jsonl as TensorBoard should serve it: {tag: [(x, value as float32)]}, where x is
    the step, or the epoch for the per-epoch rows."""
    out: dict[str, list[tuple[int, float]]] = {}
    for row in metrics(run_dir):
        x = row.get("epoch", row["step"])
        for tag, value in row.items():
            if tag not in ("step", "time", "epoch"):
                out.setdefault(tag, []).append((x, float(np.float32(value))))
    return out
