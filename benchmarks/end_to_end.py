"""End to end: transitions/s of a short MT10 training run, mtrl's MT-SAC vs Stable-Baselines3
SAC configured as MT-SAC (Meta-World's one-hot MT10 env, one env per task).

    python benchmarks/end_to_end.py [--transitions 2000] [--warmup 1000]

All: 3x400 actor and twin critics, batch 1280, one gradient update per vector step (10
transitions), on the CPU. ``ours`` and SB3 use the Python Meta-World envs in float32;
``ours_fast`` adds ``env.backend=envpool sac.precision=bfloat16``. Only the learning phase
after a random warm-up is timed; evaluation is excluded. Also projects the hours the full
MT10 protocol's 20M transitions would take at each rate (evaluation excluded).
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from mtrl.config import load_config
from mtrl.logger import read_metrics
from mtrl.trainer import train


MT10_TRANSITIONS = 20_000_000


def ours(warmup: int, transitions: int, extra: tuple[str, ...] = ()) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        cfg = load_config("mt10-mtsac", [
            f"run.dir={run_dir}", f"train.warmup_steps={warmup}", f"train.total_steps={warmup + transitions}",
            f"train.log_every={warmup}", "train.eval_every=0", "train.eval_episodes=1", "train.final_eval_episodes=1", "train.checkpoint_every=0",
            "train.buffer_per_task=10000", "train.progress=false", "conflict.monitor_every=0", "device=cpu", *extra,
        ])
        train(cfg)
        rates = [r["train/steps_per_second"] for r in read_metrics(run_dir) if "train/steps_per_second" in r]
        return rates[-1]  # the window after the warm-up


def sb3(warmup: int, transitions: int) -> float:
    from stable_baselines3 import SAC

    from mtrl.sb3 import metaworld_onehot_vec_env

    env = metaworld_onehot_vec_env("MT10", seed=0)
    model = SAC("MlpPolicy", env, learning_starts=warmup, batch_size=1280, buffer_size=100_000, train_freq=1,
                gradient_steps=1, policy_kwargs=dict(net_arch=[400, 400, 400]), device="cpu", seed=0)
    model.learn(total_timesteps=warmup)
    start = time.perf_counter()
    model.learn(total_timesteps=transitions, reset_num_timesteps=False)
    elapsed = time.perf_counter() - start
    env.close()
    return transitions / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--transitions", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=1000)
    args = parser.parse_args()
    rates = {
        "ours": ours(args.warmup, args.transitions),
        "ours_fast": ours(args.warmup, args.transitions, ("env.backend=envpool", "sac.precision=bfloat16")),
        "sb3": sb3(args.warmup, args.transitions),
    }
    print(json.dumps({
        "benchmark": "end_to_end", "suite": "MT10", "timed_transitions": args.transitions,
        "transitions_per_s": {k: round(v, 1) for k, v in rates.items()},
        "ratio_over_sb3": {k: round(v / rates["sb3"], 3) for k, v in rates.items() if k != "sb3"},
        "projected_mt10_hours_without_eval": {k: round(MT10_TRANSITIONS / v / 3600, 1) for k, v in rates.items()},
    }))


if __name__ == "__main__":
    main()
