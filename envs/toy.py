"""A tiny built-in suite: a 2-D point mass that must reach a task-specific goal.

Goals sit on a circle, evenly spaced, so with 4 tasks two pairs point in opposite
directions. The observation is the position only: from the same state the right action
depends on the task, so an agent that is not told the task cannot solve them all. All
slots step as one numpy operation, which is what makes CI learning tests take seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mtrl.errors import ConfigError, at_least, check_values, positive
from mtrl.registry import register
from mtrl.safe_state import check_like
from mtrl.suite import MultiTaskVecEnv, StepResult, Suite

_COMPASS = {
    0: "east",
    45: "north-east",
    90: "north",
    135: "north-west",
    180: "west",
    225: "south-west",
    270: "south",
    315: "south-east",
}


@dataclass
class ToyConfig:
    """Options of the point-mass suite."""

    suite: str = "toy"
    """The suite (mtrl list shows them)."""
    num_tasks: int = 4
    """Tasks: goal directions on a circle around the start."""
    episode_steps: int = 20
    """Steps before an episode is truncated."""
    goal_radius: float = 0.7
    """The goals' distance from the origin."""
    success_radius: float = 0.1
    """Success: the point within this distance of its goal."""
    speed: float = 0.15
    """Distance moved per step at full action."""
    start_noise: float = 0.1
    """Start position uniform in [-start_noise, start_noise]^2."""
    goal_angles: list[float] | None = None
    """Each task's goal direction in degrees, num_tasks of them; null: the default layout."""

    def validate(self) -> None:
        check_values(
            [
                ("env.num_tasks", self.num_tasks, at_least(1), "at least 1"),
                ("env.episode_steps", self.episode_steps, at_least(1), "at least 1"),
                ("env.goal_radius", self.goal_radius, positive, "positive"),
                ("env.success_radius", self.success_radius, positive, "positive"),
                ("env.speed", self.speed, positive, "positive"),
                ("env.start_noise", self.start_noise, at_least(0), "at least 0"),
            ]
        )
        if self.goal_angles is not None and len(self.goal_angles) != self.num_tasks:
            raise ConfigError(
                f"env.goal_angles lists {len(self.goal_angles)} angles for env.num_tasks={self.num_tasks}"
            )


def goal_angles(cfg: ToyConfig) -> np.ndarray:
    """Goal directions in radians: given, or compass points (tasks 0/2 and 1/3 oppose)."""
    if cfg.goal_angles is not None:
        return np.radians(np.asarray(cfg.goal_angles, float))
    if cfg.num_tasks <= 4:
        return np.arange(cfg.num_tasks) * (np.pi / 2)
    return np.arange(cfg.num_tasks) * (2 * np.pi / cfg.num_tasks)


