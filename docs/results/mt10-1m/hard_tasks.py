"""What holds every 1M run under 0.50 (issue 22): the four MT10 tasks no method learns at 100k
steps per task, read against scripted reference behaviours. Run from the repository root:

    python docs/results/mt10-1m/hard_tasks.py [--goals 5]

For push, pick-place, peg-insert-side and drawer-open, on the first ``--goals`` of the MT10
benchmark's goals (Meta-World's own env classes, V2 reward, 500 steps): the return and success
of Meta-World's scripted expert (``metaworld.policies``), of uniform random actions, of a zero
action throughout (*still*) and, for drawer-open, of the expert stopped once its gripper cages
the handle (*cage*: the expert's approach, then a zero action; no pull). Beside them, the final
evaluation's return per task (Meta-World's protocol, 50 episodes) of every committed 1M run:
its range over runs. Prints one JSON line per task."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import metaworld
import numpy as np
from metaworld import policies

from mtrl.training.logger import read_metrics

ROOT = Path("docs/results/mt10-1m")
EXPERTS = {
    "push-v3": policies.SawyerPushV3Policy,
    "pick-place-v3": policies.SawyerPickPlaceV3Policy,
    "peg-insert-side-v3": policies.SawyerPegInsertionSideV3Policy,
    "drawer-open-v3": policies.SawyerDrawerOpenV3Policy,
}
STEPS = 500


def caged(obs: np.ndarray) -> bool:
    """The drawer expert's own test that its gripper is down at the handle, where it starts to pull
    (``SawyerDrawerOpenV3Policy.get_action``'s third branch)."""
    hand, handle = obs[:3], obs[4:7] + np.array([0.0, 0.0, -0.02])
    return bool(np.linalg.norm((hand - handle)[:2]) <= 0.06 and abs(hand[2] - handle[2]) <= 0.04)


def episode(env, expert, mode: str, rng: np.random.Generator) -> tuple[float, float]:
    obs, _ = env.reset(seed=0)
    ret, success, holding = 0.0, 0.0, False
    for _ in range(STEPS):
        if mode == "random":
            action = rng.uniform(-1.0, 1.0, 4)
        elif mode == "still" or holding:
            action = np.zeros(4)
        else:
            action = expert.get_action(obs)
            holding = mode == "cage" and caged(obs)
        obs, reward, _, _, info = env.step(action)
        ret, success = ret + float(reward), max(success, float(info["success"]))
    return ret, success


def reference_returns(goals: int) -> dict[str, dict[str, list[float]]]:
    benchmark, rng, out = metaworld.MT10(seed=0), np.random.default_rng(0), {}
    for name, expert_cls in EXPERTS.items():
        tasks = [t for t in benchmark.train_tasks if t.env_name == name][:goals]
        modes = ["expert", "random", "still"] + (["cage"] if name == "drawer-open-v3" else [])
        out[name] = {}
        for mode in modes:
            runs = []
            for task in tasks:
                env = benchmark.train_classes[name]()
                env.set_task(task)
                runs.append(episode(env, expert_cls(), mode, rng))
            out[name][mode] = [round(float(np.mean([r[0] for r in runs]))), float(np.mean([r[1] for r in runs]))]
    return out


def learned_returns() -> dict[str, list[float]]:
    """Range over the committed 1M runs of each task's final-evaluation return."""
    finals: dict[str, list[float]] = {name: [] for name in EXPERTS}
    for path in sorted(ROOT.glob("*/seed*/metrics.jsonl")):
        last = [r for r in read_metrics(path.parent) if "eval/return/reach-v3" in r][-1]
        for name in EXPERTS:
            finals[name].append(last[f"eval/return/{name}"])
    return {name: [round(min(v)), round(max(v)), len(v)] for name, v in finals.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--goals", type=int, default=5)
    args = parser.parse_args()
    learned = learned_returns()
    for name, reference in reference_returns(args.goals).items():
        row = {"task": name, **{f"{mode} [return, success]": v for mode, v in reference.items()}}
        print(json.dumps(row | {"learned final return [min, max, runs]": learned[name]}))


if __name__ == "__main__":
    main()
