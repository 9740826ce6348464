"""The contract between mtrl and an environment suite.

A :class:`Suite` names its tasks (in a fixed order: the task index used everywhere),
describes each in one sentence, and builds :class:`MultiTaskVecEnv` objects. A vector
env has E *slots*; each slot runs one episode of one task at a time. There is no
autoreset: :meth:`MultiTaskVecEnv.step` returns the true last observation of a finished
episode, and the caller starts the next one with :meth:`MultiTaskVecEnv.reset_slots`,
choosing its task. That keeps time-limit bootstrapping and task scheduling explicit.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mtrl.errors import ConfigError


@dataclass
class StepResult:
    """One vector step. Arrays have one row per slot."""

    obs: np.ndarray  # (E, obs_dim) float32: the observation after the step (final one if done)
    reward: np.ndarray  # (E,) float32
    terminated: np.ndarray  # (E,) bool: a true end of the task, not bootstrapped
    truncated: np.ndarray  # (E,) bool: the time limit, bootstrapped from ``obs``
    success: np.ndarray  # (E,) bool: success at this step (Meta-World's info["success"])


def time_limited_step(
    obs: np.ndarray, reward: np.ndarray, success: np.ndarray, elapsed: np.ndarray, limit: int
) -> StepResult:
    """A step of a suite that never terminates (Meta-World MT reports success instead):
    episodes end by truncation at ``limit`` steps."""
    return StepResult(obs, reward, np.zeros(len(obs), bool), elapsed >= limit, success)


class MultiTaskVecEnv(abc.ABC):
    """E slots stepping together; each slot's task is chosen when its episode starts."""

    num_slots: int
    obs_dim: int
    act_dim: int
    max_episode_steps: int

    @abc.abstractmethod
    def reset_slots(self, slots: np.ndarray, tasks: np.ndarray, variants: np.ndarray | None = None) -> np.ndarray:
        """Start a new episode of ``tasks[i]`` in ``slots[i]``; returns their first observations.

        ``variants[i]``, when given (evaluation), picks which variation of the task the
        episode runs (Meta-World: goal ``variants[i] % 50``); otherwise the env draws one.
        Suites without task variations ignore it."""

    @abc.abstractmethod
    def step(self, actions: np.ndarray, active: np.ndarray | None = None) -> StepResult:
        """Step every slot (or only ``active`` ones; inactive rows of the result are meaningless)."""

    def close(self) -> None:  # noqa: B027 (optional: an env without resources keeps this no-op)
        """Release simulator resources."""

    # RNG state, so a resumed run draws the same goals and starts. Envs that draw their
    # randomness from ``self.rng`` (a numpy Generator) get this for free.
    rng: np.random.Generator | None = None

    def get_rng_state(self) -> Any:
        return None if self.rng is None else self.rng.bit_generator.state

    def set_rng_state(self, state: Any) -> None:
        if self.rng is not None and state is not None:
            self.rng.bit_generator.state = state

    # The whole env for a checkpoint. By default only the RNG: a resumed run then starts
    # fresh episodes in every slot. Envs that can snapshot their slots mid-episode (the toy
    # suite) override both and set ``restores_episodes``, which makes a resume exact.
    restores_episodes: bool = False

    def get_state(self) -> Any:
        return {"rng": self.get_rng_state()}

    def set_state(self, state: Any) -> None:
        self.set_rng_state(state["rng"])

    # Frames for ``mtrl eval --video``. None (the default): this env cannot render.
    def render_slots(self, slots: np.ndarray) -> list[np.ndarray] | None:
        """RGB frames, (H, W, 3) uint8 with H and W multiples of 16, of ``slots``' current
        states; may raise :class:`mtrl.errors.RenderUnavailable` (e.g. no OpenGL here)."""
        return None


class Suite(abc.ABC):
    """A named set of tasks. Subclasses set ``Config`` (a dataclass) and are registered with
    ``@mtrl.registry.register("suite", NAME, Config)`` or the ``mtrl.envs`` entry point."""

    Config: type

    def __init__(self, cfg: Any, seed: int = 0):
        self.cfg = cfg
        self.seed = seed  # fixes anything the suite draws once, e.g. Meta-World's 50 goals per task

    @property
    @abc.abstractmethod
    def task_names(self) -> list[str]:
        """Task names in the suite's canonical order; index = task id."""

    @property
    @abc.abstractmethod
    def descriptions(self) -> dict[str, str]:
        """One natural-language sentence per task name."""

    @abc.abstractmethod
    def make_env(self, num_slots: int, seed: int) -> MultiTaskVecEnv:
        """A training env with ``num_slots`` slots, each able to run any task."""

    def make_eval_env(self, num_episodes: int, seed: int) -> MultiTaskVecEnv:
        """An evaluation env; slot s runs task ``s % num_tasks``. Default: one slot per task."""
        return self.make_env(len(self.task_names), seed)

    @property
    def num_tasks(self) -> int:
        return len(self.task_names)

    def single_task_overrides(self, task: str) -> list[str]:
        """Dotted config overrides that make this suite train ``task`` alone (single-task
        baselines, ``mtrl single-task``). A suite that supports them overrides this."""
        raise ConfigError(
            f"suite '{self.cfg.suite}' does not say how to train one of its tasks alone; "
            "give it a single_task_overrides(task) method (see mtrl/suite.py)"
        )

    # --- task-description embeddings (CARE) ---------------------------------------------

    embedding_file: Path | None = None
    """The suite's shipped embedding file (``mtrl embed-tasks`` writes it), if any."""

    def embedding_catalog(self) -> dict[str, str]:
        """Every task description the shipped embedding file should cover (default: this
        configuration's tasks; Meta-World: all 50)."""
        return self.descriptions
