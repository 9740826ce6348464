"""Evaluation with the Meta-World protocol: a deterministic policy, exactly N episodes per
task, and an episode counts as a success if ``success`` was true at any of its steps.

Episode j of a task runs the task's variant ``first_episode + j`` (Meta-World: its goal
number, modulo its 50 goals), so 50 episodes visit each goal once, and evaluations with
fewer episodes rotate through the goals when the caller advances ``first_episode``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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


def evaluate(
    policy: Policy,
    env: MultiTaskVecEnv,
    task_names: list[str],
    num_episodes: int,
    stop_on_success: bool = True,
    first_episode: int = 0,
    on_episode: Callable[[int], None] | None = None,
) -> EvalResult:
    """Run exactly ``num_episodes`` episodes of every task; slot s runs task ``s % num_tasks``;
    a task's j-th episode runs its variant ``first_episode + j``. ``on_episode`` is told the
    number of episodes finished so far, over all tasks, after each vector step that ends some.

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
        slots, variants = [], []
        for s in candidates:  # a slot starts only while its task still owes episodes
            t = slot_task[s]
            if to_start[t] > 0:
                variants.append(first_episode + num_episodes - to_start[t])
                to_start[t] -= 1
                slots.append(s)
        if slots:
            idx = np.array(slots, np.int64)
            obs[idx] = env.reset_slots(idx, slot_task[idx], np.array(variants, np.int64))
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
        if on_episode is not None and ended.any():
            on_episode(sum(len(s) for s in successes))
        start(np.flatnonzero(ended))

    return EvalResult(
        task_names=list(task_names),
        success=np.array([np.mean(s) for s in successes]),
        returns=np.array([np.mean(r) for r in returns]),
        episodes=np.array([len(s) for s in successes]),
    )


def crossed(step: int, width: int, every: int) -> bool:
    """Did the last ``width`` steps, ending at ``step``, cross a multiple of ``every``?"""
    return every > 0 and step // every > (step - width) // every


class EvaluationSchedule:
    """When a training run evaluates, on what, and how many episodes: every ``eval_every``
    env steps before the end with ``eval_episodes`` per task, evaluation number e running
    goals ``e*n .. e*n+n-1`` (so they rotate through each task's goals), and once at the end
    with ``final_eval_episodes`` from goal 0 (all 50: Meta-World's protocol). Every
    evaluation restarts the eval env's RNG, so a given goal always starts the same way.
    The trainer and ``benchmarks/sb3_peer.py`` share it; ``evaluations`` is checkpointed."""

    def __init__(self, env: MultiTaskVecEnv, task_names: list[str], train_cfg: Any, log: Callable[[int, dict], None]):
        self.env, self.task_names, self.cfg, self.log = env, list(task_names), train_cfg, log
        self.rng_start = env.get_rng_state()
        self.evaluations = 0  # mid-run evaluations done

    def due(self, step: int, width: int) -> bool:
        """Did the last vector step (``width`` env steps, ending at ``step``) cross a mid-run
        evaluation point? The end of training is the final evaluation's, not one of these."""
        return crossed(step, width, self.cfg.eval_every) and step < self.cfg.total_steps

    def run(self, policy: Policy, step: int, final: bool = False) -> EvalResult:
        tc = self.cfg
        episodes, first = (
            (tc.final_eval_episodes, 0) if final else (tc.eval_episodes, self.evaluations * tc.eval_episodes)
        )
        self.env.set_rng_state(self.rng_start)
        started = time.perf_counter()
        result = evaluate(policy, self.env, self.task_names, episodes, tc.eval_stop_on_success, first)
        self.evaluations += 0 if final else 1
        seconds = time.perf_counter() - started  # what evaluating costs a run (docs/PERFORMANCE.md)
        self.log(step, {**result.metrics(), "eval/episodes_per_task": episodes, "eval/seconds": seconds})
        return result
