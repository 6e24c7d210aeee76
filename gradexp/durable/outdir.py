"""Output directories, checked before anything runs: one that cannot take files, or that holds
a run already (which a new run would mix into), is reported in one line."""

from __future__ import annotations

import contextlib
import logging
import shutil
import sys
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from gradexp.errors import ConfigError

log = logging.getLogger("gradexp")
PROBE = ".gradexp-write-probe"
_accepted: set[str] = set()  # sweep dirs whose start passed every check, in this process


def forget(sweep_dir: Path) -> None:
    """A new sweep into sweep_dir starts: it is accepted only once its own checks pass."""
    _accepted.discard(str(Path(sweep_dir).absolute()))


def accepted(sweep_dir: Path) -> bool:
    """Whether this process's sweep into sweep_dir passed its start checks. Hydra 1.4 runs the
    end-of-sweep callbacks also after a refused start (a used dir, an unknown judge): they must
    then leave the old sweep's files alone."""
    return str(Path(sweep_dir).absolute()) in _accepted


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


# What a run writes into its directory (Hydra's .hydra/ aside, rewritten by every run).
RUN_FILES = ("metrics.jsonl", "summary.json", "model.pt", "traceback.txt", "trajectory.png",
             "gradexp.log")  # fmt: skip
RUN_GLOBS = ("events.out.tfevents.*", "checkpoints", ".hydra")


def held(run_dir: Path) -> list[str]:
    """What of a run is in the directory: logs, checkpoints, weights. A summary.json alone from
    a run refused for its config holds nothing worth keeping."""
    run_dir = Path(run_dir)
    found = [n for n in ("metrics.jsonl", "model.pt") if (run_dir / n).is_file()]
    events = list(run_dir.glob("events.out.tfevents.*"))
    if events:
        found.append(f"{len(events)} event file{'s' * (len(events) > 1)}")
    if any((run_dir / "checkpoints").glob("step-*")):
        found.append("checkpoints")
    return found


def clear(run_dir: Path) -> None:
    """Remove a previous run's files (overwrite=true): only what gradexp and Hydra write."""
    run_dir = Path(run_dir)
    for name in RUN_FILES:
        (run_dir / name).unlink(missing_ok=True)
    for pattern in RUN_GLOBS:
        for path in run_dir.glob(pattern):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    with contextlib.suppress(OSError):
        run_dir.rmdir()  # a sweep's old job dir, empty now; a dir holding other files stays


class UsedRunDir(ConfigError):
    """A run dir that holds a run already: refused before anything is written to it."""


def fresh(dirs: list[Path], key: str, shown: Path, resume: bool, overwrite: bool) -> None:
    """Run dirs that hold runs: refused unless resumed, or emptied with overwrite=true."""
    if resume and overwrite:
        raise ConfigError("overwrite", True, "contradicts resume=true; choose one")
    used = [(d, found) for d in dirs if (found := held(d))]
    if used and overwrite:
        for d, _ in used:
            clear(d)
    elif used and not resume:
        d, found = used[0]
        listed = ", ".join(found)
        more = ", …" if len(used) > 1 else ""
        what = (
            f"a run ({listed})"
            if len(dirs) == 1
            else f"{len(used)} runs ({d.name}: {listed}{more})"
        )
        raise UsedRunDir(key, str(shown), f"already holds {what}; add resume=true to continue, "
                         "overwrite=true to start over, or choose another directory")  # fmt: skip


def nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


class WritableOutput(Callback):
    """Hydra makes the run (or sweep) dir before gradexp's code runs, and a failure there is a
    traceback. This checks the nearest existing ancestor of that dir first (the dir's own name
    holds a timestamp Hydra has not fixed yet), so the user gets one line and exit status 2.
    Then a dir that holds a run already is refused (or emptied, with overwrite=true) before
    Hydra writes its .hydra/ and log into it: the old run's record stays whole."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        if str(config.hydra.launcher.get("_target_", "")).endswith(".VectorizedLauncher"):
            print(
                "gradexp: error: hydra/launcher=vectorized: trains the jobs of a sweep as one "
                "model; add -m (a single run has no launcher to vectorise)",
                file=sys.stderr,
            )
            raise SystemExit(2)
        self._check(config, "hydra.run.dir")
        run_dir = Path(str(config.hydra.run.dir))
        self._fresh(config, "hydra.run.dir", [run_dir], run_dir)

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        self._check(config, "hydra.sweep.dir")
        sweep = Path(str(config.hydra.sweep.dir))
        jobs = sorted(d for d in sweep.iterdir() if d.is_dir()) if sweep.is_dir() else []
        self._fresh(config, "hydra.sweep.dir", jobs, sweep)
        _accepted.add(str(sweep.absolute()))

    @staticmethod
    def _fresh(config: DictConfig, key: str, dirs: list[Path], shown: Path) -> None:
        resume, overwrite = config.get("resume") is True, config.get("overwrite") is True
        try:
            fresh(dirs, key, shown, resume, overwrite)
        except ConfigError as e:
            print(f"gradexp: error: {e}", file=sys.stderr)
            raise SystemExit(2) from None

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
