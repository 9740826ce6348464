"""Meta-World v3 through the ``metaworld`` 3.x package, with Meta-World+ defaults.

Slots borrow raw ``SawyerXYZEnv`` objects of their episode's task (Meta-World tasks are
different classes) from an :class:`~mtrl.envs.env_lending.EnvLender`, which builds one only when
all of that task's envs are busy. Each reset picks one of the task's 50 fixed train
goals at random, the observation is the goal-visible 39-d vector, the reward is V2 and
episodes are cut at ``max_episode_steps`` (500) by truncation, never termination.
The benchmark objects (goal lists) are cached per process: building them is the slow part.
The ``envpool`` backend (``envs/meta_world_envpool.py``) trains on EnvPool's C++ port instead.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mtrl.envs.env_lending import EnvLender
from mtrl.envs.meta_world_descriptions import DESCRIPTIONS
from mtrl.errors import ConfigError, did_you_mean
from mtrl.registry import register
from mtrl.suite import MultiTaskVecEnv, StepResult, Suite, time_limited_step

BENCHMARKS = ("MT1", "MT10", "MT25", "MT50")
BACKENDS = ("python", "envpool")
DEFAULT_BENCHMARK = "MT10"  # without env.benchmark and env.tasks
MAX_EPISODE_STEPS = 500  # Meta-World's own cap: stepping past it raises


@dataclass
class MetaWorldConfig:
    """Options of the Meta-World suite."""

    suite: str = "metaworld"
    """The suite (mtrl list shows them)."""
    benchmark: str | None = None
    """MT1 | MT10 | MT25 | MT50; null: MT10, or with env.tasks a subset of the 50 tasks.

    A saved config.yaml then does not name a benchmark the run did not train on."""
    tasks: list[str] | None = None
    """MT1: the one task; otherwise a custom subset of the 50 tasks, in this order; null: the benchmark's."""
    max_episode_steps: int = MAX_EPISODE_STEPS
    """Steps before an episode is truncated."""
    reward_function_version: str = "v2"
    """Meta-World's reward functions: v1 | v2."""
    backend: str = "python"
    """python | envpool (training only; evaluation always runs on python)."""
    envpool_fallback: bool = True
    """Tasks EnvPool gets wrong run on python; false refuses them."""

    def validate(self) -> None:
        if self.benchmark is not None and self.benchmark not in BENCHMARKS:
            raise ConfigError(f"env.benchmark must be one of {', '.join(BENCHMARKS)}, got '{self.benchmark}'")
        if self.backend not in BACKENDS:
            raise ConfigError(f"env.backend must be one of {', '.join(BACKENDS)}, got '{self.backend}'")
        if self.backend == "envpool" and self.reward_function_version != "v2":
            raise ConfigError("env.backend=envpool implements only the v2 reward; set env.reward_function_version=v2")
        if self.reward_function_version not in ("v1", "v2"):
            raise ConfigError(
                f"env.reward_function_version must be 'v2' (or 'v1'), got '{self.reward_function_version}'"
            )
        if not 1 <= self.max_episode_steps <= MAX_EPISODE_STEPS:
            raise ConfigError(
                f"env.max_episode_steps must be in 1..{MAX_EPISODE_STEPS} (Meta-World's cap), "
                f"got {self.max_episode_steps}"
            )
        if self.benchmark == "MT1" and (self.tasks is None or len(self.tasks) != 1):
            raise ConfigError("env.benchmark=MT1 needs exactly one task, e.g. env.tasks=[reach-v3]")
        if self.tasks is not None:
            valid = all_task_names()
            if not self.tasks:
                raise ConfigError("env.tasks is empty; list Meta-World task names or set it to null")
            for name in self.tasks:
                if name not in valid:
                    hint = did_you_mean(name, valid)
                    raise ConfigError(f"env.tasks: unknown Meta-World task '{name}'{hint}")
            if len(set(self.tasks)) != len(self.tasks):
                raise ConfigError("env.tasks lists a task twice; each task may appear once")


def all_task_names() -> list[str]:
    """The 50 v3 task names in Meta-World's (MT50) order."""
    import metaworld.env_dict

    return list(metaworld.env_dict.ALL_V3_ENVIRONMENTS.keys())


@functools.cache
def _benchmark(name: str, seed: int) -> Any:
    import metaworld

    return getattr(metaworld, name)(seed=seed)


@functools.cache
def _single_task_benchmark(task: str, seed: int) -> Any:
    import metaworld

    return metaworld.MT1(task, seed=seed)


def task_goals(cfg: MetaWorldConfig, seed: int) -> tuple[list[str], dict[str, type], dict[str, list]]:
    """Task names, env classes and the 50 train goals of each task (cached per process)."""
    if cfg.tasks is None:
        bench = _benchmark(cfg.benchmark or DEFAULT_BENCHMARK, seed)
        names = list(bench.train_classes)
        classes = dict(bench.train_classes)
        tasks = bench.train_tasks
    else:
        names = list(cfg.tasks)
        benches = [_single_task_benchmark(n, seed) for n in names]
        classes = {n: b.train_classes[n] for n, b in zip(names, benches)}
        tasks = [t for b in benches for t in b.train_tasks]
    goals = {n: [t for t in tasks if t.env_name == n] for n in names}
    return names, classes, goals


