"""An output directory that cannot take files is reported before anything runs, in one line."""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from gradexp.errors import ConfigError

log = logging.getLogger("gradexp")
PROBE = ".gradexp-write-probe"


def writable(directory: Path, key: str = "hydra.run.dir", size: int = 1 << 20) -> None:
    """Make the directory, write a 1 MiB file in it (a full disk refuses it) and remove it.
    os.access is not enough: it says yes to root on a read-only mount."""
    probe = Path(directory) / PROBE
    try:
        Path(directory).mkdir(parents=True, exist_ok=True)
        with probe.open("wb") as f:
            f.write(bytes(size))
            f.flush()
        probe.unlink()
    except OSError as e:
        with contextlib.suppress(OSError):
            probe.unlink(missing_ok=True)
        reason = e.strerror or type(e).__name__
        raise ConfigError(key, str(directory), f"cannot write there ({reason}); "
                          "choose a writable directory with free space") from None  # fmt: skip


def nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


class WritableOutput(Callback):
    """Hydra makes the run (or sweep) dir before gradexp's code runs, and a failure there is a
    traceback. This checks the nearest existing ancestor of that dir first (the dir's own name
    holds a timestamp Hydra has not fixed yet), so the user gets one line and exit status 2."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        self._check(config, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        self._check(config, "hydra.sweep.dir")

    @staticmethod
    def _check(config: DictConfig, key: str) -> None:
        node = config.hydra.run if key == "hydra.run.dir" else config.hydra.sweep
        target = Path(str(node.dir))
        parent = nearest_existing(target.absolute())
        try:
            if not parent.is_dir():
                raise ConfigError(key, target, f"{parent} is a file, not a directory")
            writable(parent, key, size=1 << 16)
        except ConfigError as e:
            print(f"gradexp: error: {ConfigError(key, target, e.allowed)}", file=sys.stderr)
            raise SystemExit(2) from None  # as for any other config error
