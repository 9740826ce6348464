"""Where an evaluation's time goes: Meta-World's envs, the policy, resets.

    python benchmarks/evaluation.py RUN_DIR [--episodes 3]

Loads RUN_DIR's newest checkpoint (any finished or running MT10 run) and runs the trainer's
evaluation (``mtrl.training.evaluation.evaluate``: the deterministic policy, exactly
``--episodes`` per task, Meta-World's protocol) with timers around the env's steps and resets
and the policy's calls. One thread. Prints one JSON object: seconds in all and per part, the
vector steps, and the time per env step. The env is built before the clock starts (a run
builds it once; its first resets also build each task's env, counted under ``reset``).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import torch


def timed(fn, seconds: dict, key: str):
    """``fn`` that adds its wall time to ``seconds[key]`` and counts its calls."""

    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        out = fn(*args, **kwargs)
        seconds[key] += time.perf_counter() - started
        seconds[f"{key}_calls"] += 1
        return out

    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--episodes", type=int, default=3, help="episodes per task")
    args = parser.parse_args()
    torch.set_num_threads(1)

    import mtrl
    from mtrl.builders import make_suite
    from mtrl.run_files import read_run
    from mtrl.seeding import run_seeds
    from mtrl.training.evaluation import evaluate

    cfg = read_run(args.run_dir)
    policy = mtrl.load(args.run_dir, device="cpu")  # the newest checkpoint
    suite = make_suite(cfg)
    env = suite.make_eval_env(args.episodes, seed=run_seeds(cfg.seed).evaluation)
    seconds: dict[str, float] = defaultdict(float)
    env.step = timed(env.step, seconds, "env_step")
    env.reset_slots = timed(env.reset_slots, seconds, "reset")
    started = time.perf_counter()
    result = evaluate(timed(policy, seconds, "policy"), env, list(suite.task_names), args.episodes, True, 0)
    total = time.perf_counter() - started
    print(
        json.dumps(
            {
                "run": args.run_dir.name,
                "episodes_per_task": args.episodes,
                "success_mean": result.success_mean,
                "seconds": round(total, 2),
                "env_step_seconds": round(seconds["env_step"], 2),
                "policy_seconds": round(seconds["policy"], 2),
                "reset_seconds": round(seconds["reset"], 2),
                "other_seconds": round(total - seconds["env_step"] - seconds["policy"] - seconds["reset"], 2),
                "vector_steps": int(seconds["env_step_calls"]),
                "ms_per_vector_step": round(1e3 * total / max(seconds["env_step_calls"], 1), 2),
                "slots": env.num_slots,
            }
        )
    )


if __name__ == "__main__":
    main()
