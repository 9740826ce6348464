"""End to end: transitions/s of a short MT10 training run, mtrl's MT-SAC vs Stable-Baselines3
SAC configured as MT-SAC (Meta-World's one-hot MT10 env, one env per task).

    python benchmarks/end_to_end.py [--transitions 2000] [--warmup 1000] [--rounds 3] [--variants ours sb3 ...]

All: 3x400 actor and twin critics, batch 1280, one gradient update per vector step (10
transitions), on the CPU, Python Meta-World envs. ``ours`` is mtrl as shipped (its defaults:
``sac.precision=auto``, which picks bfloat16 on a CPU with AVX512-BF16/AMX and float32
elsewhere); ``ours_float32`` pins float32 (SB3's precision); ``ours_envpool`` adds
``env.backend=envpool`` to the defaults; ``ours_nstep3`` adds the study's recipe,
``sac.n_step=3`` (what 3-step returns cost end to end). Only the learning phase after a random warm-up is
timed; evaluation is excluded. Runs alternate (ours, ..., SB3) for ``--rounds`` rounds and
the ratios over SB3 are taken per round (this machine is noisy); medians printed. Also
projects the hours the full MT10 protocol's 20M transitions would take at each median rate
(evaluation excluded). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from mtrl.config import load_config
from mtrl.hardware import resolve_precision
from mtrl.training.logger import read_metrics
from mtrl.training.trainer import train

MT10_TRANSITIONS = 20_000_000


def ours(warmup: int, transitions: int, extra: tuple[str, ...] = ()) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        cfg = load_config(
            "mt10-mtsac",
            [
                f"run.dir={run_dir}",
                f"train.warmup_steps={warmup}",
                f"train.total_steps={warmup + transitions}",
                f"train.log_every={warmup}",
                "train.eval_every=0",
                "train.eval_episodes=1",
                "train.final_eval_episodes=1",
                "train.checkpoint_every=0",
                "train.buffer_per_task=10000",
                "train.progress=false",
                "conflict.monitor_every=0",
                "device=cpu",
                *extra,
            ],
        )
        train(cfg)
        rates = [r["train/steps_per_second"] for r in read_metrics(run_dir) if "train/steps_per_second" in r]
        return rates[-1]  # the window after the warm-up


def sb3(warmup: int, transitions: int) -> float:
    from stable_baselines3 import SAC

    from mtrl.sb3 import metaworld_onehot_vec_env

    env = metaworld_onehot_vec_env("MT10", seed=0)
    model = SAC(
        "MlpPolicy",
        env,
        learning_starts=warmup,
        batch_size=1280,
        buffer_size=100_000,
        train_freq=1,
        gradient_steps=1,
        policy_kwargs=dict(net_arch=[400, 400, 400]),
        device="cpu",
        seed=0,
    )
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
    parser.add_argument("--rounds", type=int, default=3)
    variants = {
        "ours": lambda: ours(args.warmup, args.transitions),
        "ours_float32": lambda: ours(args.warmup, args.transitions, ("sac.precision=float32",)),
        "ours_envpool": lambda: ours(args.warmup, args.transitions, ("env.backend=envpool",)),
        "ours_nstep3": lambda: ours(args.warmup, args.transitions, ("sac.n_step=3",)),
        "sb3": lambda: sb3(args.warmup, args.transitions),
    }
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=list(variants),
        default=[k for k in variants if k != "ours_nstep3"],
        help="which runs to time (sb3 always: the ratios are over it)",
    )
    args = parser.parse_args()
    variants = {k: v for k, v in variants.items() if k in args.variants or k == "sb3"}
    rates: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(args.rounds):
        for name, run in variants.items():
            rates[name].append(run())
    median = {k: statistics.median(v) for k, v in rates.items()}
    print(
        json.dumps(
            {
                "benchmark": "end_to_end",
                "suite": "MT10",
                "timed_transitions": args.transitions,
                "rounds": args.rounds,
                "ours_precision": "auto -> " + resolve_precision("auto", torch.device("cpu"))[0],
                "transitions_per_s": {k: round(v, 1) for k, v in median.items()},
                "ratio_over_sb3_per_round": {
                    k: [round(a / b, 3) for a, b in zip(v, rates["sb3"])] for k, v in rates.items() if k != "sb3"
                },
                "ratio_over_sb3_median": {
                    k: round(statistics.median(a / b for a, b in zip(v, rates["sb3"])), 3)
                    for k, v in rates.items()
                    if k != "sb3"
                },
                "projected_mt10_hours_without_eval": {
                    k: round(MT10_TRANSITIONS / v / 3600, 1) for k, v in median.items()
                },
            }
        )
    )


if __name__ == "__main__":
    main()
