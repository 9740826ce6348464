"""Toy-suite stepping speed on one core: env-steps/s for several slot counts.

    python benchmarks/toy_env.py [--seconds 2]

Prints one JSON object. The toy suite's goal is >= 50,000 env-steps/s on one core.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from mtrl.envs.toy import ToyConfig, ToySuite


def measure(num_slots: int, seconds: float) -> float:
    suite = ToySuite(ToyConfig())
    env = suite.make_env(num_slots, seed=0)
    slots = np.arange(num_slots)
    tasks = slots % suite.num_tasks
    env.reset_slots(slots, tasks)
    actions = np.random.default_rng(0).uniform(-1, 1, (num_slots, 2)).astype(np.float32)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(100):
            result = env.step(actions)
            done = np.flatnonzero(result.truncated)  # the trainer's reset pattern
            if len(done):
                env.reset_slots(done, tasks[done])
        steps += 100 * num_slots
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    result = {f"env_steps_per_s_{n}_slots": round(measure(n, args.seconds)) for n in (4, 16, 64, 256)}
    print(json.dumps({"benchmark": "toy_env", "cores": 1, **result, "goal_env_steps_per_s": 50000}))


if __name__ == "__main__":
    main()
