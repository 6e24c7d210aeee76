"""SIGINT/SIGTERM as a request to stop after the current step, not an exception mid-update."""

from __future__ import annotations

import signal
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """While active, the first SIGINT or SIGTERM only sets `received`; the loop finishes its
    step, writes logs and a checkpoint, and stops. A second one raises KeyboardInterrupt, for a
    user who will not wait. Outside the main thread (where Python cannot take signals) it is inert.
    """

    def __init__(self):
        self.received: signal.Signals | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def _handle(self, signum: int, frame) -> None:
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signal.Signals(signum)

    @property
    def name(self) -> str:
        return self.received.name if self.received else ""

    @property
    def exit_code(self) -> int:
        """The shell's convention for death by a signal: 128 + its number (130 SIGINT, 143 TERM)."""
        return 128 + int(self.received) if self.received else 1
