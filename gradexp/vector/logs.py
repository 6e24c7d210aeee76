"""A member's own logs in a group: its event file and metrics.jsonl (fresh, or cut back to its
checkpoint), and its gradexp.log, which Hydra's job logging writes for a sequential job."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path

from gradexp.record.logger import Logger, rewind

log = logging.getLogger("gradexp")


def open_logs(run_dir: Path, resuming: bool, saved: dict | None, config_yaml: str) -> Logger:
    """The member's logger: fresh with its config text, or (resuming) its logs cut back to its
    checkpoint (none: all of them go) and the tags it had."""
    if resuming:
        rewind(run_dir, saved["logs"] if saved else {})
    if not saved:
        logger = Logger(run_dir)
        logger.text("config", "    " + config_yaml.replace("\n", "\n    "))
        return logger
    logger = Logger(run_dir, purge_step=saved["position"]["step"] + 1)
    logger.tags.update(saved.get("tags", []))
    return logger


@contextmanager
def member_log(run_dir: Path, quiet: bool = False):
    """What is logged meanwhile also goes to the member's own gradexp.log (as Hydra's job
    logging writes a sequential job's); quiet: to that file only."""
    handler = logging.FileHandler(run_dir / "gradexp.log")
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(levelname)s] %(message)s"))
    log.addHandler(handler)
    propagate, log.propagate = log.propagate, not quiet and log.propagate
    try:
        yield
    finally:
        log.propagate = propagate
        log.removeHandler(handler)
        handler.close()
