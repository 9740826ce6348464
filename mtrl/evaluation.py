"""Evaluation with the Meta-World protocol: a deterministic policy, exactly N episodes per
task, and an episode counts as a success if ``success`` was true at any of its steps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from mtrl.suite import MultiTaskVecEnv

Policy = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (obs, task ids) -> actions


@dataclass
class EvalResult:
    """Per-task success rate, mean return and episode count, in task order."""

    task_names: list[str]
    success: np.ndarray
    returns: np.ndarray
    episodes: np.ndarray

    @property
    def success_mean(self) -> float:
        return float(self.success.mean())

    def metrics(self) -> dict[str, float]:
        out = {"eval/success_mean": self.success_mean, "eval/return_mean": float(self.returns.mean())}
        for name, s, r in zip(self.task_names, self.success, self.returns):
            out[f"eval/success/{name}"] = float(s)
            out[f"eval/return/{name}"] = float(r)
        return out

    def to_json(self) -> dict:
        return {
            "success_mean": self.success_mean,
            "return_mean": float(self.returns.mean()),
            "tasks": {
                name: {"success": float(s), "return": float(r), "episodes": int(n)}
                for name, s, r, n in zip(self.task_names, self.success, self.returns, self.episodes)
            },
        }


def evaluate(policy: Policy, env: MultiTaskVecEnv, task_names: list[str], num_episodes: int, stop_on_success: bool = True) -> EvalResult:
    """Run exactly ``num_episodes`` episodes of every task; slot s runs task ``s % num_tasks``.

    ``stop_on_success`` ends an episode at its first successful step (Meta-World+'s
    evaluation does the same): its success is then decided, and the return is the return
    up to that step.
    """
    num_tasks, n = len(task_names), env.num_slots
    if n < num_tasks:
        raise ValueError(f"evaluation env has {n} slots, fewer than the {num_tasks} tasks")
    slot_task = np.arange(n) % num_tasks
    to_start = np.full(num_tasks, num_episodes)
    successes = [[] for _ in range(num_tasks)]
    returns = [[] for _ in range(num_tasks)]
    obs = np.zeros((n, env.obs_dim), np.float32)
    active = np.zeros(n, bool)
    ep_return = np.zeros(n)
    ep_success = np.zeros(n, bool)

    def start(candidates: np.ndarray) -> None:
        slots = []
        for s in candidates:  # a slot starts only while its task still owes episodes
            if to_start[slot_task[s]] > 0:
                to_start[slot_task[s]] -= 1
                slots.append(s)
        if slots:
            idx = np.array(slots, np.int64)
            obs[idx] = env.reset_slots(idx, slot_task[idx])
            active[idx], ep_return[idx], ep_success[idx] = True, 0.0, False

    start(np.arange(n))
    while active.any():
        result = env.step(policy(obs, slot_task), active)
        ep_return[active] += result.reward[active]
        ep_success[active] |= result.success[active]
        obs[active] = result.obs[active]
        ended = active & (result.terminated | result.truncated | (stop_on_success & ep_success))
        for s in np.flatnonzero(ended):
            successes[slot_task[s]].append(bool(ep_success[s]))
            returns[slot_task[s]].append(float(ep_return[s]))
        active[ended] = False
        start(np.flatnonzero(ended))

    return EvalResult(
        task_names=list(task_names),
        success=np.array([np.mean(s) for s in successes]),
        returns=np.array([np.mean(r) for r in returns]),
        episodes=np.array([len(s) for s in successes]),
    )
