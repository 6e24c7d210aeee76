"""Shared fixtures: compose configs through Hydra, run experiments in a temp dir, read logs back."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from gradexp import CONF_DIR, VERSION_BASE

ROOT = Path(__file__).resolve().parent.parent


def make_cfg(*overrides: str):
    """The config `python -m gradexp OVERRIDES` would run, through the real composition."""
    with initialize_config_dir(config_dir=str(CONF_DIR), **VERSION_BASE):
        cfg = compose("config", overrides=list(overrides), return_hydra_config=True)
    choices = {k: v for k, v in cfg.hydra.runtime.choices.items() if not k.startswith("hydra/")}
    return cfg, choices


def run_experiment(run_dir: Path, *overrides: str, progress: bool = False) -> dict:
    """Run one experiment in-process and return its summary (also in run_dir/summary.json)."""
    from gradexp import run

    cfg, choices = make_cfg(*overrides, f"progress={progress}")
    return run.main(cfg, Path(run_dir), choices, list(overrides))


def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar TensorBoard would show for this run: {tag: [(step, value), ...]}."""
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}


def metrics(run_dir: Path) -> list[dict]:
    """metrics.jsonl as dicts, with 'nan'/'inf' strings turned back into floats."""
    lines = Path(run_dir, "metrics.jsonl").read_text().splitlines()
    return [
        {k: float(v) if v in ("nan", "inf", "-inf") else v for k, v in json.loads(x).items()}
        for x in lines
    ]


def series(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    return [(m["step"], m[tag]) for m in metrics(run_dir) if tag in m and "epoch" not in m]


def cli(*args: str, cwd: Path, timeout: float = 300, env=None) -> subprocess.CompletedProcess:
    """`python -m gradexp ARGS` in a subprocess, from cwd, importing this checkout."""
    env = os.environ | {"PYTHONPATH": str(ROOT), "HYDRA_FULL_ERROR": "0"} | (env or {})
    return subprocess.run(
        [sys.executable, "-m", "gradexp", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def finite(x: float) -> bool:
    return isinstance(x, float) and math.isfinite(x)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return tmp_path / "run"


@pytest.fixture(scope="session")
def sweep(tmp_path_factory) -> Path:
    """A real 4-job CLI sweep for the dashboard tests, made once per session."""
    import tbkit

    return tbkit.sweep(tmp_path_factory)


@pytest.fixture(scope="session")
def board(sweep):
    """gradexp.board serving that sweep on a free port of 127.0.0.1, stopped at the end."""
    import tbkit

    from gradexp.study.board import Board

    with Board([sweep]) as b:
        tbkit.wait_for_runs(b.url, 4)
        yield b
