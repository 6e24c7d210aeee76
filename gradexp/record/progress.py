"""The progress bar: tqdm on a terminal (quiet when stderr is not a TTY), or nothing."""

from __future__ import annotations

import sys


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
