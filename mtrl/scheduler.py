"""Task schedulers: which task a collector slot runs in its next episode.

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
        """The current chance of each task for the next episode (for logging)."""
        return np.full(self.num_tasks, 1.0 / self.num_tasks)

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state, "episodes": self.episodes.copy()}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.episodes = state["episodes"].copy()


@dataclass
class RoundRobinConfig:
    name: str = "round_robin"


@register("scheduler", "round_robin", RoundRobinConfig)
class RoundRobin(Scheduler):
    """Slot s runs tasks s, s+E, s+2E, ... (mod N) in turn; E = N pins one slot per task."""

    def __init__(self, cfg: object, num_tasks: int, num_slots: int, seed: int):
        super().__init__(cfg, num_tasks, num_slots, seed)
        self.slot_episodes = np.zeros(num_slots, np.int64)

    def next_task(self, slot: int) -> int:
        # The slot's k-th episode runs task (slot + k * E) mod N.
        task = int((slot + self.slot_episodes[slot] * self.num_slots) % self.num_tasks)
        self.slot_episodes[slot] += 1
        self.episodes[task] += 1
        return task

    def state_dict(self) -> dict:
        return {**super().state_dict(), "slot_episodes": self.slot_episodes.copy()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.slot_episodes = state["slot_episodes"].copy()


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
