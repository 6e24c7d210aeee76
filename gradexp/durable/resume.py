"""resume=true: skip a run that finished, continue one that did not, refuse a changed config."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch

from gradexp.durable.checkpoint import FOLDER, checkpoints, config_change, load_latest
from gradexp.errors import ConfigError
from gradexp.record.logger import uncovered

log = logging.getLogger("gradexp")
# Keys a resumed run may change: they decide how it runs, not what it computes.
FREE_KEYS = ("resume", "overwrite", "checkpoint_every", "progress", "flush_secs", "threads")


def finished(run_dir: Path) -> dict | None:
    """The summary of a run that already ended on its own (ok or diverged), else None."""
    try:
        summary = json.loads((Path(run_dir) / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    return summary if summary.get("status") in ("ok", "diverged") else None


def comparable(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in FREE_KEYS and k != "hydra"}


def latest(run_dir: Path, config: dict, model=None, vector: bool = False) -> dict | None:
    """The checkpoint to continue from (None: start afresh), checked against this config: the
    newest that reads, fits the model and is covered by the logs on disk."""

    def usable(state: dict) -> str | None:
        if ("vector" in state) != vector:
            return ("it was written by a run of its own, not by a vectorised group" if vector
                    else "it was written by a vectorised group; resume with "
                    "hydra/launcher=vectorized")  # fmt: skip
        fits = misfit(state["model"], model) if model else None
        return uncovered(run_dir, state["logs"]) or fits

    state, skipped = load_latest(run_dir, usable)
    if state is None:
        if checkpoints(Path(run_dir) / FOLDER):
            where = Path(run_dir) / FOLDER
            newest = skipped[0].split(" (", 1)[1].rsplit("); trying", 1)[0]  # its reason
            allowed = (f"no usable checkpoint in {where} ({len(skipped)} unusable; the newest: "
                       f"{newest})")  # fmt: skip
            raise ConfigError("resume", "true", allowed + "; start over with overwrite=true")
        log.info("gradexp: no checkpoint in %s: starting from step 0", run_dir)
        return None
    change = config_change(comparable(state["config"]), comparable(config))
    if change:
        key, old, new = change
        raise ConfigError(key, new, f"the checkpoint in {run_dir} was made with {key}={old}; "
                          "resume with the same config, or start a new run")  # fmt: skip
    state["skipped"] = skipped
    log.info("gradexp: resuming from %s (step %d)", state["path"], state["position"]["step"])
    return state


def misfit(saved: dict, model) -> str | None:
    """Why a saved state_dict does not load into this model (tampered, or another model)."""
    mine = model.state_dict()
    if not isinstance(saved, dict) or set(saved) != set(mine):
        return "its model has other parameters than this run's"
    for name, tensor in mine.items():
        if not isinstance(saved[name], torch.Tensor) or saved[name].shape != tensor.shape:
            return f"its {name} has another shape than this run's {tuple(tensor.shape)}"
    return None


def safe_write(write, *args) -> bool:
    """A write that must not hide the error being reported (e.g. the disk is full)."""
    try:
        write(*args)
        return True
    except OSError as e:
        log.error("gradexp: could not write to %s: %s", args[0], os.strerror(e.errno or 0))
        return False
