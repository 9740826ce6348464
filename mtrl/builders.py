"""Building a run's parts from its config: the device, the suite, the agent, its
evaluation policy, and an agent from a checkpoint. Shared by training (mtrl/training/trainer.py)
and everything that only runs a trained agent (``mtrl.load``, ``mtrl eval``, ``mtrl
single-task``, distillation's teachers, benchmarks/sb3_peer.py), so inference never
imports the training loop."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from mtrl import registry
from mtrl.config import Config
from mtrl.errors import ConfigError
from mtrl.learner.agent import Agent, EnvSpec
from mtrl.suite import MultiTaskVecEnv, Suite


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when available), ``cpu`` or ``cuda``; one-line error for cuda without one."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda but no CUDA device is available; use device=cpu or device=auto")
    return torch.device(name)


def make_suite(cfg: Config) -> Suite:
    """The task suite named by ``cfg.env.suite`` (registry kind ``suite``)."""
    return registry.get("suite", cfg.env.suite).target(cfg.env, seed=cfg.seed)


def make_spec(suite: Suite, env: MultiTaskVecEnv | Any) -> EnvSpec:
    """What an agent is built for: ``env``'s observation and action sizes (anything with
    ``obs_dim`` and ``act_dim``) and the suite's tasks."""
    names = tuple(suite.task_names)
    descriptions = tuple(suite.descriptions[n] for n in names)
    shipped = str(suite.embedding_file) if suite.embedding_file else None
    return EnvSpec(env.obs_dim, env.act_dim, names, descriptions, getattr(suite.cfg, "suite", ""), shipped)


def make_agent(cfg: Config, spec: EnvSpec, device: torch.device) -> Agent:
    """The agent named by ``cfg.agent.name`` (registry kind ``agent``), on ``device``."""
    return registry.get("agent", cfg.agent.name).target(cfg.agent, spec).to(device)


def make_policy(agent: Agent) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """The deterministic evaluation policy of an agent."""
    return lambda obs, task: agent.act(obs, task, deterministic=True)


def agent_from_checkpoint(
    cfg: Config, spec: EnvSpec, state: dict[str, Any], device: torch.device, misfit: str, advice: str = ""
) -> Agent:
    """The agent of ``cfg`` with the checkpoint ``state``'s weights, in eval mode. Weights of
    other names or shapes: one-line :class:`ConfigError` ``"<misfit> (<why>)<advice>"``."""
    agent = make_agent(cfg, spec, device)
    try:
        agent.load_state_dict(state["sac"]["agent"])
    except Exception as e:  # torch's load_state_dict on weights of other names, shapes or kinds
        why = f"it has no {e} entry" if isinstance(e, KeyError) else first_line(e)
        raise ConfigError(f"{misfit} ({why}){advice}") from None
    return agent.eval()


def first_line(e: BaseException, limit: int = 200) -> str:
    """The gist of an exception in one line: torch's ``Error(s) in loading state_dict for
    Agent:`` header is skipped for the first problem under it."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()] or [type(e).__name__]
    line = lines[1] if len(lines) > 1 and lines[0].endswith(":") else lines[0]
    return line if len(line) <= limit else line[: limit - 3] + "..."
