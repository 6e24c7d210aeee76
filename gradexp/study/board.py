"""python -m gradexp.board [dirs ...]: TensorBoard on gradexp runs and sweeps, every point kept."""

from __future__ import annotations

import argparse
import functools
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import urllib.parse
from pathlib import Path

# TensorBoard's plugins downsample each series to --samples_per_plugin points (1,000 scalars by
# default). `scalars=0` means "keep all" only to the event reader: TensorBoard 2.21's plugins then
# serve zero points (measured: empty charts). A count above any run's points keeps them all.
ALL_POINTS = 1_000_000_000
URL_LINE = re.compile(r"TensorBoard \S+ at (http://\S+?)/? ")
# What a user looks at first: these cards pinned above TensorBoard's alphabetical groups (which
# would open on epoch/* and eval/*, with train/loss folded away below).
PINNED = ("train/loss", "eval/loss", "grad/norm", "train/lr")


def pages(url: str) -> dict[str, str]:
    """The links to print. Time Series opens with the key cards pinned; no smoothing: gradexp
    already averages each logged interval (min/max beside it), and TensorBoard's default
    moving average on top lags behind the data and flattens the spikes a gradient study is after."""
    pins = json.dumps([{"plugin": "scalars", "tag": t} for t in PINNED], separators=(",", ":"))
    query = urllib.parse.urlencode({"smoothing": 0, "pinnedCards": pins})
    return {
        "Time Series": f"{url}/?{query}#timeseries",
        "Custom Scalars": f"{url}/#custom_scalars&_smoothingWeight=0",
        "HParams": f"{url}/#hparams",
    }


def loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to any interface
        return False


def tensorboard_args(logdir: Path, port: int, host: str = "127.0.0.1") -> list[str]:
    """The flags gradexp's logs need, served on the loopback interface unless told otherwise."""
    return [
        "--logdir", str(logdir),
        "--host", host,
        "--port", str(port),  # 0: a free port, which TensorBoard prints
        "--samples_per_plugin", f"scalars={ALL_POINTS}",
        "--window_title", "gradexp",
    ]  # fmt: skip


def names(dirs: list[Path]) -> dict[str, Path]:
    """Readable run-group names: the shortest path suffix that tells the directories apart."""
    parts = [d.resolve().parts[1:] for d in dirs]
    for k in range(1, max(map(len, parts)) + 1):
        named = {"/".join(p[-k:]): d for p, d in zip(parts, dirs)}
        if len(named) == len(dirs) and not _nested(list(named)):
            return named
    return {f"{i}_{d.name}": d for i, d in enumerate(dirs)}


def _nested(keys: list[str]) -> bool:
    return any(a != b and b.startswith(a + "/") for a in keys for b in keys)


def logdir(dirs: list[Path]) -> tuple[Path, Path | None]:
    """The directory to serve, and a temporary one to remove afterwards. One sweep or one tree of
    runs is served as it is (run names are paths below it); a single run or several directories
    become a tree of symbolic links with readable names. (Not --logdir_spec: gradexp's job
    directories have commas in their names, which that flag splits on, and it turns off
    TensorBoard's fast data server.)"""
    dirs = [d.resolve() for d in dirs]
    dirs = [d for d in dict.fromkeys(dirs) if not any(o in d.parents for o in dirs)]
    one = dirs[0] if len(dirs) == 1 else None
    if one is not None and (not any(one.glob("events.out.tfevents.*")) or holds_runs(one)):
        return dirs[0], None
    tree = Path(tempfile.mkdtemp(prefix="gradexp-board-"))
    for name, target in names(dirs).items():
        link = tree / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target, target_is_directory=True)
    return tree, tree


def holds_runs(path: Path) -> bool:
    """A sweep: runs in its subdirectories (its own event file, if any, is the HParams record)."""
    return any(d.is_dir() and any(d.glob("events.out.tfevents.*")) for d in path.iterdir())


