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
from mtrl.conflict import ConflictConfig, ConflictStats, aggregate, conflict_stats, per_task_gradients
from mtrl.replay import Batch


def critic_target(reward: torch.Tensor, terminated: torch.Tensor, next_q: torch.Tensor, next_log_prob: torch.Tensor, alpha: torch.Tensor, gamma: float) -> torch.Tensor:
    """y = r + gamma (1 - terminated) (min_i Q'_i(s', a') - alpha log pi(a'|s')).

    A time-limit truncation is *not* ``terminated``: its next state is bootstrapped.
    """
    soft_value = next_q.min(0).values - alpha * next_log_prob
    return reward + gamma * (1.0 - terminated) * soft_value


def critic_loss(q: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Sum over the critics of the mean squared TD error; q is (critics, batch).
    ``reduction="none"`` gives the per-sample terms whose mean is the loss.

    Summed, as pytorch_sac and fb/mtrl do (SB3 halves it): the two critics have disjoint
    parameters, so the sum gives each its own MSE gradient, and Adam is invariant to the
    constant factor; with gradient clipping the clip threshold sees twice SB3's norm."""
    per_sample = ((q - target.unsqueeze(0)) ** 2).sum(0)
    return per_sample.mean() if reduction == "mean" else per_sample


def actor_loss(q_pi: torch.Tensor, log_prob: torch.Tensor, alpha: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """E[alpha log pi(a|s) - min_i Q_i(s, a)], a ~ pi (per sample with ``reduction="none"``)."""
    per_sample = alpha * log_prob - q_pi.min(0).values
    return per_sample.mean() if reduction == "mean" else per_sample


def task_loss_weights(log_alpha: torch.Tensor) -> torch.Tensor:
    """Meta-World+'s MT-SAC task weights: softmax(-log alpha) * T (mean 1). Tasks whose
    temperature is low -- their policy has become confident -- weigh more."""
    return torch.softmax(-log_alpha.detach(), 0) * log_alpha.shape[0]


def temperature_loss(log_alpha: torch.Tensor, log_prob: torch.Tensor, target_entropy: float) -> torch.Tensor:
    """E[-log alpha_task (log pi + target entropy)]; log_alpha holds each sample's task's value."""
    return -(log_alpha * (log_prob.detach() + target_entropy)).mean()


class SAC:
    """Owns the agent's target networks, the per-task temperatures and the optimisers.
    With ``conflict.method`` pcgrad/cagrad the shared parameters step along the aggregated
    per-task gradient instead of the plain mean."""

    def __init__(self, agent: Agent, num_tasks: int, act_dim: int, cfg: SACConfig, conflict: ConflictConfig | None = None):
        self.agent, self.cfg, self.num_tasks = agent, cfg, num_tasks
        self.conflict = conflict or ConflictConfig()
        self.shared = {"critic": agent.shared_parameters("critic"), "actor": agent.shared_parameters("actor")}
        device = next(agent.parameters()).device
        # The target holds the encoder too, since the critic reads the encoder's features.
        self.target = nn.ModuleDict({"encoder": copy.deepcopy(agent.encoder), "critic": copy.deepcopy(agent.critic)})
        self.target.requires_grad_(False)
        self.log_alpha = torch.full((num_tasks,), math.log(cfg.initial_alpha), device=device, requires_grad=True)
        self.target_entropy = -float(act_dim) if cfg.target_entropy is None else cfg.target_entropy
        self.critic_params = list(agent.critic.parameters()) + list(agent.encoder.parameters())
        self.actor_params = agent.actor_parameters()
        # Adam with PyTorch's eps (1e-8), as SB3, pytorch_sac and fb/mtrl use it; optax's default
        # (Meta-World+) is the same value.
        self.critic_opt = torch.optim.Adam(self.critic_params, lr=cfg.critic_lr)
        self.actor_opt = torch.optim.Adam(self.actor_params, lr=cfg.actor_lr)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=cfg.alpha_lr)
        self.device_type = device.type
        if cfg.compile:  # in place, so state_dict keys (checkpoints) do not change
            for module in (agent.encoder, agent.actor, agent.critic, agent.actor_encoder, *self.target.values()):
                if module is not None:
                    module.compile()

    def autocast(self) -> torch.autocast:
        """Forward passes of the update: hidden layers in bfloat16 with ``sac.precision=bfloat16``
        (output layers opt out in ``EnsembleMLP``); a no-op with float32."""
        return torch.autocast(self.device_type, dtype=torch.bfloat16, enabled=self.cfg.precision == "bfloat16")

    def _step(self, opt: torch.optim.Optimizer, params: list[torch.Tensor], loss: torch.Tensor,
              per_sample: torch.Tensor | None = None, task: torch.Tensor | None = None, shared: list[torch.Tensor] | None = None) -> None:
        opt.zero_grad(set_to_none=True)
        if self.conflict.method != "none" and shared:
            grads = per_task_gradients(per_sample, task, self.num_tasks, shared)
            loss.backward()  # the task-specific parameters (heads) keep their plain gradient
            direction = aggregate(grads, self.conflict.method, self.conflict.cagrad_c)
            offset = 0
            for p in shared:
                p.grad = direction[offset : offset + p.numel()].view_as(p).clone()
                offset += p.numel()
        else:
            loss.backward()
        if self.cfg.max_grad_norm is not None and params:
            nn.utils.clip_grad_norm_(params, self.cfg.max_grad_norm)
        opt.step()

    @torch.no_grad()
    def _critic_target(self, batch: Batch, alpha: torch.Tensor) -> torch.Tensor:
        """Soft Bellman target from the target encoder + critics."""
        agent, task = self.agent, batch.task
        next_action, next_log_prob = agent.actor.sample(agent.actor_features(batch.next_obs, task), task)
        next_q = self.target["critic"](self.target["encoder"](batch.next_obs, task), next_action, task)
        return critic_target(batch.reward, batch.terminated, next_q, next_log_prob, alpha, self.cfg.gamma)

    def critic_terms(self, batch: Batch, alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample critic loss (its mean is the loss) and the online Q values."""
        q = self.agent.critic(self.agent.encoder(batch.obs, batch.task), batch.action, batch.task)
        return critic_loss(q, self._critic_target(batch, alpha), reduction="none"), q

    def actor_terms(self, obs: torch.Tensor, task: torch.Tensor, alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample actor loss and log pi of the sampled actions. The actor reads its own
        encoder's features (or the critic encoder's, see ``Agent``); the critics judge the
        action on their own encoder's features, which the actor loss does not train unless
        ``agent.actor_encoder=critic``."""
        agent = self.agent
        actor_features = agent.actor_features(obs, task)
        action, log_prob = agent.actor.sample(actor_features, task)
        if agent.actor_encoder is None:
            critic_features = actor_features
        else:
            with torch.no_grad():
                critic_features = agent.encoder(obs, task)
        # The critic is a fixed function here: recording it without parameter gradients
        # skips the critic weight-gradient matmuls that the actor step would throw away.
        agent.critic.requires_grad_(False)
        q_pi = agent.critic(critic_features, action, task)
        agent.critic.requires_grad_(True)
        return actor_loss(q_pi, log_prob, alpha, reduction="none"), log_prob

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One gradient step on critics, actor and temperatures. Returns detached metrics."""
        task = batch.task
        alpha = self.log_alpha.detach().exp()[task]
        # sac.task_weights: each sample's critic and actor terms weighted by its task's weight.
        weight = task_loss_weights(self.log_alpha)[task] if self.cfg.task_weights else None

        # Critic (and its encoder): regress both critics on the soft Bellman target.
        with self.autocast():
            critic_per_sample, q = self.critic_terms(batch, alpha)
        if weight is not None:
            critic_per_sample = critic_per_sample * weight
        loss_critic = critic_per_sample.mean()
        self._step(self.critic_opt, self.critic_params, loss_critic, critic_per_sample, task, self.shared["critic"])

        # Actor (and its encoder), judged by the freshly updated critics.
        with self.autocast():
            actor_per_sample, log_prob = self.actor_terms(batch.obs, task, alpha)
        if weight is not None:
            actor_per_sample = actor_per_sample * weight
        loss_actor = actor_per_sample.mean()
        self._step(self.actor_opt, self.actor_params, loss_actor, actor_per_sample, task, self.shared["actor"])

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

    def measure_conflicts(self, batch: Batch) -> dict[str, ConflictStats]:
        """Per-task gradients of the critic and actor losses on the shared parameters of the
        current networks (one backward per task; no parameter or optimiser changes)."""
        alpha = self.log_alpha.detach().exp()[batch.task]
        with self.autocast():
            terms = {"critic": self.critic_terms(batch, alpha)[0], "actor": self.actor_terms(batch.obs, batch.task, alpha)[0]}
        return {
            part: conflict_stats(per_task_gradients(per_sample, batch.task, self.num_tasks, self.shared[part]))
            for part, per_sample in terms.items()
        }

    @torch.no_grad()
    def soft_update(self) -> None:
        """target <- tau * online + (1 - tau) * target; the encoder with ``sac.encoder_tau``
        (default: tau, as Meta-World+; fb/mtrl, after SAC-AE, uses 0.05 for its encoder)."""
        encoder_tau = self.cfg.tau if self.cfg.encoder_tau is None else self.cfg.encoder_tau
        for name, tau in (("encoder", encoder_tau), ("critic", self.cfg.tau)):
            for t, o in zip(self.target[name].parameters(), getattr(self.agent, name).parameters()):
                t.lerp_(o, tau)

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
