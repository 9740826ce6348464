"""Meta-World v3 on EnvPool's C++ simulator (``env.backend=envpool``), for fast training.

One EnvPool pool per task with one env per slot; a step sends every active slot's action
to its task's pool first and receives afterwards, so all tasks step concurrently in
EnvPool's threads. Every slot is reset explicitly at its episode's end (the suite contract),
so EnvPool's own autoreset, which would spend the step after truncation on a reset whose
reward must be ignored, never fires.

How EnvPool 1.2.5 differs from the reference ``metaworld`` envs (see ``docs/PERFORMANCE.md``
and ``envs/envpool_fidelity.py``, which measures it):

* each reset draws a fresh goal, where Meta-World samples one of 50 fixed goals per task;
* it bundles MuJoCo 3.6 (metaworld pins 3.3), so contact-rich tasks drift a little;
* pick-place-v3's reward reads gripper-pad positions cached at construction.

Tasks listed in :data:`MISMATCHED_TASKS` run on the Python envs instead (or are refused
with ``env.envpool_fallback=false``). Evaluation always runs on the Python envs.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from envs.meta_world import time_limited_step
from mtrl.config import ConfigError
from mtrl.suite import MultiTaskVecEnv, StepResult

# Tasks whose EnvPool version is not Meta-World's, with the reason (measured by
# ``python -m envs.envpool_fidelity``; see docs/PERFORMANCE.md).
MISMATCHED_TASKS = {
    "pick-place-v3": "its reward uses gripper-pad positions cached at construction "
    "(about 3x Meta-World's reward per step)",
}


def envpool_id(task: str) -> str:
    """``button-press-topdown-v3`` -> ``MetaWorld/ButtonPressTopdown-v3``."""
    return "MetaWorld/" + "".join(w.capitalize() for w in task[: -len("-v3")].split("-")) + "-v3"


def require_envpool() -> Any:
    try:
        import envpool
    except ImportError:
        raise ConfigError(
            "env.backend=envpool needs EnvPool: pip install 'mtrl[envpool]' (or use env.backend=python)"
        ) from None
    return envpool


def split_tasks(names: list[str], fallback: bool) -> tuple[list[str], list[str]]:
    """(tasks EnvPool runs, tasks the Python envs run); refuses mismatched ones without fallback."""
    odd = [n for n in names if n in MISMATCHED_TASKS]
    if odd and not fallback:
        raise ConfigError(
            f"env.backend=envpool: {odd[0]} differs from Meta-World in EnvPool ({MISMATCHED_TASKS[odd[0]]}); "
            "drop it from env.tasks, set env.envpool_fallback=true to run it on the Python envs, "
            "or use env.backend=python"
        )
    return [n for n in names if n not in odd], odd


class EnvPoolVecEnv(MultiTaskVecEnv):
    """Slots over per-task EnvPool pools; tasks in ``python_env``'s care step there instead.

    ``names`` are all the suite's tasks (task index = position); ``python_env`` is a
    Python-backend env with the same slots, used only for the tasks in ``python_tasks``.
    """

    def __init__(
        self,
        names: list[str],
        num_slots: int,
        seed: int,
        max_episode_steps: int,
        python_tasks: list[str] = (),
        python_env: MultiTaskVecEnv | None = None,
    ):
        self.envpool = require_envpool()
        self.names = list(names)
        self.num_slots = num_slots
        self.obs_dim = 39
        self.act_dim = 4
        self.max_episode_steps = max_episode_steps
        self.seed = seed
        self.on_python = np.array([n in python_tasks for n in self.names])
        self.python_env = python_env
        self.rng = python_env.rng if python_env is not None else None
        self._pools: dict[int, Any] = {}
        self._task = np.full(num_slots, -1, np.int64)
        self._t = np.zeros(num_slots, np.int64)
        self._groups: list[tuple[int, np.ndarray]] | None = None

    def _pool(self, task: int) -> Any:
        if task not in self._pools:
            # EnvPool seeds env i of a pool with seed + i, so pools get disjoint seed ranges.
            stride = self.num_slots * len(self.names)
            # Pools step concurrently, so each needs few threads: measured on 2 cores, ten
            # pools of one thread step MT10 1.4x faster than ten pools of two.
            threads = max(1, min(self.num_slots, (os.cpu_count() or 1) // len(self.names)))
            self._pools[task] = self.envpool.make_gymnasium(
                envpool_id(self.names[task]),
                num_envs=self.num_slots,
                seed=self.seed * stride + task * self.num_slots,
                partially_observable=False,  # goal-visible observations, as in Meta-World's MT setting
                max_episode_steps=self.max_episode_steps,
                num_threads=threads,
            )
        return self._pools[task]

    def reset_slots(self, slots: np.ndarray, tasks: np.ndarray) -> np.ndarray:
        slots, tasks = np.asarray(slots, np.int64), np.asarray(tasks, np.int64)
        out = np.empty((len(slots), self.obs_dim), np.float32)
        for task in np.unique(tasks).tolist():
            rows = np.flatnonzero(tasks == task)
            if self.on_python[task]:
                out[rows] = self.python_env.reset_slots(slots[rows], tasks[rows])
            else:
                obs, info = self._pool(task).reset(slots[rows].astype(np.int32))
                row_of_env = np.empty(self.num_slots, np.int64)
                row_of_env[info["env_id"]] = np.arange(len(rows))
                out[rows] = obs[row_of_env[slots[rows]]]
        self._task[slots] = tasks
        self._t[slots] = 0
        self._groups = None
        return out

    def _pool_groups(self) -> list[tuple[int, np.ndarray]]:
        """(task, its slots) for every EnvPool task that some slot runs; cached until a reset."""
        if self._groups is None:
            tasks = [t for t in np.unique(self._task).tolist() if t >= 0 and not self.on_python[t]]
            self._groups = [(t, np.flatnonzero(self._task == t).astype(np.int32)) for t in tasks]
        return self._groups

    def step(self, actions: np.ndarray, active: np.ndarray | None = None) -> StepResult:
        n = self.num_slots
        obs = np.zeros((n, self.obs_dim), np.float32)
        reward = np.zeros(n, np.float32)
        success = np.zeros(n, bool)
        actions = np.asarray(actions, np.float32)
        sent = []
        for task, ids in self._pool_groups():
            if active is not None:
                ids = ids[active[ids]]
            if len(ids):
                self._pools[task].send(actions[ids], ids)
                sent.append(task)
        on_python = self.on_python[self._task] & (True if active is None else active)
        if on_python.any():  # steps in this thread while the pools step in theirs
            py = self.python_env.step(actions, on_python)
            obs[on_python], reward[on_python], success[on_python] = (
                py.obs[on_python], py.reward[on_python], py.success[on_python],
            )
        for task in sent:
            o, r, _, _, info = self._pools[task].recv()
            ids = info["env_id"]
            obs[ids], reward[ids], success[ids] = o, r, info["success"] > 0
        self._t[slice(None) if active is None else active] += 1
        return time_limited_step(obs, reward, success, self._t, self.max_episode_steps)

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
        if self.python_env is not None:
            self.python_env.close()
