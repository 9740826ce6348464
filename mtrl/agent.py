"""What every agent is: a task-aware encoder, a tanh-Gaussian actor and twin critics.

    features = encoder(obs, task)          # trained by the critic loss
    q1, q2   = critic(features, action, task)
    action   = actor(features[.detach()], task)

Agents in ``agents/`` differ only in the encoder (one-hot, CARE, ...) and in whether the
actor and critic have one output head per task. :mod:`mtrl.sac` trains any of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from mtrl.networks import TanhGaussianActor, TwinQ


@dataclass(frozen=True)
class EnvSpec:
    """What an agent factory needs to know about the suite."""

    obs_dim: int
    act_dim: int
    task_names: tuple[str, ...]
    descriptions: tuple[str, ...]
    suite: str
    embedding_file: str | None = None  # the suite's shipped task-description embeddings

    @property
    def num_tasks(self) -> int:
        return len(self.task_names)


class OneHotTaskEncoder(nn.Module):
    """features = [obs || one_hot(task)], or just obs when the task is hidden (an ablation)."""

    def __init__(self, obs_dim: int, num_tasks: int, task_visible: bool = True):
        super().__init__()
        self.num_tasks, self.task_visible = num_tasks, task_visible
        self.out_dim = obs_dim + (num_tasks if task_visible else 0)

    def forward(self, obs: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        if not self.task_visible:
            return obs
        return torch.cat([obs, F.one_hot(task, self.num_tasks).to(obs.dtype)], -1)


class Agent(nn.Module):
    """Encoder + actor + twin critics. ``detach_actor_features``: the actor loss does not
    train the encoder (CARE's and SAC-AE's choice); the critic loss always does."""

    def __init__(self, encoder: nn.Module, actor: TanhGaussianActor, critic: TwinQ, detach_actor_features: bool = True):
        super().__init__()
        self.encoder, self.actor, self.critic = encoder, actor, critic
        self.detach_actor_features = detach_actor_features

    def shared_parameters(self, part: str) -> list[nn.Parameter]:
        """Parameters that every task's ``part`` ("critic" or "actor") loss flows through:
        the hidden layers, the output layer unless it has one head per task, and the
        encoder when that loss trains it. Conflict monitoring and PCGrad/CAGrad act here."""
        net = (self.critic if part == "critic" else self.actor).net
        params = [p for layer in net.hidden for p in layer.parameters()]
        if net.num_heads == 1:
            params += list(net.head.parameters())
        if part == "critic" or not self.detach_actor_features:
            params = list(self.encoder.parameters()) + params
        return params

    @torch.no_grad()
    def act(self, obs: np.ndarray, task: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """Actions for a batch of numpy observations and task ids (collection / evaluation)."""
        device = next(self.parameters()).device
        obs_t = torch.as_tensor(obs, dtype=torch.float32, device=device)
        task_t = torch.as_tensor(task, dtype=torch.long, device=device)
        features = self.encoder(obs_t, task_t)
        if deterministic:
            action = self.actor.deterministic(features, task_t)
        else:
            action = self.actor.sample(features, task_t)[0]
        return action.cpu().numpy()
