"""Franka Kitchen stepping speed on one core: env-steps/s of one slot (and of 7, one per
task), random actions, with the trainer's reset pattern; plus the time to build one kitchen.

    python benchmarks/kitchen_env.py [--seconds 10]

Prints one JSON object. Needs the kitchen extra (gymnasium-robotics).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from mtrl.envs.franka_kitchen import FrankaKitchenConfig, FrankaKitchenSuite


def measure(num_slots: int, seconds: float) -> tuple[float, float]:
    suite = FrankaKitchenSuite(FrankaKitchenConfig())
    env = suite.make_env(num_slots, seed=0)
    slots = np.arange(num_slots)
    tasks = slots % suite.num_tasks
    start = time.perf_counter()
    env.reset_slots(slots, tasks)  # builds the slots' kitchens
    build_s = (time.perf_counter() - start) / num_slots
    rng = np.random.default_rng(0)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        result = env.step(rng.uniform(-1, 1, (num_slots, 9)).astype(np.float32))
        done = np.flatnonzero(result.terminated | result.truncated)
        if len(done):
            env.reset_slots(done, tasks[done])
        steps += num_slots
    rate = steps / (time.perf_counter() - start)
    env.close()
    return rate, build_s


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    one, build_s = measure(1, args.seconds)
    seven, _ = measure(7, args.seconds)
    print(
        json.dumps(
            {
                "benchmark": "kitchen_env",
                "cores": 1,
                "env_steps_per_s_1_slot": round(one),
                "env_steps_per_s_7_slots": round(seven),
                "seconds_to_build_one_kitchen": round(build_s, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
