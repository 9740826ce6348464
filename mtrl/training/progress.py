"""Progress of training and of ``mtrl eval``: a rich bar on a terminal, and plain lines when
stdout is a file or a pipe (a cluster job's log, ``nohup``), where a live bar prints nothing
until it ends. Speed and ETA come from the same recent window, restarted when the warm-up's
random actions end (they run many times faster than training and would inflate both)."""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

# Off a terminal, a progress line at most this often (seconds), and at every evaluation.
LINE_INTERVAL = 30.0
# Speed and ETA: the last this many seconds of progress.
RATE_WINDOW = 60.0


def stdout_is_terminal() -> bool:
    """Whether stdout shows a live bar (rich's test: FORCE_TERMINAL, TTY, Jupyter)."""
    return Console().is_terminal


@contextmanager
def status(message: str, enabled: bool = True) -> Iterator[None]:
    """A spinner with a message while slow set-up runs (building MT50 takes a minute); off a
    terminal, the message as one line."""
    if not enabled:
        yield
        return
    console = Console(stderr=True)
    if not console.is_terminal:
        print(f"mtrl: {message}", file=sys.stderr, flush=True)
        yield
        return
    with console.status(message):
        yield


class RecentRate:
    """Units per second over about the last ``window`` seconds."""

    def __init__(self, window: float = RATE_WINDOW, clock: Callable[[], float] = time.perf_counter):
        self.window, self.clock = window, clock
        self._samples: deque[tuple[float, int]] = deque()  # one every quarter second at most
        self._latest: tuple[float, int] | None = None

    def restart(self, done: int) -> None:
        """Forget the past (e.g. the warm-up): the rate is measured from here on."""
        self._samples.clear()
        self._latest = None
        self.add(done)

    def add(self, done: int) -> None:
        now = self.clock()
        self._latest = (now, done)
        if not self._samples or now - self._samples[-1][0] >= 0.25:  # cheap when called every step
            self._samples.append(self._latest)
        while len(self._samples) > 1 and now - self._samples[1][0] >= self.window:
            self._samples.popleft()

    def rate(self) -> float | None:
        """None until the window spans a measurable stretch (half a second)."""
        if not self._samples or self._latest is None:
            return None
        (t0, d0), (t1, d1) = self._samples[0], self._latest
        return (d1 - d0) / (t1 - t0) if t1 - t0 >= 0.5 else None


def clock_time(seconds: float) -> str:
    """``1:02:03`` / ``2:03``."""
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class StepProgress:
    """Context manager showing ``done`` of ``total`` (steps or episodes) with the recent speed
    and the ETA from it; a no-op when ``enabled`` is false (tests, scripted runs).

    ``warmup_end``: the count at which the warm-up ends; speed and ETA restart there, and the
    ETA reads ``warm-up`` until then. ``terminal`` (default: stdout's) picks bar or lines."""

    def __init__(
        self,
        label: str,
        total: int,
        start: int = 0,
        unit: str = "steps",
        enabled: bool = True,
        warmup_end: int = 0,
        terminal: bool | None = None,
        clock: Callable[[], float] = time.perf_counter,
        line_interval: float = LINE_INTERVAL,
        out: Callable[[str], None] | None = None,
    ):
        self.label, self.total, self.unit, self.enabled = label, total, unit, enabled
        self.warmup_end, self.clock, self.line_interval = warmup_end, clock, line_interval
        self.done, self.eval = start, "-"
        self.rate = RecentRate(clock=clock)
        self.rate.restart(start)
        self._out = out or (lambda line: print(line, flush=True))
        self._last_line, self._shown = clock(), None
        self.terminal = enabled and (stdout_is_terminal() if terminal is None else terminal)
        self._bar = None
        if self.terminal:
            self._bar = Progress(
                TextColumn(f"[bold]{label}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[speed]}"),
                TextColumn("ETA {task.fields[eta]}"),
                TextColumn("{task.fields[eval]}"),
            )
            self._task = self._bar.add_task(label, total=total, completed=start, speed="-", eta="-", eval="")

    def __enter__(self) -> StepProgress:
        if self._bar is not None:
            self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
        elif exc[0] is None and self._shown != self.done:
            self.show()  # off a terminal, where it ended (unless the last line said so)

    def speed_and_eta(self) -> tuple[str, str]:
        """``"312 steps/s"``, ``"14:05"`` from the recent window (``-`` while unmeasured)."""
        if self.done < self.warmup_end:
            rate = self.rate.rate()
            return (f"{rate:,.0f} {self.unit}/s" if rate else "-"), "warm-up"
        rate = self.rate.rate()
        if not rate:
            return "-", "-"
        return f"{rate:,.0f} {self.unit}/s", clock_time(max(self.total - self.done, 0) / rate)

    def line(self) -> str:
        """The plain progress line: ``train 12,400/300,000 (4%)  312 steps/s  ETA 15:22``."""
        speed, eta = self.speed_and_eta()
        text = f"{self.label} {self.done:,}/{self.total:,} ({self.done / max(self.total, 1):.0%})  {speed}  ETA {eta}"
        return text + (f"  eval success {self.eval}" if self.eval != "-" else "")

    def advance(self, done: int) -> None:
        if not self.enabled:
            return
        if self.done < self.warmup_end <= done:
            self.rate.restart(done)  # the warm-up's speed says nothing about training's
        self.done = done
        self.rate.add(done)
        if self._bar is not None:
            speed, eta = self.speed_and_eta()
            self._bar.update(self._task, completed=done, speed=speed, eta=eta)
        elif self.clock() - self._last_line >= self.line_interval:
            self.show()

    def set_eval(self, success_mean: float) -> None:
        """The last evaluation's mean success; off a terminal, also a line now."""
        if not self.enabled:
            return
        self.eval = f"{success_mean:.0%}"
        if self._bar is not None:
            self._bar.update(self._task, eval=f"eval success {self.eval}")
        else:
            self.show()

    def show(self) -> None:
        """Print the plain line now (off a terminal)."""
        if self.enabled and self._bar is None:
            self._out(self.line())
            self._last_line, self._shown = self.clock(), self.done


def TrainingProgress(total_steps: int, start_step: int, enabled: bool = True, warmup_end: int = 0) -> StepProgress:
    """Training's progress: env steps, speed and ETA after the warm-up, last evaluation."""
    return StepProgress("train", total_steps, start_step, "steps", enabled, warmup_end)
