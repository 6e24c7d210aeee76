"""The progress bar: tqdm on a terminal (quiet when stderr is not a TTY), or nothing."""

from __future__ import annotations

import os
import subprocess
import sys

from gradexp.errors import ConfigError


class progress_bar:
    def __init__(self, total: int, enabled: bool):
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="step", disable=None, file=sys.stderr, leave=False)

    def __enter__(self):
        return self.bar

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()


def check_environment() -> None:
    """A TQDM_* variable tqdm cannot use (TQDM_MININTERVAL=abc) breaks tqdm's import or its
    first bar: said in one line before anything is written, not as a traceback mid-run. tqdm
    reads them once, at its import, so the check draws a bar in a fresh interpreter (only when
    such a variable is set)."""
    names = sorted(k for k in os.environ if k.startswith("TQDM_"))
    if not names:
        return
    draw = ("import io\nfrom tqdm import tqdm\nbar = tqdm(total=2, file=io.StringIO(), "
            "disable=False)\nbar.update(1)\nbar.close()")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", draw], capture_output=True, text=True)
    if out.returncode:
        shown = ", ".join(f"{k}={os.environ[k]!r}" for k in names)
        why = (out.stderr.strip().splitlines() or ["?"])[-1]
        raise ConfigError("environment", shown, f"tqdm cannot use it ({why}); unset it, or "
                          "run with progress=false")  # fmt: skip
