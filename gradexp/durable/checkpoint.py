"""Checkpoints: all a run needs to continue bitwise where it stopped, written atomically.

A checkpoint holds plain tensors, numbers, strings, lists and dicts only, so that it loads with
torch.load(weights_only=True): a checkpoint file can never run code. The two newest are kept;
an unreadable newest one falls back to the one before.
"""

from __future__ import annotations

import logging
import os
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from gradexp.errors import ConfigError

log = logging.getLogger("gradexp")
FOLDER = "checkpoints"
KEEP = 2
VERSION = 1


@dataclass
class Position:
    """Where the loop stands after `step` updates: `batch` updates into epoch `epoch`."""

    step: int = 0
    epoch: int = 1
    batch: int = 0
    examples: int = 0
    evaluated: int = 0  # the last step whose parameters were evaluated


class Checkpointer:
    """Saves model, optimizer, schedule, random states, history and log sizes every `every`
    steps (0: only when asked, e.g. on SIGTERM) into run_dir/checkpoints/step-NNNNNNNN.pt."""

    def __init__(self, run_dir: Path, every: int, *, model, optimizer, scheduler, batches,
                 history, logger, config: dict, probes=()):  # fmt: skip
        self.folder = Path(run_dir) / FOLDER
        self.every = every
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.batches, self.history, self.logger, self.config = batches, history, logger, config
        self.probes = probes

    def due(self, step: int) -> bool:
        return self.every > 0 and step % self.every == 0

    def save(self, position: Position) -> Path:
        """Write after history.flush(): the checkpoint and the logs then describe the same step."""
        state = {
            "version": VERSION,
            "position": asdict(position),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "rng": rng_state(self.batches),
            "history": self.history.state(),
            "logs": self.logger.sizes(),
            "tags": sorted(getattr(self.logger, "tags", ())),  # the custom-scalar layout's input
            "config": self.config,
            "probes": [p.state_dict() if hasattr(p, "state_dict") else {} for p in self.probes],
        }
        return write(self.folder, position.step, state)


def write(folder: Path, step: int, state: dict) -> Path:
    """folder/step-NNNNNNNN.pt, written whole or not at all; the two newest kept."""
    folder.mkdir(exist_ok=True)
    path = folder / f"step-{step:08d}.pt"
    tmp = path.with_suffix(".pt.tmp")
    with tmp.open("wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)  # atomic: a reader sees the old set or the new, never half a file
    for old in checkpoints(folder)[KEEP:]:
        old.unlink(missing_ok=True)
    sync_dir(folder)  # the rename itself survives a power cut
    return path


def sync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def checkpoints(folder: Path) -> list[Path]:
    """Checkpoint files, newest first."""
    return sorted(Path(folder).glob("step-*.pt"), reverse=True)


FIELDS = ("version", "position", "model", "optimizer", "scheduler", "rng", "history", "logs",
          "config")  # fmt: skip


def load_latest(run_dir: Path, usable=None) -> tuple[dict | None, list[str]]:
    """The newest checkpoint that reads and that `usable(state)` accepts (it returns None, or
    why not), None if there is none, and a line per checkpoint passed over."""
    skipped = []
    for path in checkpoints(Path(run_dir) / FOLDER):
        try:
            if not path.is_file():  # a FIFO or a device would block the read forever
                raise ValueError("not a regular file")
            state = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(state, dict) or state.get("version") != VERSION:
                raise ValueError(f"not a gradexp checkpoint of version {VERSION}")
            missing = [k for k in FIELDS if k not in state]
            if missing:
                raise ValueError(f"it lacks {', '.join(missing)}")
        except Exception as e:  # truncated zip, bit flips, foreign pickle: all mean "skip it"
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            skipped.append(f"checkpoint {path} is unreadable ({reason}); trying the one before")
            log.warning("gradexp: %s", skipped[-1])
            continue
        why = usable(state) if usable else None
        if why:
            skipped.append(f"checkpoint {path} cannot be used ({why}); trying the one before")
            log.warning("gradexp: %s", skipped[-1])
            continue
        state["path"] = str(path)
        return state, skipped
    return None, skipped


def restore(state: dict, *, model, optimizer, scheduler, batches, history, probes=()) -> Position:
    """Put every saved state back; the data order resumes mid-epoch where it stopped. A
    checkpoint whose fields do not fit (tampered, or from other code) is one ConfigError."""
    try:
        return _restore(state, model, optimizer, scheduler, batches, history, probes)
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as e:
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError("resume", "true", f"checkpoint {state.get('path')} is damaged "
                          f"({type(e).__name__}: {why}); delete it to resume from the one "
                          "before, or start over with overwrite=true") from None  # fmt: skip


def _restore(state, model, optimizer, scheduler, batches, history, probes) -> Position:
    model.load_state_dict(state["model"])
    device = next(model.parameters()).device
    for probe, saved in zip(probes, state.get("probes", [])):
        if hasattr(probe, "load_state_dict"):
            probe.load_state_dict(saved, device)
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(state["scheduler"])
    position = Position(**state["position"])
    set_rng_state(state["rng"], batches, mid_epoch=0 < position.batch < batches.steps_per_epoch)
    history.load_state(state["history"])
    return position


def rng_state(batches) -> dict:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, mt, gauss = random.getstate()
    generator = batches.generator
    epoch_state = getattr(batches, "epoch_state", None)
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "python": [version, list(mt), gauss],
        "order": generator.get_state(),
        # The generator as it was when this epoch drew its permutation: a mid-epoch resume
        # draws the same permutation again and skips the updates already done.
        "order_epoch": generator.get_state() if epoch_state is None else epoch_state,
    }


def set_rng_state(rng: dict, batches, mid_epoch: bool) -> None:
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    kind, keys, pos, has_gauss, cached = rng["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, mt, gauss = rng["python"]
    random.setstate((version, tuple(mt), gauss))
    batches.generator.set_state(rng["order_epoch"] if mid_epoch else rng["order"])


def config_change(saved: dict, now: dict, prefix: str = "") -> tuple[str, object, object] | None:
    """The first key whose value differs between two plain config trees, or None."""
    for key in sorted(set(saved) | set(now), key=str):
        a, b = saved.get(key, "<unset>"), now.get(key, "<unset>")
        if isinstance(a, dict) and isinstance(b, dict):
            found = config_change(a, b, f"{prefix}{key}.")
            if found:
                return found
        elif a != b:
            return f"{prefix}{key}", a, b
    return None
