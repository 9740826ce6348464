"""Franka Kitchen (gymnasium-robotics' ``FrankaKitchen-v1``): one mtrl task per kitchen subtask.

This suite reaches mtrl only through the ``mtrl.envs`` entry point in ``pyproject.toml``,
as a separately installed package's would: ``envs/__init__.py`` does not import it, and
nothing here registers itself. ``gymnasium_robotics`` (the ``kitchen`` extra) is imported
only when an env is built, so the entry point loads, and ``mtrl list`` shows the suite with
an install hint (``FrankaKitchenSuite.requires``), when the extra is missing.

Design (the choices a suite has to make, see docs/ADD_A_SUITE.md):

* **Tasks**: the 7 subtasks of FrankaKitchen-v1, same robot (9 joint velocities), same scene.
* **Observation**: the env's flat 59-d ``observation`` (robot joints and velocities, object
  joints and velocities, with the env's observation noise). The dict observation's
  ``desired_goal`` of a task is a constant, so it would only restate the task id the agent
  already gets; its ``achieved_goal`` is a slice of the object joint positions already in
  the 59 numbers. Neither is appended.
* **Success**: the env's own completion test (``info["step_task_completions"]``: the
  subtask's joints within 0.3 of their goal). Each slot holds one ``FrankaKitchen-v1`` whose
  ``tasks_to_complete`` are all the suite's subtasks, with ``remove_task_when_completed`` and
  ``terminate_on_tasks_completed`` off, and reads the completion of its episode's subtask:
  so one env per slot serves every task (a kitchen env takes about 80 MB), and the step is
  the same as that of ``FrankaKitchen-v1(tasks_to_complete=[subtask])`` (same simulation,
  observation noise and completion; ``tests/test_franka_kitchen.py`` compares them).
* **Reward**: the env's sparse reward for the subtask: 1 at a step where it is complete, else 0.
* **Termination**: ``terminate_on_success`` (default true, the env's own default
  ``terminate_on_tasks_completed``): the episode ends, ``terminated`` (not bootstrapped),
  at the step the subtask is completed, which is then the one step with reward 1. False
  keeps every episode to the time limit, Meta-World's way, rewarding each step spent with
  the subtask complete. Episodes are truncated at ``max_episode_steps`` (280, the env's).
* **Variants**: none; the start state is fixed, each reset draws only the observation
  noise's seed, from the vector env's ``rng`` (so a resumed run draws the same seeds).
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mtrl.errors import ConfigError, at_least, check_values, did_you_mean, install_hint
from mtrl.suite import MultiTaskVecEnv, StepResult, Suite

ENV_ID = "FrankaKitchen-v1"
MAX_EPISODE_STEPS = 280  # FrankaKitchen-v1's registered time limit

# mtrl task name -> the env's subtask name, in the suite's task order.
SUBTASKS = {
    "microwave": "microwave",
    "kettle": "kettle",
    "light-switch": "light switch",
    "slide-cabinet": "slide cabinet",
    "hinge-cabinet": "hinge cabinet",
    "bottom-burner": "bottom burner",
    "top-burner": "top burner",
}

DESCRIPTIONS = {
    "microwave": "Pull the microwave door open.",
    "kettle": "Move the kettle from the bottom left burner onto the top left burner.",
    "light-switch": "Slide the light switch to turn on the overhead kitchen light.",
    "slide-cabinet": "Slide the sliding cabinet door open.",
    "hinge-cabinet": "Swing open the right-hand door of the hinged cabinet.",
    "bottom-burner": "Turn the oven knob that lights the bottom left burner.",
    "top-burner": "Turn the oven knob that lights the top left burner.",
}

EXTRA = "kitchen"


@dataclass
class FrankaKitchenConfig:
    """Options of the Franka Kitchen suite."""

    suite: str = "franka_kitchen"
    """The suite (mtrl list shows them)."""
    tasks: list[str] | None = None
    """A subset of the subtasks, in this order; null: all 7."""
    max_episode_steps: int = MAX_EPISODE_STEPS
    """Steps before an episode is truncated."""
    terminate_on_success: bool = True
    """End the episode (terminated) when the subtask is completed."""
    robot_noise_ratio: float = 0.01
    """The env's robot observation noise scale (its default)."""
    object_noise_ratio: float = 0.0005
    """The env's object observation noise scale (its default)."""

    def validate(self) -> None:
        check_values(
            [
                ("env.max_episode_steps", self.max_episode_steps, at_least(1), "at least 1"),
                ("env.robot_noise_ratio", self.robot_noise_ratio, at_least(0), "at least 0"),
                ("env.object_noise_ratio", self.object_noise_ratio, at_least(0), "at least 0"),
            ]
        )
        if self.tasks is not None:
            if not self.tasks:
                raise ConfigError("env.tasks is empty; list Franka Kitchen tasks or set it to null")
            for name in self.tasks:
                if name not in SUBTASKS:
                    raise ConfigError(
                        f"env.tasks: unknown Franka Kitchen task '{name}'{did_you_mean(name, list(SUBTASKS))}; "
                        f"tasks: {', '.join(SUBTASKS)}"
                    )
            if len(set(self.tasks)) != len(self.tasks):
                raise ConfigError("env.tasks lists a task twice; each task may appear once")


