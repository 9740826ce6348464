"""Meta-World v3 on EnvPool's C++ simulator (``env.backend=envpool``), for fast training.

Each slot borrows an env of its task's EnvPool pools for an episode; a step sends every
active slot's action to its pool first and receives afterwards, so all tasks step
concurrently in EnvPool's threads. Every slot is reset explicitly at its episode's end (the suite contract),
so EnvPool's own autoreset, which would spend the step after truncation on a reset whose
reward must be ignored, never fires.

How EnvPool 1.2.5 differs from the reference ``metaworld`` envs (see ``docs/PERFORMANCE.md``
and ``envs/envpool_fidelity.py``, which measures it):

* each reset draws a fresh goal, where Meta-World samples one of 50 fixed goals per task;
* it bundles MuJoCo 3.6 (metaworld pins 3.3), so contact-rich tasks drift a little;
* pick-place-v3's reward reads gripper-pad positions cached at construction, and nine
  other tasks' rewards or success differ too (all measured, see :data:`MISMATCHED_TASKS`).

Tasks listed in :data:`MISMATCHED_TASKS` run on the Python envs instead (or are refused
with ``env.envpool_fallback=false``). Evaluation always runs on the Python envs.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from mtrl.envs.env_lending import EnvLender
from mtrl.errors import ConfigError, install_hint
from mtrl.suite import MultiTaskVecEnv, StepResult, time_limited_step

# Tasks whose EnvPool 1.2.5 version is not Meta-World's, with what was measured:
# ``python -m mtrl.envs.envpool_fidelity --tasks MT50`` (100 expert and 100 random episodes per
# task and backend; see docs/PERFORMANCE.md). Ratios are EnvPool / Meta-World.
MISMATCHED_TASKS = {
    "button-press-topdown-wall-v3": "its expert earns almost no reward (expert reward ratio 0.00)",
    "dial-turn-v3": "Meta-World's scripted expert succeeds in 100% of episodes, in EnvPool in 0%",
    "door-lock-v3": "rewards about twice Meta-World's (expert 1.9-2.2x, random actions 2.1-2.3x)",
    "hammer-v3": "rewards about 0.6x Meta-World's (expert 0.56x, random actions 0.62-0.65x)",
    "pick-place-v3": "its reward uses gripper-pad positions cached at construction "
    "(random actions: 2.1-2.4x Meta-World's reward)",
    "push-back-v3": "random actions earn 2.6-3.1x Meta-World's reward",
    "shelf-place-v3": "Meta-World's scripted expert succeeds in 91% of episodes, in EnvPool in 10%",
    "soccer-v3": "random actions earn 2.3-2.7x Meta-World's reward",
    "sweep-into-v3": "random actions earn 2.3-2.4x Meta-World's reward (the expert 1.2-1.4x)",
    "sweep-v3": "random actions earn 2.0-2.7x Meta-World's reward",
}


def envpool_id(task: str) -> str:
    """``button-press-topdown-v3`` -> ``MetaWorld/ButtonPressTopdown-v3``."""
    return "MetaWorld/" + "".join(w.capitalize() for w in task[: -len("-v3")].split("-")) + "-v3"


def require_envpool() -> Any:
    try:
        import envpool
    except ImportError:
        raise ConfigError(
            f"env.backend=envpool needs EnvPool: {install_hint('envpool')} (or use env.backend=python)"
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

    A slot borrows an env, a (pool, env id) pair, of its episode's task from an
    :class:`~mtrl.envs.env_lending.EnvLender`; a task's pools grow by ``chunk`` envs (its fair
    share of the slots) when all of its envs are busy.
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
        self.chunk = -(-num_slots // len(self.names))  # envs per pool: ceil(slots / tasks)
        # Pools step concurrently in their own threads, so one each is enough: with ten
        # pools on 2 cores, two per pool were no faster (benchmarks/collector.py).
        self.threads = max(1, min(self.chunk, (os.cpu_count() or 1) // len(self.names)))
        self.pools: list[Any] = []  # every pool, of any task
        self.lender = EnvLender(num_slots, self._make_pool)
        self._task = np.full(num_slots, -1, np.int64)
        self._pool = np.full(num_slots, -1, np.int64)  # the pool index of the slot's env
        self._env = np.zeros(num_slots, np.int32)  # the env id in that pool
        self._t = np.zeros(num_slots, np.int64)
        self._groups: list[tuple[int, np.ndarray]] | None = None

    def _make_pool(self, task: int) -> list[tuple[int, int]]:
        # EnvPool seeds env i of a pool with seed + i: counting the envs made keeps the seeds
        # of a run disjoint (and runs with other seeds far apart).
        self.pools.append(
            self.envpool.make_gymnasium(
                envpool_id(self.names[task]),
                num_envs=self.chunk,
                seed=(self.seed * 1_000_003 + self.lender.made) % 2**31,  # EnvPool takes int32 seeds
                partially_observable=False,  # goal-visible observations, as in Meta-World's MT setting
                max_episode_steps=self.max_episode_steps,
                num_threads=self.threads,
            )
        )
        return [(len(self.pools) - 1, i) for i in range(self.chunk)]

    def reset_slots(self, slots: np.ndarray, tasks: np.ndarray, variants: np.ndarray | None = None) -> np.ndarray:
        """Training only: EnvPool draws its own goal at every reset, so ``variants`` is ignored."""
        slots, tasks = np.asarray(slots, np.int64), np.asarray(tasks, np.int64)
        native = ~self.on_python[tasks]
        # a slot changing sides hands its env back to the side it leaves, before either lends
        self.lender.give_back(slots[~native].tolist())
        if self.python_env is not None:
            self.python_env.lender.give_back(slots[native].tolist())
        out = np.empty((len(slots), self.obs_dim), np.float32)
        if (~native).any():
            out[~native] = self.python_env.reset_slots(slots[~native], tasks[~native])
        self._pool[slots[~native]] = -1
        handles = self.lender.relend(slots[native].tolist(), tasks[native].tolist())
        for slot, (pool, env_id) in zip(slots[native].tolist(), handles):
            self._pool[slot], self._env[slot] = pool, env_id
        self._task[slots] = tasks
        self._t[slots] = 0
        self._groups = None
        row_of_slot = np.full(self.num_slots, -1)
        row_of_slot[slots] = np.arange(len(slots))
        for pool, members in self._pool_groups():
            members = members[row_of_slot[members] >= 0]
            if len(members):
                obs, info = self.pools[pool].reset(self._env[members])
                out[row_of_slot[members]] = obs[self._row_of(info["env_id"], self._env[members])]
        return out

    @staticmethod
    def _row_of(returned_ids: np.ndarray, wanted_ids: np.ndarray) -> np.ndarray:
        """Rows of ``returned_ids`` holding each of ``wanted_ids`` (EnvPool may reorder)."""
        return np.argsort(returned_ids)[np.searchsorted(np.sort(returned_ids), wanted_ids)]

    def _pool_groups(self) -> list[tuple[int, np.ndarray]]:
        """(pool index, the slots using it) for every pool in use; cached until a reset."""
        if self._groups is None:
            used = self._pool >= 0
            self._groups = [(p, np.flatnonzero(used & (self._pool == p))) for p in np.unique(self._pool[used]).tolist()]
        return self._groups

    def step(self, actions: np.ndarray, active: np.ndarray | None = None) -> StepResult:
        n = self.num_slots
        obs = np.zeros((n, self.obs_dim), np.float32)
        reward = np.zeros(n, np.float32)
        success = np.zeros(n, bool)
        actions = np.asarray(actions, np.float32)
        sent = []
        for pool, members in self._pool_groups():
            if active is not None:
                members = members[active[members]]
            if len(members):
                self.pools[pool].send(actions[members], self._env[members])
                sent.append((pool, members))
        on_python = self.on_python[self._task] & (True if active is None else active)
        if on_python.any():  # steps in this thread while the pools step in theirs
            py = self.python_env.step(actions, on_python)
            obs[on_python], reward[on_python], success[on_python] = (
                py.obs[on_python],
                py.reward[on_python],
                py.success[on_python],
            )
        for pool, members in sent:
            o, r, _, _, info = self.pools[pool].recv()
            rows = self._row_of(info["env_id"], self._env[members])
            obs[members], reward[members], success[members] = o[rows], r[rows], info["success"][rows] > 0
        self._t[slice(None) if active is None else active] += 1
        return time_limited_step(obs, reward, success, self._t, self.max_episode_steps)

    def close(self) -> None:
        for pool in self.pools:
            pool.close()
        self.pools.clear()
        if self.python_env is not None:
            self.python_env.close()
