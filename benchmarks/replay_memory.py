"""Replay memory per transition for Meta-World sizes (MT10, MT50) and the toy suite, and
the cost of one ``add()`` of an MT10 vector step (10 slots) on the CPU.

    python benchmarks/replay_memory.py

Prints one JSON object. Goal: <= 350 bytes per Meta-World transition.
"""

from __future__ import annotations

import json
import time

import numpy as np

from mtrl.learner.replay import MultiTaskReplay


def add_microseconds(steps: int = 3000) -> float:
    replay, tasks = MultiTaskReplay(10, 5000, 39, 4), np.arange(10)
    obs, action = np.zeros((10, 39), np.float32), np.zeros((10, 4), np.float32)
    reward, terminated = np.zeros(10, np.float32), np.zeros(10, bool)
    start = time.perf_counter()
    for _ in range(steps):
        replay.add(tasks, obs, action, reward, obs, terminated)
    return (time.perf_counter() - start) / steps * 1e6


def main() -> None:
    out = {"benchmark": "replay_memory"}
    for name, tasks, obs_dim, act_dim in (("mt10", 10, 39, 4), ("mt50", 50, 39, 4), ("toy", 4, 2, 2)):
        replay = MultiTaskReplay(tasks, 16, obs_dim, act_dim)
        out[f"{name}_bytes_per_transition"] = replay.bytes_per_transition
        out[f"{name}_gib_at_1m_per_task"] = round(replay.bytes_per_transition * tasks * 1_000_000 / 2**30, 2)
    out["mt10_add_microseconds_per_10_slot_step"] = round(add_microseconds(), 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
