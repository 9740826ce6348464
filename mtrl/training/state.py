"""The training loop's whole state in one object, so that a checkpoint saves it and a
resume restores it whole: counters, the action RNG, episode bookkeeping, the running sums
between two log points, the position in ``metrics.jsonl``, and the components that carry
state of their own (SAC's networks and optimisers, the scheduler, the env, the replay).

With the replay saved and an env that ``restores_episodes`` (the toy suite), a resumed run
continues exactly where the checkpoint was taken: same episodes, same random numbers, so
the same metrics as a run that was never stopped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mtrl.checkpoint import global_rng_state, set_global_rng_state
from mtrl.learner.replay import MultiTaskReplay
from mtrl.learner.sac import SAC
from mtrl.safe_state import check_like
from mtrl.suite import MultiTaskVecEnv
from mtrl.training.scheduler import Scheduler


def empty_episode_sums(num_tasks: int) -> dict[str, np.ndarray]:
    return {"return": np.zeros(num_tasks), "success": np.zeros(num_tasks), "count": np.zeros(num_tasks)}


@dataclass
class TrainingState:
    """What the loop reads and changes. Components are referenced; loop fields are owned."""

    sac: SAC
    scheduler: Scheduler
    env: MultiTaskVecEnv
    replay: MultiTaskReplay
    rng: np.random.Generator  # uniform warm-up actions
    tasks: np.ndarray  # (E,) each slot's current task
    task_names: tuple[str, ...] = ()
    obs: np.ndarray | None = None  # (E, obs_dim) each slot's current observation
    env_steps: int = 0
    updates: int = 0
    evaluations: int = 0  # mid-run evaluations done (their goals rotate)
    learn_from: int = 0  # first env step at which updates run
    ep_return: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (E,) of the running episodes
    ep_success: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    ep_sums: dict[str, np.ndarray] = field(default_factory=dict)  # per task, since the last log
    update_sums: dict[str, torch.Tensor] = field(default_factory=dict)  # update metrics since the last log
    update_count: int = 0
    bad_updates_in_a_row: int = 0  # updates with a skipped step or a masked task (divergence)
    faults: dict[str, np.ndarray | int] = field(default_factory=dict)  # divergence / env fault counters
    log_offset: int = 0  # bytes of metrics.jsonl written up to this state
    finished: bool = False  # the final evaluation of train.total_steps is done
    spec: dict[str, Any] = field(default_factory=dict)  # obs_dim, act_dim, descriptions: mtrl.load needs no env

    def __post_init__(self) -> None:
        num_slots, num_tasks = len(self.tasks), self.sac.num_tasks
        if not len(self.ep_return):
            self.ep_return, self.ep_success = np.zeros(num_slots), np.zeros(num_slots, bool)
        self.ep_sums = self.ep_sums or empty_episode_sums(num_tasks)
        self.faults = self.faults or {"skipped_steps": 0, "masked": np.zeros(num_tasks, np.int64), "env_faults": 0}

    def start_episodes(self, slots: np.ndarray) -> None:
        """New episodes in ``slots`` of their current tasks (start, or after an env fault);
        n-step transitions still waiting from their old episodes are stored first."""
        self.replay.flush(slots)
        first = self.env.reset_slots(slots, self.tasks[slots])
        if self.obs is None:
            self.obs = np.zeros((len(self.tasks), first.shape[1]), np.float32)
        self.obs[slots] = first
        self.ep_return[slots], self.ep_success[slots] = 0.0, False
        self.sac.drop_episodes(slots)  # sac.reward_scaling=returns: their running returns

    _LOOP_FIELDS = (
        "tasks",
        "obs",
        "env_steps",
        "updates",
        "evaluations",
        "learn_from",
        "ep_return",
        "ep_success",
        "ep_sums",
        "update_sums",
        "update_count",
        "bad_updates_in_a_row",
        "faults",
        "log_offset",
        "finished",
    )

    def state_dict(self, with_replay: bool) -> dict[str, Any]:
        state = {
            "sac": self.sac.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "env": self.env.get_state(),
            "rng": self.rng.bit_generator.state,
            "global_rng": global_rng_state(),
            "loop": {name: getattr(self, name) for name in self._LOOP_FIELDS},
            # read by `mtrl eval` and tools without building a TrainingState
            "env_steps": self.env_steps,
            "task_names": list(self.task_names),
            "spec": dict(self.spec),
        }
        if with_replay:
            state["replay"] = self.replay.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore everything but the networks (see :meth:`SAC.load_state_dict`, called by
        the trainer first so that a mismatch is reported before anything else changes)."""
        self.scheduler.load_state_dict(state["scheduler"])
        self.env.set_state(state["env"])
        self.rng.bit_generator.state = state["rng"]
        set_global_rng_state(state["global_rng"])
        if "replay" in state:
            self.replay.load_state_dict(state["replay"])
        if self.sac.reward_scale is not None and "reward_scale" in state:  # where it was before SAC owned it
            self.sac.reward_scale.load_state_dict(state["reward_scale"])
        self.finished = False  # absent from checkpoints written before it existed
        loop = state["loop"]
        self.check_loop(loop)
        for name, value in loop.items():
            setattr(self, name, value)

    def check_loop(self, loop: Any) -> None:
        """``ValueError`` unless the saved loop fields are of this run's kinds and sizes."""
        if not isinstance(loop, dict):
            raise ValueError(f"loop is {type(loop).__name__}, expected a dict")
        template = {name: getattr(self, name) for name in self._LOOP_FIELDS}
        if self.obs is None:  # before the first episodes: (slots, obs_dim) observations
            template["obs"] = np.zeros((len(self.tasks), int(self.spec.get("obs_dim", 0))), np.float32)
        for name, value in loop.items():
            if name not in template:
                raise ValueError(f"loop.{name} is not a field of the training loop")
            if name == "update_sums":  # metric name -> running sum, whichever metrics were logged
                if not (
                    isinstance(value, dict)
                    and all(isinstance(k, str) and isinstance(v, (float, torch.Tensor)) for k, v in value.items())
                ):
                    raise ValueError("loop.update_sums is not a dict of metric sums")
            else:
                check_like(template[name], value, f"loop.{name}")
