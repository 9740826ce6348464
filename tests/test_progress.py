"""Progress output: plain lines when stdout is a file or a pipe (a cluster log), speed and ETA
from one recent window that starts after the warm-up."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

from mtrl.training.progress import RecentRate, StepProgress


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_training_to_a_pipe_prints_progress_lines_while_it_trains(tmp_path):
    args = [
        "toy-mtsac",
        "agent.hidden_sizes=[32,32]",
        "train.total_steps=200000",
        "train.warmup_steps=400",
        "train.batch_per_task=16",
        # 3,600 steps between the warm-up and the first evaluation: long enough (over the half second
        # that RecentRate needs) for a speed on a fast CPU too, where 400 steps once took less
        "train.eval_every=4000",
        "train.eval_episodes=2",
        "device=cpu",
        f"run.dir={tmp_path / 'run'}",
    ]  # train.progress is on, as by default
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parent.parent)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mtrl.cli", "train", *args],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    lines: queue.Queue[str] = queue.Queue()
    # the run's own notes ("mtrl: sac.precision=auto: ...") are not progress lines
    threading.Thread(
        target=lambda: [lines.put(line) for line in proc.stdout if not line.startswith("mtrl: ")], daemon=True
    ).start()
    try:
        # each evaluation prints a line at once (flushed): lines arrive long before the run's end
        first, second = lines.get(timeout=300), lines.get(timeout=300)
        assert proc.poll() is None, "the lines came only when the run ended"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
    assert (
        first.startswith("train 4,000/200,000 (2%)  ") and " steps/s  ETA " in first and "  eval success " in first
    ), first
    assert second.startswith("train 8,000/200,000 (4%)"), second


def test_off_a_terminal_a_line_every_interval_and_at_each_evaluation():
    clock, out = FakeClock(), []
    progress = StepProgress("train", 10_000, terminal=False, clock=clock, line_interval=30.0, out=out.append)
    with progress:
        for second in range(1, 100):  # 10 steps/s for 99 s
            clock.now = float(second)
            progress.advance(second * 10)
        progress.set_eval(0.25)
    assert [line.split(" (")[0] for line in out] == [
        "train 300/10,000",
        "train 600/10,000",
        "train 900/10,000",
        "train 990/10,000",
    ]
    assert out[-1].endswith("10 steps/s  ETA 15:01  eval success 25%"), out[-1]


def test_speed_and_eta_come_from_the_same_window_after_the_warm_up():
    clock = FakeClock()
    progress = StepProgress("train", 100_000, warmup_end=10_000, terminal=False, clock=clock, out=lambda line: None)
    for tenth in range(1, 11):  # warm-up: 10,000 random-action steps in 1 s
        clock.now = tenth / 10
        progress.advance(tenth * 1_000)
        if tenth < 10:
            assert progress.speed_and_eta()[1] == "warm-up"
    for second in range(1, 121):  # then 100 steps/s for two minutes
        clock.now = 1 + second
        progress.advance(10_000 + 100 * second)
    assert progress.speed_and_eta() == ("100 steps/s", "13:00")  # 78,000 steps left at 100/s


def test_the_window_forgets_older_samples():
    clock = FakeClock()
    rate = RecentRate(window=10.0, clock=clock)
    rate.restart(0)
    for second in range(1, 21):  # 1,000/s for 10 s, then 10/s
        clock.now = float(second)
        rate.add(second * 1000 if second <= 10 else 10_000 + (second - 10) * 10)
    assert abs(rate.rate() - 10.0) < 1e-9
