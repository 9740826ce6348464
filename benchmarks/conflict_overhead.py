"""Cost of the gradient-conflict monitor at MT10 settings (10 tasks, 39-d obs, 3x400 MT-SAC,
batch 128 per task), as a share of training time at monitor_every = K.

    python benchmarks/conflict_overhead.py [--updates 30] [--agent mtsac]

overhead = time(one measurement) / (K * time(one update)). Also times PCGrad updates.
Prints one JSON object; the goal is <= 5 % at the default K.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from mtrl.config import ConflictConfig, SACConfig, load_config
from mtrl.learner.agent import EnvSpec
from mtrl.learner.replay import MultiTaskReplay
from mtrl.learner.sac import SAC
from mtrl.registry import get


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--updates", type=int, default=30)
    parser.add_argument("--agent", default="mtsac")
    args = parser.parse_args()
    torch.manual_seed(0)
    tasks, obs_dim, act_dim = 10, 39, 4
    spec = EnvSpec(obs_dim, act_dim, tuple(f"t{i}" for i in range(tasks)), tuple(["x"] * tasks), "bench")
    cfg = load_config(f"mt10-{args.agent}")
    agent_cfg = cfg.agent
    if args.agent == "care":
        agent_cfg.task_embedding = "one_hot"  # timing only: no embedding file for fake task names
    replay = MultiTaskReplay(tasks, 10_000, obs_dim, act_dim)
    rng = np.random.default_rng(0)
    for _ in range(100):
        replay.add(
            np.arange(tasks),
            rng.normal(size=(tasks, obs_dim)),
            rng.uniform(-1, 1, (tasks, act_dim)),
            rng.normal(size=tasks),
            rng.normal(size=(tasks, obs_dim)),
            np.zeros(tasks, bool),
        )
    results = {}
    for method in ("none", "pcgrad"):
        agent = get("agent", args.agent).target(agent_cfg, spec)
        sac = SAC(agent, tasks, act_dim, SACConfig(), ConflictConfig(method=method))
        results[method] = timed(lambda: sac.update(replay.sample(128)), args.updates)
    measure = timed(lambda: sac.measure_conflicts(replay.sample(128)), max(3, args.updates // 10))
    k = ConflictConfig().monitor_every
    print(
        json.dumps(
            {
                "benchmark": "conflict_overhead",
                "agent": args.agent,
                "tasks": tasks,
                "batch": 128 * tasks,
                "threads": torch.get_num_threads(),
                "update_ms": round(results["none"] * 1e3, 2),
                "measure_ms": round(measure * 1e3, 2),
                "monitor_every": k,
                "monitor_overhead_percent": round(100 * measure / (k * results["none"]), 3),
                "pcgrad_update_ms": round(results["pcgrad"] * 1e3, 2),
                "pcgrad_slowdown": round(results["pcgrad"] / results["none"], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
