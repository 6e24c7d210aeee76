"""What a run reports when it ends: summary.json's fields, the sweeper's objective, the HParams
session and the one line printed at the end. Plain dicts in, plain dicts out."""

from __future__ import annotations

import math
from pathlib import Path

from gradexp.data import Data
from gradexp.record.history import History
from gradexp.train import Outcome

FINAL = ("train/loss", "train/accuracy", "train/l2", "eval/loss", "eval/accuracy", "grad/norm",
         "param/norm")  # fmt: skip
GROUPS = ("data", "model", "loss", "optimizer", "batch", "schedule")
KNOBS = ("optimizer.lr", "batch.size", "batch.accumulate", "seed", "l2")


def summarise(outcome: Outcome, history: History, data: Data, device, dtype) -> dict:
    """final: the last value of each tag, where train/* are the final parameters' values on the
    whole training set (final/train_*), not the last logged interval's mean (kept apart as
    train/interval_loss): a sweeper minimising the train loss minimises the real one."""
    last = dict(history.last)
    if "train/loss" in last:
        last["train/interval_loss"] = last["train/loss"]
    last |= {k.replace("final/train_", "train/"): v for k, v in last.items()
             if k.startswith("final/train_")}  # fmt: skip
    return {
        "status": outcome.status,
        "stop_reason": outcome.stop_reason,
        "message": outcome.message,
        "steps": outcome.steps,
        "examples": outcome.examples,
        "epochs": round(outcome.examples / data.n_train, 4),
        "final": {k: last[k] for k in (*FINAL, "train/interval_loss") if k in last},
        "best": dict(history.best),
        "device": str(device),
        "dtype": str(dtype).removeprefix("torch."),
        "task": data.task,
        "n_train": data.n_train,
        "n_eval": len(data.x_eval),
    }


def objective(summary: dict) -> float:
    """What a sweeper minimises: the final eval loss (train loss without eval data); inf if the
    run failed or diverged, so a search treats it as the worst trial instead of crashing."""
    final = summary.get("final", {})
    value = final.get("eval/loss", final.get("train/loss", math.inf))
    return value if summary["status"] == "ok" and math.isfinite(value) else math.inf


def select(config: dict, key: str):
    """config["a"]["b"] for key "a.b"; None where the path does not exist."""
    node = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def hparams(config: dict, choices: dict, overrides: list[str]) -> dict:
    """What a sweep varies, for TensorBoard's HPARAMS tab: group choices, key knobs, overrides.
    Named by their config keys, so an override (optimizer.lr=0.1) and the knob are one column, and
    typed from the composed config: `optimizer.lr=0.1` is the number 0.1, not the string "0.1"."""
    hp = {g: choices[g] for g in GROUPS if g in choices}
    for key in KNOBS:
        hp[key] = select(config, key)
    for item in overrides:
        if not item.startswith("~"):
            key = item.lstrip("+").partition("=")[0]
            hp.setdefault(key, choices[key] if key in choices else select(config, key))
    return {k: v if v is None or isinstance(v, (int, float, str, bool)) else str(v)
            for k, v in hp.items()}  # fmt: skip


def one_line(s: dict) -> str:
    f = s.get("final", {})
    parts = [f"{s['status']} ({s['message']})", f"{s['steps']} steps", f"{s['wall_time_s']:.1f} s"]
    for key, label in (("train/loss", "train loss"), ("eval/loss", "eval loss")):
        if key in f:
            parts.append(f"{label} {f[key]:.4g}")
    if "eval/accuracy" in f:
        parts.append(f"eval accuracy {100 * f['eval/accuracy']:.1f}%")
    return "gradexp: " + " · ".join(parts)


def shown_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