def die_with_parent(parent: int) -> None:
    """In the child, before TensorBoard starts (Linux): SIGTERM when the process that started
    it dies, even by SIGKILL, which runs none of our clean-up. TensorBoard's data server dies
    with TensorBoard (it reads its stdin until TensorBoard closes it)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: stop() and Ctrl-C still end it
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


class Board:
    """A TensorBoard server in its own process group (its Rust data server is in it too),
    which ends when this process ends, however it ends."""

    def __init__(self, dirs: list[Path], port: int = 0, extra: list[str] = (), timeout=120.0,
                 host: str = "127.0.0.1"):  # fmt: skip
        self.served, self.tmp = logdir(dirs)
        args = tensorboard_args(self.served, port, host)
        argv = [sys.executable, "-m", "tensorboard.main", *args]
        self.process = subprocess.Popen(
            [*argv, *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # Ctrl-C reaches us only; stop() ends the whole group
            preexec_fn=functools.partial(die_with_parent, os.getpid()),
        )
        try:
            self.url = self._wait_for_url(timeout)
        except BaseException:  # a failed start or Ctrl-C while starting: leave nothing behind
            self.stop()
            raise
        threading.Thread(target=self._relay, daemon=True).start()

    def _wait_for_url(self, timeout: float) -> str:
        timer = threading.Timer(timeout, self.stop)
        timer.start()
        lines = []
        try:
            for line in self.process.stdout:
                lines.append(line)
                if m := URL_LINE.search(line):
                    return m[1]
        finally:
            timer.cancel()
        self.stop()
        raise RuntimeError("TensorBoard did not start:\n" + "".join(lines[-20:]))

    def _relay(self) -> None:
        for line in self.process.stdout:  # keeps the pipe drained; shows TensorBoard's errors
            sys.stderr.write(line)

    def stop(self) -> None:
        """End TensorBoard and its data server, and remove the link tree."""
        try:  # the whole group, even if TensorBoard itself has already exited
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        except ProcessLookupError:
            self.process.wait()
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> Board:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gradexp.board",
        description="TensorBoard on gradexp runs and sweeps (127.0.0.1 unless --host, every "
        "point kept). "
        "Other flags are passed to tensorboard.",
    )
    parser.add_argument("dirs", nargs="*", type=Path, default=[Path("outputs")],
                        help="run, sweep or output directories (default: outputs)")  # fmt: skip
    parser.add_argument("--port", type=int, default=0, help="default: a free port")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface to serve on (default: 127.0.0.1, this machine only)",
    )
    args, extra = parser.parse_known_args(argv)
    if any(a == "--bind_all" or a.startswith(("--host", "--bind_all=")) for a in extra):
        parser.error("give the interface with gradexp.board's own --host")
    if not loopback(args.host):  # said out loud, before TensorBoard binds
        print(f"gradexp board: warning: --host {args.host} serves these runs, their configs and "
              "data paths to every machine that can reach this one; TensorBoard has no login",
              file=sys.stderr, flush=True)  # fmt: skip
    for d in args.dirs:
        if not d.is_dir():
            parser.error(f"{d}: no such directory; pass run or sweep directories")
        if next(d.rglob("events.out.tfevents.*"), None) is None:
            print(f"gradexp board: warning: no TensorBoard event files under {d}", file=sys.stderr)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # `kill` cleans up like Ctrl-C
    try:
        board = Board(args.dirs, args.port, extra, host=args.host)
    except RuntimeError as e:  # e.g. the port is taken: TensorBoard's own words, no traceback
        print(f"gradexp board: {e}", file=sys.stderr)
        return 1
    try:
        print(f"gradexp board: TensorBoard on {', '.join(map(str, args.dirs))} at {board.url}/")
        for page, link in pages(board.url).items():
            print(f"  {page + ':':16}{link}")
        print("Ctrl-C to stop.", flush=True)
        return board.process.wait()
    except KeyboardInterrupt:
        print("gradexp board: stopped", file=sys.stderr)
        return 0
    finally:
        board.stop()


if __name__ == "__main__":
    sys.exit(main())