class PointMassVecEnv(MultiTaskVecEnv):
    """E point masses stepped together."""

    def __init__(self, cfg: ToyConfig, num_slots: int, seed: int):
        self.cfg = cfg
        self.num_slots = num_slots
        self.obs_dim = 2
        self.act_dim = 2
        self.max_episode_steps = cfg.episode_steps
        angles = goal_angles(cfg)
        self.goals = cfg.goal_radius * np.stack([np.cos(angles), np.sin(angles)], 1).astype(np.float32)
        self.rng = np.random.default_rng(seed)
        self.pos = np.zeros((num_slots, 2), np.float32)
        self.goal = np.zeros((num_slots, 2), np.float32)
        self.t = np.zeros(num_slots, np.int64)

    def reset_slots(self, slots: np.ndarray, tasks: np.ndarray, variants: np.ndarray | None = None) -> np.ndarray:
        """A task has one goal: ``variants`` are ignored."""
        slots = np.asarray(slots)
        noise = self.cfg.start_noise
        self.pos[slots] = self.rng.uniform(-noise, noise, (len(slots), 2)).astype(np.float32)
        self.goal[slots] = self.goals[np.asarray(tasks)]
        self.t[slots] = 0
        return self.pos[slots].copy()

    restores_episodes = True  # the slots are a few arrays: a checkpoint holds them whole

    def get_state(self) -> dict:
        return {"rng": self.get_rng_state(), "pos": self.pos.copy(), "goal": self.goal.copy(), "t": self.t.copy()}

    def set_state(self, state: dict) -> None:
        for key in ("pos", "goal", "t"):
            check_like(getattr(self, key), state[key], f"env.{key}")
        self.set_rng_state(state["rng"])
        self.pos[:], self.goal[:], self.t[:] = state["pos"], state["goal"], state["t"]

    render_size = 128  # pixels of a square frame

    def render_slots(self, slots: np.ndarray) -> list[np.ndarray]:
        """A top view of each slot's arena [-1, 1]^2: the goal's success disc (green) and
        the point (blue), drawn with numpy."""
        n = self.render_size
        centres = (np.arange(n) + 0.5) / n * 2 - 1
        x, y = np.meshgrid(centres, -centres)  # image row 0 is the top: y = +1
        frames = []
        for s in np.asarray(slots).tolist():
            frame = np.full((n, n, 3), 245, np.uint8)
            frame[np.hypot(x - self.goal[s, 0], y - self.goal[s, 1]) < self.cfg.success_radius] = (150, 215, 150)
            frame[np.hypot(x - self.pos[s, 0], y - self.pos[s, 1]) < 0.05] = (40, 70, 200)
            frames.append(frame)
        return frames

    def step(self, actions: np.ndarray, active: np.ndarray | None = None) -> StepResult:
        step = np.clip(actions, -1.0, 1.0) * self.cfg.speed
        np.clip(self.pos + step, -1.0, 1.0, out=self.pos)
        self.t += 1
        dist = np.sqrt(((self.pos - self.goal) ** 2).sum(1))
        return StepResult(
            obs=self.pos.copy(),
            reward=-dist,
            terminated=np.zeros(self.num_slots, bool),
            truncated=self.t >= self.max_episode_steps,
            success=dist < self.cfg.success_radius,
        )


@register("suite", "toy", ToyConfig)
class ToySuite(Suite):
    """Point mass reaching goals in conflicting directions (fast, for tests)."""

    Config = ToyConfig
    embedding_file = Path(__file__).parent / "data" / "toy_embeddings.json"

    def _directions(self) -> list[str]:
        degrees = np.rint(np.degrees(goal_angles(self.cfg)) % 360).astype(int)
        return [_COMPASS.get(int(d), f"{d}-degrees") for d in degrees]

    @property
    def task_names(self) -> list[str]:
        names, seen = [], {}
        for d in self._directions():  # a repeated goal gets a numbered name: reach-east-2
            seen[d] = seen.get(d, 0) + 1
            names.append(f"reach-{d}" if seen[d] == 1 else f"reach-{d}-{seen[d]}")
        return names

    @property
    def descriptions(self) -> dict[str, str]:
        return {
            name: f"Move the point mass to the goal {d.replace('-degrees', ' degrees')} of the start."
            for name, d in zip(self.task_names, self._directions())
        }

    def embedding_catalog(self) -> dict[str, str]:
        # the 8-task suite's names and descriptions include those of 1..4 tasks
        return {**ToySuite(ToyConfig(num_tasks=8)).descriptions, **self.descriptions}

    def single_task_overrides(self, task: str) -> list[str]:
        """One goal: this task's angle (its name, e.g. reach-north, stays the same)."""
        degrees = np.degrees(goal_angles(self.cfg))[self.task_names.index(task)]
        return ["env.num_tasks=1", f"env.goal_angles=[{float(degrees)}]"]

    def make_env(self, num_slots: int, seed: int) -> PointMassVecEnv:
        return PointMassVecEnv(self.cfg, num_slots, seed)

    def make_eval_env(self, num_episodes: int, seed: int) -> PointMassVecEnv:
        # Every evaluation episode runs at once: num_episodes slots per task.
        return PointMassVecEnv(self.cfg, self.num_tasks * num_episodes, seed)
