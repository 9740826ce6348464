"""Multi-task soft actor-critic: the losses as plain functions and one update step.

Temperatures are one tensor ``log_alpha`` of shape (num_tasks,); every sample uses its
own task's alpha, and since a batch holds the same number of samples per task, the
temperature loss of task t only moves alpha_t.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from mtrl.agent import Agent
from mtrl.config import SACConfig
from mtrl.replay import Batch


def critic_target(reward: torch.Tensor, terminated: torch.Tensor, next_q: torch.Tensor, next_log_prob: torch.Tensor, alpha: torch.Tensor, gamma: float) -> torch.Tensor:
    """y = r + gamma (1 - terminated) (min_i Q'_i(s', a') - alpha log pi(a'|s')).

    A time-limit truncation is *not* ``terminated``: its next state is bootstrapped.
    """
    soft_value = next_q.min(0).values - alpha * next_log_prob
    return reward + gamma * (1.0 - terminated) * soft_value


def critic_loss(q: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Sum over the critics of the mean squared TD error; q is (critics, batch)."""
    return ((q - target.unsqueeze(0)) ** 2).mean(1).sum()


def actor_loss(q_pi: torch.Tensor, log_prob: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """E[alpha log pi(a|s) - min_i Q_i(s, a)], a ~ pi."""
    return (alpha * log_prob - q_pi.min(0).values).mean()


def temperature_loss(log_alpha: torch.Tensor, log_prob: torch.Tensor, target_entropy: float) -> torch.Tensor:
    """E[-log alpha_task (log pi + target entropy)]; log_alpha holds each sample's task's value."""
    return -(log_alpha * (log_prob.detach() + target_entropy)).mean()


class SAC:
    """Owns the agent's target networks, the per-task temperatures and the optimisers."""

    def __init__(self, agent: Agent, num_tasks: int, act_dim: int, cfg: SACConfig):
        self.agent, self.cfg = agent, cfg
        device = next(agent.parameters()).device
        # The target holds the encoder too, since the critic reads the encoder's features.
        self.target = nn.ModuleDict({"encoder": copy.deepcopy(agent.encoder), "critic": copy.deepcopy(agent.critic)})
        self.target.requires_grad_(False)
        self.log_alpha = torch.full((num_tasks,), math.log(cfg.initial_alpha), device=device, requires_grad=True)
        self.target_entropy = -float(act_dim) if cfg.target_entropy is None else cfg.target_entropy
        encoder_params = list(agent.encoder.parameters())
        actor_params = list(agent.actor.parameters())
        if not agent.detach_actor_features:
            actor_params += encoder_params
        self.critic_params = list(agent.critic.parameters()) + encoder_params
        self.actor_params = actor_params
        self.critic_opt = torch.optim.Adam(self.critic_params, lr=cfg.critic_lr)
        self.actor_opt = torch.optim.Adam(self.actor_params, lr=cfg.actor_lr)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=cfg.alpha_lr)

    def _step(self, opt: torch.optim.Optimizer, params: list[torch.Tensor], loss: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.max_grad_norm is not None and params:
            nn.utils.clip_grad_norm_(params, self.cfg.max_grad_norm)
        opt.step()

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One gradient step on critics, actor and temperatures. Returns detached metrics."""
        agent, cfg = self.agent, self.cfg
        obs, action, reward, next_obs, terminated, task = batch
        alpha = self.log_alpha.detach().exp()[task]

        # Critic: soft Bellman target from the target encoder + critics.
        with torch.no_grad():
            next_action, next_log_prob = agent.actor.sample(agent.encoder(next_obs, task), task)
            next_q = self.target["critic"](self.target["encoder"](next_obs, task), next_action, task)
            target = critic_target(reward, terminated, next_q, next_log_prob, alpha, cfg.gamma)
        features = agent.encoder(obs, task)
        q = agent.critic(features, action, task)
        loss_critic = critic_loss(q, target)
        self._step(self.critic_opt, self.critic_params, loss_critic)

        # Actor: reads (by default detached) features of the freshly updated encoder.
        if agent.detach_actor_features:
            with torch.no_grad():
                features = agent.encoder(obs, task)
        else:
            features = agent.encoder(obs, task)
        new_action, log_prob = agent.actor.sample(features, task)
        q_pi = agent.critic(features, new_action, task)
        loss_actor = actor_loss(q_pi, log_prob, alpha)
        self._step(self.actor_opt, self.actor_params, loss_actor)

        # Temperatures: one per task, driven only by that task's samples.
        loss_alpha = temperature_loss(self.log_alpha[task], log_prob, self.target_entropy)
        self._step(self.alpha_opt, [], loss_alpha)

        self.soft_update()
        return {
            "loss/critic": loss_critic.detach(),
            "loss/actor": loss_actor.detach(),
            "loss/alpha": loss_alpha.detach(),
            "train/q_mean": q.detach().mean(),
            "train/entropy": -log_prob.detach().mean(),
        }

    @torch.no_grad()
    def soft_update(self) -> None:
        """target <- tau * online + (1 - tau) * target."""
        online = nn.ModuleDict({"encoder": self.agent.encoder, "critic": self.agent.critic})
        for t, o in zip(self.target.parameters(), online.parameters()):
            t.lerp_(o, self.cfg.tau)

    def state_dict(self) -> dict:
        return {
            "agent": self.agent.state_dict(),
            "target": self.target.state_dict(),
            "log_alpha": self.log_alpha.detach().clone(),
            "critic_opt": self.critic_opt.state_dict(),
            "actor_opt": self.actor_opt.state_dict(),
            "alpha_opt": self.alpha_opt.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.agent.load_state_dict(state["agent"])
        self.target.load_state_dict(state["target"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.critic_opt.load_state_dict(state["critic_opt"])
        self.actor_opt.load_state_dict(state["actor_opt"])
        self.alpha_opt.load_state_dict(state["alpha_opt"])
