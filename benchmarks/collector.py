"""Collector throughput on MT10 with random actions: mtrl's Python backend (env stepping,
resets at the time limit and replay writes) vs gymnasium's SyncVectorEnv over metaworld.

    python benchmarks/collector.py [--steps 2000] [--rounds 3]

One env per task; runs alternate and the ratio is taken per round. Prints one JSON object.
The goal for the Python backend is >= 0.9x raw SyncVectorEnv (overhead <= 10 %).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import gymnasium as gym
import numpy as np

from envs.meta_world import MetaWorldConfig, MetaWorldSuite
from mtrl.replay import MultiTaskReplay

TASKS = 10


def raw_sync_vector_env(steps: int) -> float:
    import metaworld  # noqa: F401  (registers Meta-World/MT10)

    vec = gym.make_vec("Meta-World/MT10", vector_strategy="sync", seed=0)
    vec.reset(seed=0)
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (steps, TASKS, 4)).astype(np.float32)
    start = time.perf_counter()
    for a in actions:
        vec.step(a)  # autoresets at the 500-step limit
    elapsed = time.perf_counter() - start
    vec.close()
    return steps * TASKS / elapsed


def mtrl_python_backend(steps: int) -> float:
    env = MetaWorldSuite(MetaWorldConfig(benchmark="MT10"), seed=0).make_env(TASKS, seed=0)
    replay = MultiTaskReplay(TASKS, steps + 1, 39, 4)
    tasks = np.arange(TASKS)
    obs = env.reset_slots(tasks, tasks)
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (steps, TASKS, 4)).astype(np.float32)
    start = time.perf_counter()
    for a in actions:
        step = env.step(a)
        replay.add(tasks, obs, a, step.reward, step.obs, step.terminated)
        obs = step.obs
        done = np.flatnonzero(step.terminated | step.truncated)
        if len(done):
            obs = obs.copy()
            obs[done] = env.reset_slots(done, tasks[done])
    elapsed = time.perf_counter() - start
    env.close()
    return steps * TASKS / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=2000, help="vector steps per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    ours, raw = [], []
    for _ in range(args.rounds):
        ours.append(mtrl_python_backend(args.steps))
        raw.append(raw_sync_vector_env(args.steps))
    print(json.dumps({
        "benchmark": "collector", "suite": "MT10", "envs_per_task": 1, "vector_steps": args.steps,
        "mtrl_python_env_steps_per_s": round(statistics.median(ours)),
        "raw_sync_vector_env_steps_per_s": round(statistics.median(raw)),
        "ratio_per_round": [round(a / b, 3) for a, b in zip(ours, raw)],
        "ratio_median": round(statistics.median(a / b for a, b in zip(ours, raw)), 3),
        "goal_ratio": 0.9,
    }))


if __name__ == "__main__":
    main()
