"""Per-task reward scaling by the observed range of returns (BRC's normalizer, Nauman et
al. 2025, naumix/BiggerRegularizedCategorical jaxrl/normalizer.py), ``sac.reward_scaling=returns``.

At each episode end the episode's discounted returns-to-go are computed (a time-limited
episode's tail bootstrapped with its mean reward / (1 - gamma)); each task keeps the running
max and min of them. A task's rewards are divided by

    d_t = (G_t + alpha_t |H| / (2 (1 - gamma))) / bound,    G_t = max(max_t, |min_t|)

with H the target entropy: the second term is the soft value's entropy bonus, so that the
scaled soft returns stay within +-bound (a categorical critic's support). Tasks whose
rewards are large therefore do not dominate the critic's loss. The replay keeps raw
rewards; ``SAC`` owns the scale (the trainer reports each step to
``SAC.observe_rewards``) and scales each batch in ``SAC.update``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mtrl.safe_state import check_like


class ReturnScale:
    def __init__(self, num_tasks: int, num_slots: int, gamma: float, bound: float):
        self.gamma, self.bound = gamma, bound
        self.returns_max = np.zeros(num_tasks)
        self.returns_min = np.zeros(num_tasks)
        self.rewards: list[list[float]] = [[] for _ in range(num_slots)]  # each slot's running episode

    def observe(self, tasks: np.ndarray, rewards: np.ndarray, terminated: np.ndarray, truncated: np.ndarray) -> None:
        """One vector step: each slot's reward; ended episodes update their task's range."""
        for slot, reward in enumerate(rewards):
            self.rewards[slot].append(float(reward))
        for slot in np.flatnonzero(terminated | truncated):
            rtg = returns_to_go(np.asarray(self.rewards[slot]), self.gamma, bootstrap=not terminated[slot])
            t = tasks[slot]
            self.returns_max[t] = max(self.returns_max[t], rtg.max())
            self.returns_min[t] = min(self.returns_min[t], rtg.min())
            self.rewards[slot] = []

    def drop(self, slots: np.ndarray) -> None:
        """Forget the running episodes of ``slots`` (they were cut short by an env fault)."""
        for slot in slots:
            self.rewards[slot] = []

    def divisors(self, alpha: torch.Tensor, target_entropy: float) -> torch.Tensor:
        """(T,) d_t, on alpha's device; alpha (T,) is each task's current temperature."""
        g = torch.as_tensor(
            np.maximum(self.returns_max, np.abs(self.returns_min)), dtype=alpha.dtype, device=alpha.device
        )
        entropy_bonus = alpha * abs(target_entropy) / (2.0 * (1.0 - self.gamma)) if self.gamma < 1 else 0.0
        return ((g + entropy_bonus) / self.bound).clamp(min=1e-6)

    def state_dict(self) -> dict[str, Any]:
        return {
            "max": self.returns_max.copy(),
            "min": self.returns_min.copy(),
            "rewards": [list(r) for r in self.rewards],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_like(self.returns_max, state["max"], "reward_scale.max")
        check_like(self.returns_min, state["min"], "reward_scale.min")
        rewards = state["rewards"]
        if not (
            isinstance(rewards, list)
            and len(rewards) == len(self.rewards)
            and all(isinstance(r, list) and all(isinstance(x, float) for x in r) for r in rewards)
        ):
            raise ValueError(f"reward_scale.rewards is not {len(self.rewards)} lists of rewards")
        self.returns_max, self.returns_min = state["max"].copy(), state["min"].copy()
        self.rewards = [list(r) for r in state["rewards"]]


def returns_to_go(rewards: np.ndarray, gamma: float, bootstrap: bool) -> np.ndarray:
    """G_i = sum_{j >= i} gamma^(j - i) r_j (+ gamma^(n - i) mean(r) / (1 - gamma) when
    ``bootstrap``: the episode was cut by a time limit, BRC's estimate of its tail)."""
    tail = float(rewards.mean()) / (1.0 - gamma) if bootstrap and gamma < 1 and len(rewards) else 0.0
    out = np.empty(len(rewards))
    running = tail
    for i in range(len(rewards) - 1, -1, -1):
        running = rewards[i] + gamma * running
        out[i] = running
    return out
