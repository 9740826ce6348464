"""Task schedulers: which task a collector slot runs in its next episode.

``learning_progress`` tracks each task's episode success with a fast and a slow
exponential moving average (step sizes a_f > a_s, both started at the first outcome):

    LP_t = |fast_t - slow_t|                                (absolute: forgetting counts too)
    p_t  = (1 - eps) * softmax(LP / tau)_t + eps / N        (every task keeps a floor eps/N)

so tasks whose success is changing get most episodes, solved and hopeless tasks about
the floor, and all tasks the same while nothing has moved.

The trainer calls :meth:`Scheduler.next_task` at every episode boundary of a slot and
:meth:`Scheduler.record` with each finished episode's success, so a scheduler that
learns from outcomes (issue: learning progress) can plug in here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mtrl.registry import register


class Scheduler:
    """Base: subclasses implement :meth:`next_task`."""

    def __init__(self, cfg: object, num_tasks: int, num_slots: int, seed: int):
        self.cfg, self.num_tasks, self.num_slots = cfg, num_tasks, num_slots
        self.rng = np.random.default_rng(seed)
        self.episodes = np.zeros(num_tasks, np.int64)  # episodes started per task

    def initial_tasks(self) -> np.ndarray:
        """The first task of every slot."""
        return np.array([self.next_task(s) for s in range(self.num_slots)], np.int64)

    def next_task(self, slot: int) -> int:
        raise NotImplementedError

    def record(self, task: int, success: bool) -> None:
        """A finished episode's outcome (unused by the static schedulers)."""

    def probabilities(self) -> np.ndarray:
        """The current chance of each task for the next episode; also the replay batch
        allocation when ``train.batch_allocation=scheduler``."""
        return np.full(self.num_tasks, 1.0 / self.num_tasks)

    def stats(self) -> dict[str, np.ndarray]:
        """Per-task numbers for the logs."""
        return {"probability": self.probabilities(), "episodes": self.episodes.astype(float)}

    # array attributes a checkpoint must carry; subclasses extend this
    state_arrays: tuple[str, ...] = ("episodes",)

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state, **{k: getattr(self, k).copy() for k in self.state_arrays}}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        for key in self.state_arrays:
            setattr(self, key, state[key].copy())


@dataclass
class RoundRobinConfig:
    name: str = "round_robin"


@register("scheduler", "round_robin", RoundRobinConfig)
class RoundRobin(Scheduler):
    """Slot s runs tasks s, s+E, s+2E, ... (mod N) in turn; E = N pins one slot per task."""

    state_arrays = ("episodes", "slot_episodes")

    def __init__(self, cfg: object, num_tasks: int, num_slots: int, seed: int):
        super().__init__(cfg, num_tasks, num_slots, seed)
        self.slot_episodes = np.zeros(num_slots, np.int64)

    def next_task(self, slot: int) -> int:
        # The slot's k-th episode runs task (slot + k * E) mod N.
        task = int((slot + self.slot_episodes[slot] * self.num_slots) % self.num_tasks)
        self.slot_episodes[slot] += 1
        self.episodes[task] += 1
        return task



@dataclass
class UniformConfig:
    name: str = "uniform"


@register("scheduler", "uniform", UniformConfig)
class Uniform(Scheduler):
    """Every episode's task drawn uniformly at random."""

    def next_task(self, slot: int) -> int:
        task = int(self.rng.integers(self.num_tasks))
        self.episodes[task] += 1
        return task


@dataclass
class LearningProgressConfig:
    name: str = "learning_progress"
    fast_rate: float = 0.05  # a_f: step size of the fast success average
    slow_rate: float = 0.01  # a_s: step size of the slow success average
    temperature: float = 0.02  # tau of the softmax over learning progress
    epsilon: float = 0.2  # share of episodes spread uniformly over all tasks


@register("scheduler", "learning_progress", LearningProgressConfig)
class LearningProgress(Scheduler):
    """Episodes go to tasks whose success is changing (|fast - slow| success average)."""

    state_arrays = ("episodes", "fast", "slow", "seen")

    def __init__(self, cfg: LearningProgressConfig, num_tasks: int, num_slots: int, seed: int):
        super().__init__(cfg, num_tasks, num_slots, seed)
        if not 0 < cfg.slow_rate < cfg.fast_rate <= 1:
            from mtrl.config import ConfigError

            raise ConfigError(f"scheduler needs 0 < slow_rate < fast_rate <= 1, got {cfg.slow_rate} and {cfg.fast_rate}")
        self.fast = np.zeros(num_tasks)
        self.slow = np.zeros(num_tasks)
        self.seen = np.zeros(num_tasks, bool)

    def record(self, task: int, success: bool) -> None:
        x = float(success)
        if not self.seen[task]:  # start both averages at the first outcome: no fake progress
            self.fast[task] = self.slow[task] = x
            self.seen[task] = True
        self.fast[task] += self.cfg.fast_rate * (x - self.fast[task])
        self.slow[task] += self.cfg.slow_rate * (x - self.slow[task])

    def learning_progress(self) -> np.ndarray:
        return np.abs(self.fast - self.slow)

    def probabilities(self) -> np.ndarray:
        lp = self.learning_progress()
        logits = (lp - lp.max()) / self.cfg.temperature
        soft = np.exp(logits) / np.exp(logits).sum()
        return (1 - self.cfg.epsilon) * soft + self.cfg.epsilon / self.num_tasks

    def next_task(self, slot: int) -> int:
        task = int(self.rng.choice(self.num_tasks, p=self.probabilities()))
        self.episodes[task] += 1
        return task

    def stats(self) -> dict[str, np.ndarray]:
        return {**super().stats(), "learning_progress": self.learning_progress()}

