"""End to end: transitions/s of a short MT10 training run, mtrl's MT-SAC vs Stable-Baselines3
SAC configured as MT-SAC (Meta-World's one-hot MT10 env, one env per task).

    python benchmarks/end_to_end.py [--transitions 2000] [--warmup 1000]

Both: 3x400 actor and twin critics, batch 1280, one gradient update per vector step (10
transitions), Python Meta-World envs on the CPU. Only the learning phase after a random
warm-up is timed; evaluation is excluded. Prints one JSON object.
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


def ours(warmup: int, transitions: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        cfg = load_config("mt10-mtsac", [
            f"run.dir={run_dir}", f"train.warmup_steps={warmup}", f"train.total_steps={warmup + transitions}",
            f"train.log_every={warmup}", "train.eval_every=0", "train.eval_episodes=1", "train.checkpoint_every=0",
            "train.buffer_per_task=10000", "train.progress=false", "conflict.monitor_every=0", "device=cpu",
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
    a = ours(args.warmup, args.transitions)
    b = sb3(args.warmup, args.transitions)
    print(json.dumps({
        "benchmark": "end_to_end", "suite": "MT10", "timed_transitions": args.transitions,
        "ours_mtsac_transitions_per_s": round(a, 1), "sb3_sac_onehot_transitions_per_s": round(b, 1),
        "ratio_ours_over_sb3": round(a / b, 3),
    }))


if __name__ == "__main__":
    main()