class MetaWorldVecEnv(MultiTaskVecEnv):
    """Slots of raw Meta-World envs stepped one after another in this process."""

    def __init__(self, cfg: MetaWorldConfig, num_slots: int, seed: int, goal_seed: int):
        self.cfg = cfg
        self.names, self.classes, self.goals = task_goals(cfg, goal_seed)
        self.num_slots = num_slots
        self.obs_dim = 39
        self.act_dim = 4
        self.max_episode_steps = cfg.max_episode_steps
        self.rng = np.random.default_rng(seed)
        self.lender = EnvLender(num_slots, self._make_env)  # envs follow concurrent use, not slots x tasks
        self._envs: list[Any] = []
        self._current: list[Any] = [None] * num_slots
        self._t = np.zeros(num_slots, np.int64)

    def _make_env(self, task: int) -> list[Any]:
        self._envs.append(self.classes[self.names[task]](reward_function_version=self.cfg.reward_function_version))
        return [self._envs[-1]]

    def reset_slots(self, slots: np.ndarray, tasks: np.ndarray, variants: np.ndarray | None = None) -> np.ndarray:
        slots, tasks = np.asarray(slots).tolist(), np.asarray(tasks).tolist()
        envs = self.lender.relend(slots, tasks)
        out = np.empty((len(slots), self.obs_dim), np.float32)
        for i, (slot, task, env) in enumerate(zip(slots, tasks, envs)):
            goals = self.goals[self.names[task]]
            goal = self.rng.integers(len(goals)) if variants is None else int(variants[i]) % len(goals)
            env.set_task(goals[goal])
            obs, _ = env.reset(seed=int(self.rng.integers(2**31)))
            out[i] = obs
            self._current[slot] = env
            self._t[slot] = 0
        return out

    def step(self, actions: np.ndarray, active: np.ndarray | None = None) -> StepResult:
        n = self.num_slots
        obs = np.zeros((n, self.obs_dim), np.float32)
        reward = np.zeros(n, np.float32)
        success = np.zeros(n, bool)
        slots = range(n) if active is None else np.flatnonzero(active).tolist()
        for s in slots:
            o, r, _, _, info = self._current[s].step(actions[s])
            obs[s], reward[s], success[s] = o, r, info["success"] > 0
            self._t[s] += 1
        return time_limited_step(obs, reward, success, self._t, self.max_episode_steps)

    render_size = 240  # pixels of a square video frame (a multiple of 16, as video codecs want)
    _frames = None  # mtrl.envs.mujoco_render.MujocoFrames, made on the first render_slots

    def render_slots(self, slots: np.ndarray) -> list[np.ndarray]:
        """Each slot's scene from Meta-World's "corner" camera (``mtrl eval --video``)."""
        if self._frames is None:
            from mtrl.envs.mujoco_render import MujocoFrames

            self._frames = MujocoFrames(self.render_size, camera="corner", flip=True)
        return [self._frames.render(self._current[s]) for s in np.asarray(slots).tolist()]

    def close(self) -> None:
        if self._frames is not None:
            self._frames.close()
        for env in self._envs:
            env.close()
        self._envs.clear()


@register("suite", "metaworld", MetaWorldConfig)
class MetaWorldSuite(Suite):
    """Meta-World v3 MT1/MT10/MT25/MT50 (V2 reward, random train goals, goal visible)."""

    Config = MetaWorldConfig
    embedding_file = Path(__file__).parent / "data" / "metaworld_embeddings.json"

    def single_task_overrides(self, task: str) -> list[str]:
        """MT1 on the task (its 50 goals, as in the multi-task benchmarks)."""
        return ["env.benchmark=MT1", f"env.tasks=[{task}]"]

    @property
    def task_names(self) -> list[str]:
        if self.cfg.tasks is not None:
            return list(self.cfg.tasks)
        benchmark = self.cfg.benchmark or DEFAULT_BENCHMARK
        if benchmark == "MT50":
            return all_task_names()
        import metaworld.env_dict

        return list(getattr(metaworld.env_dict, f"{benchmark}_V3").keys())

    @property
    def descriptions(self) -> dict[str, str]:
        return {name: DESCRIPTIONS[name] for name in self.task_names}

    def embedding_catalog(self) -> dict[str, str]:
        return {name: DESCRIPTIONS[name] for name in all_task_names()}

    def make_env(self, num_slots: int, seed: int) -> MultiTaskVecEnv:
        if self.cfg.backend == "python":
            return self._python_env(num_slots, seed)
        from mtrl.envs.meta_world_envpool import EnvPoolVecEnv, require_envpool, split_tasks

        require_envpool()
        _, python_tasks = split_tasks(self.task_names, self.cfg.envpool_fallback)
        if python_tasks:  # printed once per env, as a plain line (logging's last-resort handler)
            logging.getLogger(__name__).warning(
                "env.backend=envpool: %s run(s) on the Python envs, since EnvPool's version differs "
                "from Meta-World's; env.envpool_fallback=false refuses instead",
                ", ".join(python_tasks),
            )
        python_env = self._python_env(num_slots, seed) if python_tasks else None
        return EnvPoolVecEnv(self.task_names, num_slots, seed, self.cfg.max_episode_steps, python_tasks, python_env)

    def make_eval_env(self, num_episodes: int, seed: int) -> MetaWorldVecEnv:
        """Always the reference Python envs, so results compare with the literature."""
        return self._python_env(self.num_tasks, seed)

    def _python_env(self, num_slots: int, seed: int) -> MetaWorldVecEnv:
        """The reference envs; goals are drawn with the suite's seed, starts with ``seed``."""
        return MetaWorldVecEnv(self.cfg, num_slots, seed, goal_seed=self.seed)
