"""resume=true: skip a run that finished, continue one that did not, refuse a changed config."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from gradexp.durable.checkpoint import FOLDER, checkpoints, config_change, load_latest
from gradexp.errors import ConfigError

log = logging.getLogger("gradexp")
# Keys a resumed run may change: they decide how it runs, not what it computes.
FREE_KEYS = ("resume", "checkpoint_every", "progress", "flush_secs")


def finished(run_dir: Path) -> dict | None:
    """The summary of a run that already ended on its own (ok or diverged), else None."""
    try:
        summary = json.loads((Path(run_dir) / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    return summary if summary.get("status") in ("ok", "diverged") else None


def comparable(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in FREE_KEYS and k != "hydra"}


def latest(run_dir: Path, config: dict) -> dict | None:
    """The checkpoint to continue from (None: start afresh), checked against this config."""
    state, skipped = load_latest(run_dir)
    if state is None:
        if checkpoints(Path(run_dir) / FOLDER):
            where = Path(run_dir) / FOLDER
            allowed = f"no readable checkpoint in {where} ({len(skipped)} unreadable); delete it"
            raise ConfigError("resume", "true", allowed + " to start afresh")
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


def safe_write(write, *args) -> bool:
    """A write that must not hide the error being reported (e.g. the disk is full)."""
    try:
        write(*args)
        return True
    except OSError as e:
        log.error("gradexp: could not write to %s: %s", args[0], os.strerror(e.errno or 0))
        return False
