"""Memory of Meta-World envs held by the training env, per backend, when slots change tasks.

    python benchmarks/env_memory.py [--slots 50] [--rounds 6]

MT50 with ``--slots`` slots; every round resets every slot to a uniformly drawn task (what
the uniform and learning-progress schedulers do). Each backend runs in its own process, so
the peak resident memory is its own. Reports the envs built, the peak resident GB, the MB
per env, and how many envs one env per (slot, task) pair would have built by then.
Prints one JSON object; needs the envpool extra for the EnvPool row.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys

import numpy as np


def child(backend: str, slots: int, rounds: int) -> dict:
    from mtrl.envs.meta_world import MetaWorldConfig, MetaWorldSuite

    suite = MetaWorldSuite(MetaWorldConfig(benchmark="MT50", backend=backend), seed=0)
    suite.make_eval_env(1, seed=0)  # builds the cached benchmark, so the baseline includes it
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    env = suite.make_env(slots, seed=0)
    rng = np.random.default_rng(0)
    pairs = set()
    for _ in range(rounds):
        tasks = rng.integers(0, 50, slots)
        env.reset_slots(np.arange(slots), tasks)
        env.step(np.zeros((slots, 4), np.float32))
        pairs.update(zip(range(slots), tasks.tolist()))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux
    lender = env.lender
    made = lender.made + (env.python_env.lender.made if getattr(env, "python_env", None) else 0)
    return {
        "envs_built": made,
        "peak_resident_gb": round(peak / 1e6, 2),
        "mb_per_env": round((peak - baseline) / 1e3 / made, 1),
        "envs_one_per_slot_and_task": len(pairs),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--slots", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.slots, args.rounds)))
        return
    rows = {}
    for backend in ("python", "envpool"):
        out = subprocess.run(
            [sys.executable, __file__, "--child", backend, "--slots", str(args.slots), "--rounds", str(args.rounds)],
            capture_output=True,
            text=True,
            check=True,
        )
        rows[backend] = json.loads(out.stdout.strip().splitlines()[-1])
    print(
        json.dumps(
            {
                "benchmark": "env_memory",
                "suite": "MT50",
                "slots": args.slots,
                "rounds": args.rounds,
                "scheduler": "uniform draws",
                **rows,
            }
        )
    )


if __name__ == "__main__":
    main()
