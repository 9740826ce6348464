"""Graceful stop: SIGINT (Ctrl-C) and SIGTERM (cluster schedulers, ``kill``) set a flag that
the training loop reads once per vector step, so it can save a checkpoint and exit with one
line saying how to resume. A second signal interrupts at once (KeyboardInterrupt)."""

from __future__ import annotations

import signal
import threading
from types import FrameType


class StopSignals:
    """Context manager; ``received`` names the first signal caught, or is None."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():  # Python only allows it there
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