def make_kitchen_env(subtasks: list[str], cfg: FrankaKitchenConfig) -> Any:
    """One raw ``FrankaKitchen-v1`` (no gymnasium wrappers: mtrl keeps the time limit) that
    reports the completion of every subtask in ``subtasks`` at every step."""
    try:
        # gymnasium_robotics prints a notice about its Adroit envs' rewards on import
        with contextlib.redirect_stderr(io.StringIO()):
            import gymnasium_robotics
    except ImportError:
        raise ConfigError(f"suite 'franka_kitchen' needs the {EXTRA} extra: {install_hint(EXTRA)}") from None
    import gymnasium

    gymnasium.register_envs(gymnasium_robotics)
    return gymnasium.make(
        ENV_ID,
        tasks_to_complete=list(subtasks),
        terminate_on_tasks_completed=False,
        remove_task_when_completed=False,
        robot_noise_ratio=cfg.robot_noise_ratio,
        object_noise_ratio=cfg.object_noise_ratio,
        disable_env_checker=True,
    ).unwrapped


class FrankaKitchenVecEnv(MultiTaskVecEnv):
    """One kitchen per slot, built at the slot's first reset, stepped one after another."""

    obs_dim = 59
    act_dim = 9

    def __init__(self, cfg: FrankaKitchenConfig, task_names: list[str], num_slots: int, seed: int):
        self.cfg = cfg
        self.subtasks = [SUBTASKS[n] for n in task_names]
        self.num_slots = num_slots
        self.max_episode_steps = cfg.max_episode_steps
        self.rng = np.random.default_rng(seed)
        self.envs: list[Any] = [None] * num_slots
        self._subtask: list[str] = [""] * num_slots
        self._t = np.zeros(num_slots, np.int64)

    def reset_slots(self, slots: np.ndarray, tasks: np.ndarray, variants: np.ndarray | None = None) -> np.ndarray:
        """The subtasks have no variations: ``variants`` are ignored."""
        slots, tasks = np.asarray(slots).tolist(), np.asarray(tasks).tolist()
        out = np.empty((len(slots), self.obs_dim), np.float32)
        for i, (slot, task) in enumerate(zip(slots, tasks)):
            if self.envs[slot] is None:
                self.envs[slot] = make_kitchen_env(self.subtasks, self.cfg)
            obs, _ = self.envs[slot].reset(seed=int(self.rng.integers(2**31)))
            out[i] = obs["observation"]
            self._subtask[slot] = self.subtasks[task]
            self._t[slot] = 0
        return out

    def step(self, actions: np.ndarray, active: np.ndarray | None = None) -> StepResult:
        n = self.num_slots
        obs = np.zeros((n, self.obs_dim), np.float32)
        success = np.zeros(n, bool)
        slots = range(n) if active is None else np.flatnonzero(active).tolist()
        for s in slots:
            o, _, _, _, info = self.envs[s].step(actions[s])
            obs[s] = o["observation"]
            success[s] = self._subtask[s] in info["step_task_completions"]
            self._t[s] += 1
        terminated = success & self.cfg.terminate_on_success
        return StepResult(obs, success.astype(np.float32), terminated, self._t >= self.max_episode_steps, success)

    def close(self) -> None:
        for env in self.envs:
            if env is not None:
                env.close()
        self.envs = [None] * self.num_slots


class FrankaKitchenSuite(Suite):
    """Franka Kitchen (gymnasium-robotics): 7 subtasks, sparse reward, 280-step episodes."""

    Config = FrankaKitchenConfig
    requires = ("gymnasium_robotics", EXTRA)  # (module, mtrl extra): checked by the registry and `mtrl list`
    embedding_file = Path(__file__).parent / "data" / "franka_kitchen_embeddings.json"

    @property
    def task_names(self) -> list[str]:
        return list(SUBTASKS) if self.cfg.tasks is None else list(self.cfg.tasks)

    def single_task_overrides(self, task: str) -> list[str]:
        """The kitchen with this subtask alone."""
        return [f"env.tasks=[{task}]"]

    @property
    def descriptions(self) -> dict[str, str]:
        return {name: DESCRIPTIONS[name] for name in self.task_names}

    def embedding_catalog(self) -> dict[str, str]:
        return dict(DESCRIPTIONS)  # all 7, so any subset finds its rows

    def make_env(self, num_slots: int, seed: int) -> FrankaKitchenVecEnv:
        return FrankaKitchenVecEnv(self.cfg, self.task_names, num_slots, seed)
