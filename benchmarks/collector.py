"""Collector throughput on MT10 with random actions, side by side in one process:

* ``mtrl_python``: mtrl's Python backend (env stepping, resets at the time limit, replay writes);
* ``mtrl_envpool``: ``env.backend=envpool`` as a user gets it on MT10 (pick-place-v3 on the
  Python envs, see ``envs/meta_world_envpool.py``), same loop;
* ``mtrl_envpool_native``: the same wrapper with all ten tasks on EnvPool (the wrapper's ceiling);
* ``raw_sync``: gymnasium's SyncVectorEnv over metaworld (the reference);
* ``raw_envpool``: ten bare EnvPool pools driven with send/recv, autoreset, no replay, one
  thread per pool (and ``raw_envpool_2_threads_per_pool``: two, to check that choice).

    python benchmarks/collector.py [--steps 2000] [--rounds 3] [--envs-per-task 1]

Runs alternate and ratios to raw_sync are taken per round (medians reported).
Prints one JSON object. Goals: mtrl_python >= 0.9x, mtrl_envpool >= 3.5x raw_sync.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import gymnasium as gym
import numpy as np

from mtrl.envs.meta_world import MetaWorldConfig, MetaWorldSuite
from mtrl.envs.meta_world_envpool import EnvPoolVecEnv, envpool_id
from mtrl.learner.replay import MultiTaskReplay

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


def raw_envpool(steps: int, per_task: int, threads: int = 1) -> float:
    import envpool

    names = MetaWorldSuite(MetaWorldConfig(benchmark="MT10")).task_names
    pools = [
        envpool.make_gymnasium(
            envpool_id(n), num_envs=per_task, seed=i * per_task, partially_observable=False, num_threads=threads
        )
        for i, n in enumerate(names)
    ]
    for pool in pools:
        pool.async_reset()  # queues the reset results, so the first recv returns them
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (steps, TASKS, per_task, 4)).astype(np.float32)
    ids = np.arange(per_task, dtype=np.int32)
    start = time.perf_counter()
    for pool in pools:
        pool.recv()
    for a in actions:
        for pool, a_task in zip(pools, a):
            pool.send(a_task, ids)
        for pool in pools:
            pool.recv()
    elapsed = time.perf_counter() - start
    for pool in pools:
        pool.close()
    return steps * TASKS * per_task / elapsed


def make_mtrl_env(backend: str, num_slots: int):
    suite = MetaWorldSuite(MetaWorldConfig(benchmark="MT10", backend=backend.split("_")[0]), seed=0)
    if backend == "envpool_native":
        return EnvPoolVecEnv(suite.task_names, num_slots, 0, 500)
    return suite.make_env(num_slots, seed=0)


def mtrl_backend(backend: str, steps: int, per_task: int) -> float:
    num_slots = TASKS * per_task
    env = make_mtrl_env(backend, num_slots)
    replay = MultiTaskReplay(TASKS, steps * per_task + 1, 39, 4)
    tasks = np.arange(num_slots) % TASKS
    obs = env.reset_slots(np.arange(num_slots), tasks)
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (steps, num_slots, 4)).astype(np.float32)
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
    return steps * num_slots / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=2000, help="vector steps per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--envs-per-task",
        type=int,
        default=1,
        help="envs per task for mtrl and raw EnvPool (SyncVectorEnv steps envs one after "
        "another, so its rate per env does not depend on their number: it runs one per task)",
    )
    args = parser.parse_args()
    k = args.envs_per_task
    runs = {
        "raw_sync": raw_sync_vector_env,
        "mtrl_python": lambda n: mtrl_backend("python", n, k),
        "mtrl_envpool": lambda n: mtrl_backend("envpool", n, k),
        "mtrl_envpool_native": lambda n: mtrl_backend("envpool_native", n, k),
        "raw_envpool": lambda n: raw_envpool(n, k),
        "raw_envpool_2_threads_per_pool": lambda n: raw_envpool(n, k, threads=2),  # the wrapper uses 1 here
    }
    rates: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, run in runs.items():
            rates[name].append(run(args.steps))
    ratios = {name: [r / s for r, s in zip(rates[name], rates["raw_sync"])] for name in runs if name != "raw_sync"}
    print(
        json.dumps(
            {
                "benchmark": "collector",
                "suite": "MT10",
                "envs_per_task": k,
                "vector_steps": args.steps,
                "env_steps_per_s": {name: round(statistics.median(r)) for name, r in rates.items()},
                "ratio_to_raw_sync_median": {name: round(statistics.median(r), 3) for name, r in ratios.items()},
                "ratio_to_raw_sync_per_round": {name: [round(x, 3) for x in r] for name, r in ratios.items()},
                "goal_ratio": {"mtrl_python": 0.9, "mtrl_envpool": 3.5},
            }
        )
    )


if __name__ == "__main__":
    main()
