"""The progress bar: tqdm on a terminal (quiet when stderr is not a TTY), or nothing."""

from __future__ import annotations

import io
import os
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
    first bar: said in one line before anything is written, not as a traceback mid-run."""
    names = sorted(k for k in os.environ if k.startswith("TQDM_"))
    if not names:
        return
    try:
        from tqdm import tqdm

        bar = tqdm(total=2, file=io.StringIO(), disable=False)
        bar.update(1)
        bar.close()
    except Exception as e:
        shown = ", ".join(f"{k}={os.environ[k]!r}" for k in names)
        why = str(e).splitlines()[0] if str(e) else ""
        raise ConfigError("environment", shown, f"tqdm cannot use it ({type(e).__name__}: "
                          f"{why}); unset it, or run with progress=false") from None  # fmt: skip
