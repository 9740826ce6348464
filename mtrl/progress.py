"""A rich progress bar for training: steps, steps/s, ETA and the last evaluation's success."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


@contextmanager
def status(message: str, enabled: bool = True) -> Iterator[None]:
    """A spinner with a message while slow set-up runs (building MT50 takes a minute)."""
    if not enabled:
        yield
        return
    with Console(stderr=True).status(message):
        yield


class TrainingProgress:
    """Context manager; a no-op when ``enabled`` is false (tests, scripted runs)."""

    def __init__(self, total_steps: int, start_step: int, enabled: bool = True):
        self.enabled = enabled
        self._start, self._t0 = start_step, time.perf_counter()
        if enabled:
            self._bar = Progress(
                TextColumn("[bold]train"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[sps]} steps/s"),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TextColumn("eval success {task.fields[eval]}"),
            )
            self._task = self._bar.add_task("train", total=total_steps, completed=start_step, sps="-", eval="-")

    def __enter__(self) -> "TrainingProgress":
        if self.enabled:
            self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self._bar.__exit__(*exc)

    def advance(self, step: int) -> None:
        if self.enabled:
            rate = (step - self._start) / max(time.perf_counter() - self._t0, 1e-9)
            self._bar.update(self._task, completed=step, sps=f"{rate:,.0f}")

    def set_eval(self, success_mean: float) -> None:
        if self.enabled:
            self._bar.update(self._task, eval=f"{success_mean:.0%}")
