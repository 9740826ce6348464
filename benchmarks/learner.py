"""Learner speed at the MT10 setting: SAC updates per second, ours vs Stable-Baselines3.

    python benchmarks/learner.py [--updates 20] [--rounds 3] [--device cpu|cuda] [--compile]
    python benchmarks/learner.py --architectures [mt10|study-mt10] [--updates 5] [--rounds 2]
    python benchmarks/learner.py --critics [--updates 10] [--rounds 3]
    python benchmarks/learner.py --adam [--updates 20] [--rounds 5]

Both learners get 39-d observations + a 10-task one-hot, 4-d actions, 3x400 actor and
critics, batch 1280 (128 per task), replay filled with random transitions, on the CPU.
Runs alternate (ours, SB3, ours, SB3, ...) and the ratio is taken per round, since this
machine is noisy. Also reports CARE's update cost relative to MT-SAC, and ours with
``sac.precision=bfloat16`` (SB3 has no such option: that ratio is not at equal precision).
Prints one JSON object.

``--architectures``: instead, every agent at its paper's MT10 scale (``configs/mt10-<agent>.yaml``:
network sizes, 128 samples per task) or with ``study-mt10`` at the MT10 study's scale
(``configs/study-mt10-<agent>.yaml``, those that exist): parameter count and SAC updates per
second, and the cost of an update relative to MT-SAC's measured in the same round.

``--critics``: the recipe screen's MT-SAC (``configs/screen-mt10-mtsac.yaml``: 2x256, 64 samples
per task, bfloat16) with wider LayerNorm critics, each update's cost relative to the screen's.

``--adam``: the screen's MT-SAC (float32 and bfloat16) with torch's three Adam implementations on
the CPU: the per-parameter loop (torch's CPU default), ``foreach`` and ``fused``; each update's
speed relative to the loop's in the same round.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import gymnasium as gym
import numpy as np
import torch

from mtrl.config import ConflictConfig, SACConfig, find_config, load_config
from mtrl.errors import ConfigError
from mtrl.learner.agent import EnvSpec
from mtrl.learner.replay import MultiTaskReplay
from mtrl.learner.sac import SAC
from mtrl.registry import get

TASKS, OBS, ACT, PER_TASK, HIDDEN = 10, 39, 4, 128, [400, 400, 400]
WARMUP_SECONDS: dict = {}
PARAMETERS: dict = {}
ARCHITECTURES = ("mtsac", "mhsac", "care", "softmod", "moore", "paco", "brc")


def ours(
    agent_name: str,
    precision: str = "float32",
    device: str = "cpu",
    compile: bool = False,
    prefix: str = "mt10",
    per_task: int = PER_TASK,
    **agent_overrides,
) -> callable:
    spec = EnvSpec(OBS, ACT, tuple(f"t{i}" for i in range(TASKS)), tuple(["x"] * TASKS), "bench")
    agent_cfg = load_config(f"{prefix}-{agent_name}").agent
    for key, value in agent_overrides.items():
        setattr(agent_cfg, key, value)
    if agent_name == "care":
        agent_cfg.task_embedding = "one_hot"  # timing only: no embedding file for fake task names
    agent = get("agent", agent_name).target(agent_cfg, spec).to(device)
    PARAMETERS[agent_name] = sum(p.numel() for p in agent.parameters())
    sac = SAC(agent, TASKS, ACT, SACConfig(precision=precision, compile=compile), ConflictConfig(method="none"))
    replay = MultiTaskReplay(TASKS, 5_000, OBS, ACT, device)
    rng = np.random.default_rng(0)
    for _ in range(500):
        replay.add(
            np.arange(TASKS),
            rng.normal(size=(TASKS, OBS)),
            rng.uniform(-1, 1, (TASKS, ACT)),
            rng.normal(size=TASKS),
            rng.normal(size=(TASKS, OBS)),
            np.zeros(TASKS, bool),
        )
    return lambda n: [sac.update(replay.sample(per_task)) for _ in range(n)]


def sb3(device: str = "cpu") -> callable:
    from stable_baselines3 import SAC as SB3SAC
    from stable_baselines3.common.logger import configure

    class Dummy(gym.Env):
        observation_space = gym.spaces.Box(-np.inf, np.inf, (OBS + TASKS,), np.float32)
        action_space = gym.spaces.Box(-1, 1, (ACT,), np.float32)

    model = SB3SAC(
        "MlpPolicy",
        Dummy(),
        batch_size=PER_TASK * TASKS,
        buffer_size=5_000 * TASKS,
        device=device,
        policy_kwargs=dict(net_arch=HIDDEN),
        seed=0,
    )
    model.set_logger(configure(None, []))
    rng = np.random.default_rng(0)
    for _ in range(500 * TASKS):
        model.replay_buffer.add(
            rng.normal(size=(1, OBS + TASKS)).astype(np.float32),
            rng.normal(size=(1, OBS + TASKS)).astype(np.float32),
            rng.uniform(-1, 1, (1, ACT)).astype(np.float32),
            rng.normal(size=1),
            np.zeros(1),
            [{}],
        )
    return lambda n: model.train(gradient_steps=n, batch_size=PER_TASK * TASKS)


def rate(run, n: int) -> float:
    start = time.perf_counter()
    run(2)  # warm-up (and compilation)
    sync()
    WARMUP_SECONDS.setdefault(run, time.perf_counter() - start)  # the first one holds compilation
    start = time.perf_counter()
    run(n)
    sync()
    return n / (time.perf_counter() - start)


def alternated_rates(runs: dict, args) -> dict[str, list[float]]:
    """Each run's updates per second in every round, the runs alternating within a round
    (this machine is noisy: ratios are taken per round)."""
    rates: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.rounds):
        for name, run in runs.items():
            rates[name].append(rate(run, args.updates))
    return rates


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--updates", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (a GPU session's measurement)")
    parser.add_argument("--compile", action="store_true", help="also time ours with sac.compile=true")
    parser.add_argument(
        "--architectures",
        nargs="?",
        const="mt10",
        default=None,
        choices=["mt10", "study-mt10"],
        help="time every agent at its MT10 paper scale (or the study's)",
    )
    parser.add_argument(
        "--critics", action="store_true", help="the recipe screen's MT-SAC with wider LayerNorm critics"
    )
    parser.add_argument(
        "--adam", action="store_true", help="the screen's MT-SAC with Adam's loop, foreach and fused paths"
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    d = args.device
    if args.architectures:
        return architectures(args)
    if args.critics:
        return critics(args)
    if args.adam:
        return adam_variants(args)
    runs = {
        "mtsac": ours("mtsac", device=d),
        "mtsac_bf16": ours("mtsac", "bfloat16", d),
        "care": ours("care", device=d),
        "sb3": sb3(d),
    }
    if args.compile:
        runs["mtsac_compiled"] = ours("mtsac", device=d, compile=True)
    rates = alternated_rates(runs, args)
    median = {k: statistics.median(v) for k, v in rates.items()}
    print(
        json.dumps(
            {
                "benchmark": "learner",
                "setting": "MT10: batch 1280, 3x400 actor and twin critics",
                "device": d,
                "threads": torch.get_num_threads(),
                "ours_mtsac_updates_per_s": round(median["mtsac"], 2),
                "sb3_sac_updates_per_s": round(median["sb3"], 2),
                "ours_care_updates_per_s": round(median["care"], 2),
                "ours_mtsac_bf16_updates_per_s": round(median["mtsac_bf16"], 2),
                "ratio_ours_bf16_over_sb3_median": round(
                    statistics.median(a / b for a, b in zip(rates["mtsac_bf16"], rates["sb3"])), 3
                ),
                "ratio_ours_over_sb3_per_round": [round(a / b, 3) for a, b in zip(rates["mtsac"], rates["sb3"])],
                "ratio_ours_over_sb3_median": round(
                    statistics.median(a / b for a, b in zip(rates["mtsac"], rates["sb3"])), 3
                ),
                "care_cost_over_mtsac": round(median["mtsac"] / median["care"], 3),
                "goal_ratio_ours_over_sb3": 1.3,
                **(
                    {
                        "ours_mtsac_compiled_updates_per_s": round(median["mtsac_compiled"], 2),
                        "ratio_compiled_over_eager_median": round(
                            statistics.median(a / b for a, b in zip(rates["mtsac_compiled"], rates["mtsac"])), 3
                        ),
                        "compile_first_warmup_s": round(WARMUP_SECONDS[runs["mtsac_compiled"]], 1),
                    }
                    if args.compile
                    else {}
                ),
            }
        )
    )


def find_config_or_none(name: str):
    try:
        return find_config(name)
    except ConfigError:
        return None


def architectures(args) -> None:
    """Every agent of ARCHITECTURES at its configs/mt10-<agent>.yaml scale; MT-SAC timed in the
    same rounds for the cost ratio."""
    names = [n for n in ARCHITECTURES if find_config_or_none(f"{args.architectures}-{n}")]
    runs = {name: ours(name, device=args.device, prefix=args.architectures) for name in names}
    rates = alternated_rates(runs, args)
    print(
        json.dumps(
            {
                "benchmark": "learner_architectures",
                "setting": f"configs/{args.architectures}-<agent>.yaml networks, batch 1280",
                "device": args.device,
                "threads": torch.get_num_threads(),
                "updates_per_round": args.updates,
                "rounds": args.rounds,
                "agents": {
                    name: {
                        "parameters": PARAMETERS[name],
                        "updates_per_s": round(statistics.median(rates[name]), 3),
                        "cost_over_mtsac": round(
                            statistics.median(m / r for m, r in zip(rates["mtsac"], rates[name])), 2
                        ),
                    }
                    for name in runs
                },
            }
        )
    )


CRITIC_WIDTHS = {
    "2x256": None,
    "2x256_ln": [256, 256],
    "2x384_ln": [384, 384],
    "2x512_ln": [512, 512],
    "2x1024_ln": [1024, 1024],
}


def critics(args) -> None:
    """Updates per second of the screen's MT-SAC (64 per task, bfloat16) against the same with
    wider LayerNorm critics, alternated per round; cost ratios per round, medians printed."""
    runs = {
        name: ours(
            "mtsac",
            "bfloat16",
            args.device,
            prefix="screen-mt10",
            per_task=64,
            critic_hidden_sizes=widths,
            critic_layer_norm=widths is not None,
        )
        for name, widths in CRITIC_WIDTHS.items()
    }
    rates = alternated_rates(runs, args)
    print(
        json.dumps(
            {
                "benchmark": "learner_critics",
                "setting": "configs/screen-mt10-mtsac.yaml (2x256 actor, batch 640, bfloat16)",
                "device": args.device,
                "threads": torch.get_num_threads(),
                "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                "critics": {
                    name: {
                        "updates_per_s": round(statistics.median(rates[name]), 2),
                        "cost_over_2x256": round(
                            statistics.median(b / r for b, r in zip(rates["2x256"], rates[name])), 2
                        ),
                    }
                    for name in runs
                },
            }
        )
    )


# Each path overrides what SAC asks for (it asks for foreach since the benchmark chose it).
ADAM_PATHS = {"loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"foreach": False, "fused": True}}


def adam_variants(args) -> None:
    """The screen's MT-SAC with each Adam path (torch.optim.Adam patched while the learner is
    built), alternated per round; speed-ups over the loop per round, medians printed."""
    real_adam = torch.optim.Adam
    runs = {}
    for precision in ("float32", "bfloat16"):
        for path, kwargs in ADAM_PATHS.items():
            torch.optim.Adam = lambda params, _kw=kwargs, **kw: real_adam(params, **{**kw, **_kw})
            try:
                runs[f"{precision}_{path}"] = ours("mtsac", precision, args.device, prefix="screen-mt10", per_task=64)
            finally:
                torch.optim.Adam = real_adam
    rates = alternated_rates(runs, args)
    print(
        json.dumps(
            {
                "benchmark": "learner_adam",
                "setting": "configs/screen-mt10-mtsac.yaml (2x256, batch 640)",
                "device": args.device,
                "threads": torch.get_num_threads(),
                "rounds": args.rounds,
                "updates_per_round": args.updates,
                "variants": {
                    name: {
                        "updates_per_s": round(statistics.median(rates[name]), 2),
                        "speedup_over_loop": round(
                            statistics.median(
                                r / b for r, b in zip(rates[name], rates[name.rsplit("_", 1)[0] + "_loop"])
                            ),
                            3,
                        ),
                    }
                    for name in runs
                },
            }
        )
    )


if __name__ == "__main__":
    main()
