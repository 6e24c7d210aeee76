"""Finished runs read back from disk: summary.json, metrics.jsonl and the composed config."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

SKIP_DIRS = {".hydra", ".submitit", "report"}  # never hold runs of their own


@dataclass
class Run:
    """One run's record: what it was asked to do, how it ended, and its logged series."""

    path: Path
    summary: dict
    config: dict  # the composed config (.hydra/config.yaml) as plain data; {} if absent
    points: list[dict] = field(default_factory=list)  # per-step points, one per logged step
    epochs: list[dict] = field(default_factory=list)  # per-epoch points

    @property
    def dir(self) -> Path:
        return self.path

    @property
    def metrics(self) -> dict:
        """{tag: (steps, values)} of every per-step series, as numpy arrays (a notebook's
        `plt.plot(*run.metrics["train/loss"])`)."""
        return _series(self.points, "step")

    @property
    def epoch_metrics(self) -> dict:
        """{tag: (epochs, values)} of the per-epoch series."""
        return _series(self.epochs, "epoch")

    def __repr__(self) -> str:
        final = self.summary.get("final", {})
        shown = ", ".join(f"{k}={v:.4g}" for k, v in final.items()
                          if k in ("train/loss", "eval/loss", "eval/accuracy")
                          and isinstance(v, int | float))  # fmt: skip
        status, overrides = self.summary.get("status", "?"), " ".join(self.overrides) or "-"
        return f"Run({status} · {overrides} · {shown} · {self.path})"

    @property
    def overrides(self) -> list[str]:
        return list(self.summary.get("overrides", []))

    @property
    def key(self) -> str:
        """The configuration: the run's overrides minus the seed, so seeds of one setting group."""
        return ",".join(o for o in self.overrides if o.lstrip("+~").partition("=")[0] != "seed")

    @property
    def status(self) -> str:
        status = self.summary.get("status", "failed")
        return status if status in ("ok", "diverged") else "failed"

    @property
    def optimizer(self) -> str:
        return str(self.summary.get("choices", {}).get("optimizer", "?"))

    @property
    def lr(self) -> float:
        lr = self.config.get("optimizer", {}).get("lr")
        for item in self.overrides:  # a run without its .hydra dir still names its lr override
            key, _, value = item.lstrip("+").partition("=")
            if key == "optimizer.lr" and lr is None:
                lr = value
        return to_float(lr)


def _series(points: list[dict], axis: str) -> dict:
    import numpy as np

    tags = dict.fromkeys(k for p in points for k in p if k not in (axis, "step", "epoch", "time"))
    out = {}
    for tag in tags:
        have = [p for p in points if tag in p]
        out[tag] = (np.array([int(p[axis]) for p in have]), np.array([p[tag] for p in have]))
    return out


def to_float(value) -> float:
    """Numbers as floats; the strings 'nan' and 'inf' that JSON logs use, too; else nan."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def find(paths: list[Path]) -> tuple[list[Path], list[str]]:
    """Run directories under the given sweep or run directories, and what was not a run."""
    found, problems = [], []
    for path in paths:
        if not path.is_dir():
            problems.append(f"{path}: not a directory")
        elif is_run(path):
            found.append(path)
        else:
            runs = sorted(
                (d for d in path.rglob("*") if d.is_dir() and is_run(d) and not hidden(d, path)),
                key=job_order,
            )
            found += runs
            if not runs:
                problems.append(f"{path}: no runs (no .hydra/ or summary.json below it)")
    return list(dict.fromkeys(found)), problems


def is_run(path: Path) -> bool:
    return (path / "summary.json").exists() or (path / ".hydra").is_dir()


def hidden(path: Path, root: Path) -> bool:
    return any(part in SKIP_DIRS for part in path.relative_to(root).parts)


def job_order(path: Path) -> tuple:
    # Sweep jobs are named <num>_<overrides>: order by number, not as text (10 after 9).
    head = path.name.split("_")[0]
    return (str(path.parent), int(head) if head.isdigit() else math.inf, path.name)


# libyaml's parser where PyYAML has it: the same safe constructors, 10× faster on a job's
# config.yaml (reading a 32-job sweep for its table and HParams took 0.2 s with the pure-Python one)
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class Damaged(Exception):
    """A run dir whose files cannot be read as a gradexp run's (the reason, in one line)."""


