"""A trained agent as a policy for your own code: ``mtrl.load(RUN_DIR)``.

    policy = mtrl.load("runs/mt10-mtsac-seed0-...")       # the latest checkpoint that verifies
    policy = mtrl.load("exports/mt10-mtsac")               # or what `mtrl export` wrote
    actions = policy.act(obs, ["reach-v3", "push-v3"])     # (B, obs_dim), task names or indices

The agent is rebuilt from the run's ``config.yaml`` and the checkpoint alone: checkpoints
store the observation and action sizes, so no environment is built (building Meta-World's
MT10 envs takes seconds); for checkpoints written before they did, one evaluation env is
built to read them. ``mtrl eval`` builds its agent the same way (:func:`mtrl.run_files.read_run`,
:func:`policy_from_checkpoint`), so both act identically.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from mtrl.builders import agent_from_checkpoint, make_spec, make_suite, resolve_device
from mtrl.config import Config
from mtrl.errors import ConfigError, did_you_mean
from mtrl.learner.agent import Agent, EnvSpec
from mtrl.run_files import check_summary, read_checkpoint, read_run
from mtrl.seeding import run_seeds
from mtrl.suite import Suite

TaskIds = str | int | Sequence[str | int] | np.ndarray


class TrainedPolicy:
    """A trained agent ready to act on numpy batches; made by :func:`load`.

    Attributes: ``task_names`` (index = task id), ``obs_dim``, ``act_dim``, ``env_steps``
    (training steps when the checkpoint was taken), ``checkpoint`` (its path), ``device``,
    ``config`` (the run's :class:`~mtrl.config.Config`) and ``agent`` (the torch module, in
    eval mode)."""

    def __init__(
        self, agent: Agent, spec: EnvSpec, config: Config, checkpoint: Path, env_steps: int | None, device: torch.device
    ):
        self.agent, self.spec, self.config = agent, spec, config
        self.checkpoint, self.env_steps, self.device = Path(checkpoint), env_steps, device
        self.task_names: tuple[str, ...] = tuple(spec.task_names)
        self.obs_dim, self.act_dim = spec.obs_dim, spec.act_dim
        self._index = {name: i for i, name in enumerate(self.task_names)}

    def __repr__(self) -> str:
        steps = "?" if self.env_steps is None else f"{self.env_steps:,}"
        return (
            f"TrainedPolicy({self.config.agent.name} on {len(self.task_names)} {self.spec.suite} tasks, "
            f"{steps} env steps, {self.checkpoint.name}, {self.device})"
        )

    def task_indices(self, task_ids: TaskIds, batch: int) -> np.ndarray:
        """Task ids as a (batch,) int64 array: names or indices, one per row or one for all.
        Unknown names and out-of-range indices raise a one-line :class:`ConfigError`."""
        ids = np.asarray(task_ids)
        if ids.ndim == 0:
            ids = np.repeat(ids, batch)
        if ids.shape != (batch,):
            raise ConfigError(
                f"task_ids has shape {ids.shape} for {batch} observations; pass one task per row, "
                "or one name or index for all"
            )
        if ids.dtype.kind in "iu":
            return self._check_range(ids.astype(np.int64))
        if ids.dtype.kind not in "USO":
            raise ConfigError(f"task ids must be task names or integer indices, got {ids.dtype} values")
        out = np.empty(batch, np.int64)
        for i, task in enumerate(ids.tolist()):
            if isinstance(task, (int, np.integer)) and not isinstance(task, bool):
                out[i] = task
            elif isinstance(task, str) and task in self._index:
                out[i] = self._index[task]
            else:
                hint = did_you_mean(task, list(self.task_names)) if isinstance(task, str) else ""
                raise ConfigError(f"unknown task {task!r}{hint}; this agent's tasks are: {', '.join(self.task_names)}")
        return self._check_range(out)

    def _check_range(self, ids: np.ndarray) -> np.ndarray:
        bad = ids[(ids < 0) | (ids >= len(self.task_names))]
        if len(bad):
            raise ConfigError(
                f"task index {int(bad[0])} is out of range: this agent has {len(self.task_names)} tasks "
                f"(0..{len(self.task_names) - 1}: {', '.join(self.task_names)})"
            )
        return ids

    def act(self, obs: np.ndarray, task_ids: TaskIds, deterministic: bool = True) -> np.ndarray:
        """Actions (B, act_dim) float32 for observations (B, obs_dim) and task ids (B,) given
        as names or indices, or a single name / index for every row. One observation
        (obs_dim,) gives one action (act_dim,). ``deterministic``: the mean action (what
        evaluation uses); False samples from the policy."""
        obs = np.asarray(obs, dtype=np.float32)
        single = obs.ndim == 1
        batch = obs[None] if single else obs
        if batch.ndim != 2 or batch.shape[1] != self.obs_dim:
            raise ConfigError(self._width_problem(obs.shape))
        actions = self.agent.act(batch, self.task_indices(task_ids, len(batch)), deterministic=deterministic)
        return actions[0] if single else actions

    def __call__(self, obs: np.ndarray, task: np.ndarray) -> np.ndarray:
        """The evaluation policy (deterministic), as :func:`mtrl.training.evaluation.evaluate` calls it."""
        return self.act(obs, task, deterministic=True)

    def _width_problem(self, shape: tuple[int, ...]) -> str:
        hint = ""
        if len(shape) and shape[-1] == self.obs_dim + len(self.task_names):
            hint = (
                "; it looks like a one-hot task id is appended: pass the raw observation (Meta-World: "
                "use_one_hot=False) and the task ids separately"
            )
        return (
            f"observations have shape {tuple(shape)}, the agent takes (batch, {self.obs_dim}) "
            f"({self.spec.suite} observations){hint}"
        )


def load(run_dir: str | Path, checkpoint: str | Path | int | None = None, device: str = "auto") -> TrainedPolicy:
    """The trained policy of a run directory, ready to act.

    ``run_dir`` may also be a folder written by ``mtrl export`` (safetensors weights).
    ``checkpoint``: None for the newest checkpoint that passes its checksum (newer broken
    ones are skipped with a warning), a step number (``RUN_DIR/checkpoints/step_<N>.pt``)
    or a checkpoint file. ``device``: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
    Problems (not a run directory, no or a broken checkpoint, a checkpoint that does not fit
    the config) raise a one-line :class:`~mtrl.errors.ConfigError`."""
    from mtrl.inference.export import is_export, read_export

    run_dir = Path(run_dir)
    config_path = run_dir / "config.yaml"
    cfg = read_run(run_dir)
    torch_device = resolve_device(device)
    suite = make_suite(cfg)
    if is_export(run_dir):
        if checkpoint is not None:
            raise ConfigError(f"'{run_dir}' is an export (one policy, no checkpoints); load it without checkpoint=")
        path, state = read_export(run_dir, torch_device)
        return policy_from_checkpoint(cfg, suite, path, state, config_path, torch_device)
    path, state, skipped = read_checkpoint(run_dir, checkpoint, torch_device)
    for why in skipped:
        warnings.warn(f"mtrl: skipped {why}; loading {path.name}", stacklevel=2)
    return policy_from_checkpoint(cfg, suite, path, state, config_path, torch_device)


def policy_from_checkpoint(
    cfg: Config, suite: Suite, checkpoint: Path, state: Any, config_path: Path, device: torch.device
) -> TrainedPolicy:
    """Build the agent of ``cfg`` and load the checkpoint's weights; one-line errors when the
    checkpoint does not fit the config (other tasks, other network sizes)."""
    misfit = f"checkpoint '{checkpoint}' does not fit the run's config '{config_path}'"
    check_summary(state, checkpoint)
    saved_tasks = state.get("task_names")
    if saved_tasks is not None and list(saved_tasks) != list(suite.task_names):
        raise ConfigError(
            f"{misfit}: it was trained on {len(saved_tasks)} tasks ({_names(saved_tasks)}), the config's suite "
            f"has {suite.num_tasks} ({_names(suite.task_names)}); was it copied from another run?"
        )
    spec = make_spec(suite, _sizes(suite, state.get("spec") or {}, cfg.seed))
    agent = agent_from_checkpoint(cfg, spec, state, device, misfit, "; was it copied from another run?")
    return TrainedPolicy(agent, spec, cfg, checkpoint, state.get("env_steps"), device)


def _sizes(suite: Suite, saved: dict[str, Any], seed: int) -> Any:
    """Observation and action sizes: the checkpoint's, or (older checkpoints) an env's."""
    if "obs_dim" in saved and "act_dim" in saved:
        return SimpleNamespace(obs_dim=int(saved["obs_dim"]), act_dim=int(saved["act_dim"]))
    env = suite.make_eval_env(1, seed=run_seeds(seed).evaluation)
    try:
        return SimpleNamespace(obs_dim=env.obs_dim, act_dim=env.act_dim)
    finally:
        env.close()


def _names(names: Sequence[str], shown: int = 4) -> str:
    names = list(names)
    return ", ".join(names[:shown]) + (f", ... ({len(names) - shown} more)" if len(names) > shown else "")