def summary_of(path: Path) -> dict | None:
    """A run's summary.json; None while it is still running (or if it died)."""
    file = path / "summary.json"
    if not file.exists():
        return None
    summary = _json(file)
    if not isinstance(summary, dict):
        raise Damaged(f"{file}: not a gradexp summary (a JSON {type(summary).__name__})")
    return summary


def load(path: Path) -> Run | None:
    """A run that has written its summary; None while it is still running (or if it died).
    Raises Damaged for files that are there but not a run's (never hangs on a FIFO)."""
    summary = summary_of(path)
    if summary is None:
        return None
    config_file = path / ".hydra" / "config.yaml"
    config = {}
    if config_file.exists():
        try:
            config = yaml.load(_text(config_file), Loader=SAFE_LOADER)
        except yaml.YAMLError as e:
            raise Damaged(f"{config_file}: not YAML ({str(e).splitlines()[0]})") from None
    run = Run(path, summary, config if isinstance(config, dict) else {})
    run.points, run.epochs = read_metrics(path / "metrics.jsonl")
    return run


def _text(file: Path) -> str:
    if not file.is_file():  # a FIFO or a device would block the read forever
        raise Damaged(f"{file}: not a regular file")
    try:
        return file.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise Damaged(f"{file}: not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise Damaged(f"{file}: cannot be read ({e.strerror})") from None


def _json(file: Path):
    try:
        return json.loads(_text(file))
    except ValueError as e:
        raise Damaged(f"{file}: not JSON ({e})") from None


# A key of a line gradexp wrote: no escapes in the file (else every line is decoded)
KEY = re.compile(r'"([^"\\]*)": ')


def tags_of(file: Path) -> set[str]:
    """The keys of metrics.jsonl's lines without decoding the values (a sweep's HParams
    experiment needs only these: decoding 32 jobs' lines took ~0.2 s): the complete lines of
    gradexp's Logger (`{"step": <int>, …}`, flat, json's separators, ASCII) scanned for their
    keys, which are then read_metrics' keys; a file with an escape anywhere is decoded line by
    line. Lines no gradexp writes (two objects on one line, nested values) may add keys."""
    if not file.exists():
        return set()
    text = _text(file)
    if "\\" in text:  # an escaped character: decode
        points, epochs = read_metrics(file)
        return set().union(*(p.keys() for p in points), *(e.keys() for e in epochs))
    lines = [ln for ln in text.splitlines() if STEP.match(ln) and ln.endswith("}")]
    return set(KEY.findall("\n".join(lines)))


STEP = re.compile(r'\{"step": -?\d+[,}]')


def read_metrics(file: Path) -> tuple[list[dict], list[dict]]:
    """metrics.jsonl as floats; lines of one step are merged (the final interval's mean is
    written apart from that step's snapshot); per-epoch lines are kept apart."""
    by_step: dict[int, dict] = {}
    epochs = []
    if not file.exists():
        return [], []
    for line in _text(file).splitlines():
        try:
            record = json.loads(line)
        except ValueError:  # a line cut short by a run still writing it
            continue
        if not isinstance(record, dict) or not isinstance(record.get("step"), int):
            continue  # not one of gradexp's lines
        record = {k: to_float(v) for k, v in record.items()}
        if "epoch" in record:
            epochs.append(record)
        else:
            by_step.setdefault(int(record["step"]), {}).update(record)
    return [by_step[s] for s in sorted(by_step)], epochs
