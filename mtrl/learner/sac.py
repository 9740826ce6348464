"""Multi-task soft actor-critic: the losses as plain functions and the update in parts.

``SAC.update(batch)`` (the batch as sampled: raw rewards):

1. reward scaling (``sac.reward_scaling=returns``): r / d_task (mtrl/learner/reward_scale.py);
2. the critic's per-sample losses, from which ``LossTerms.prepare`` (mtrl/learner/loss_terms.py)
   decides this update's per-sample weights and PaCo's task mask (``sac.task_loss_mask=total``:
   from PaCo's total loss, ``total_terms``);
3. ``update_critic``, ``update_actor``, ``update_alpha``: each turns its per-sample terms
   into one loss through ``LossTerms`` (the multi-task levers, composed there) and takes
   one gradient step (``_step``: backward, with ``conflict.method``'s aggregation of the
   per-task gradients on the shared parameters, then clip and the optimiser step), and
   returns its logs;
4. the target networks' soft update, and PaCo's reset of the masked tasks.

Temperatures are one tensor ``log_alpha`` of shape (num_tasks,); every sample uses its
own task's alpha, and since a batch holds the same number of samples per task, the
temperature loss of task t only moves alpha_t. With ``sac.temperature=shared`` (BRC's code)
``log_alpha`` has shape (1,), one alpha for every task, trained by alpha (H - H*).
``sac.log_alpha_min`` / ``sac.log_alpha_max`` bound it as PaCo's reference does: the losses read
it clamped below (``effective_log_alpha``), and it is clipped above after each temperature step.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from mtrl.config import ConflictConfig, SACConfig
from mtrl.hardware import resolve_precision
from mtrl.learner.agent import Agent
from mtrl.learner.categorical import cross_entropy, project
from mtrl.learner.conflict import ConflictStats, aggregated_backward, conflict_stats, per_task_gradients
from mtrl.learner.hooks import is_categorical
from mtrl.learner.loss_terms import LossTerms, UpdateTerms, exploded_tasks, kept_mean, sanitised, task_loss_weights  # noqa: F401  (re-exported: trainer, tests)
from mtrl.learner.replay import Batch
from mtrl.learner.reward_scale import ReturnScale
from mtrl.learner.task_weighting import task_means

if TYPE_CHECKING:
    from mtrl.learner.distillation import Teachers

SKIPPED = "divergence/skipped_steps"


def critic_target(
    reward: torch.Tensor,
    terminated: torch.Tensor,
    next_q: torch.Tensor,
    next_log_prob: torch.Tensor,
    alpha: torch.Tensor,
    gamma: float | torch.Tensor,
) -> torch.Tensor:
    """y = r + gamma (1 - terminated) (min_i Q'_i(s', a') - alpha log pi(a'|s')).

    A time-limit truncation is *not* ``terminated``: its next state is bootstrapped. For an
    n-step return r is the discounted sum and ``gamma`` each sample's gamma^k.
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


def actor_loss(
    q_pi: torch.Tensor, log_prob: torch.Tensor, alpha: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    """E[alpha log pi(a|s) - min_i Q_i(s, a)], a ~ pi (per sample with ``reduction="none"``)."""
    per_sample = alpha * log_prob - q_pi.min(0).values
    return per_sample.mean() if reduction == "mean" else per_sample


def temperature_loss(
    log_alpha: torch.Tensor, log_prob: torch.Tensor, target_entropy: float, reduction: str = "mean"
) -> torch.Tensor:
    """E[-log alpha_task (log pi + target entropy)]; log_alpha holds each sample's task's value
    (per sample with ``reduction="none"``)."""
    per_sample = -(log_alpha * (log_prob.detach() + target_entropy))
    return per_sample.mean() if reduction == "mean" else per_sample


def shared_temperature_loss(log_alpha: torch.Tensor, entropy: torch.Tensor, target_entropy: float) -> torch.Tensor:
    """alpha (H - H*): BRC's temperature loss (jaxrl/agent/update.py ``update_temperature``),
    one alpha = exp(log_alpha) for every task, H the batch's mean entropy (a constant here).
    Its gradient in log alpha is alpha (H - H*), where the per-task loss's is (H_t - H*)."""
    return log_alpha.exp() * (entropy.detach() - target_entropy)


class SAC:
    """Owns the agent's target networks, the per-task temperatures, the optimisers, the
    multi-task levers' state (mtrl/learner/loss_terms.py) and the reward scale. With
    ``conflict.method`` pcgrad/cagrad the shared parameters step along the aggregated
    per-task gradient instead of the plain mean.

    Divergence guards (``update`` reports both):

    - an optimiser step whose loss or gradient norm is not finite is skipped (gradients
      zeroed, ``opt.step()`` not called, so parameters and Adam's state stay as they were)
      and counted in ``divergence/skipped_steps``;
    - a task whose mean critic loss in the batch is not finite, or whose mean loss
      (``sac.task_loss_mask``: the critic's or PaCo's total) is above
      ``sac.task_loss_threshold`` (PaCo's mask_extreme_task, Sun et al. 2022; off by default),
      is left out of this update's critic, actor and temperature losses, then reset
      (``reset_tasks``, as ``sac.task_reset`` says). ``divergence/masked_tasks`` counts them;
      ``last_masked`` holds the (num_tasks,) bool mask of the last update. If every task in
      the batch is masked the update is skipped entirely (nothing reset).

    With ``sac.reward_scaling=returns`` the trainer reports each env step's rewards
    (``observe_rewards``; ``num_slots``: the env's slots) and ``update`` divides a batch's
    rewards by their task's divisor (mtrl/learner/reward_scale.py); the replay keeps raw rewards.
    """

    def __init__(
        self,
        agent: Agent,
        num_tasks: int,
        act_dim: int,
        cfg: SACConfig,
        conflict: ConflictConfig | None = None,
        teachers: Teachers | None = None,
        distill_weight: float = 1.0,
        num_slots: int | None = None,
    ):
        self.agent, self.cfg, self.num_tasks = agent, cfg, num_tasks
        self.conflict = conflict or ConflictConfig()
        self.shared = {"critic": agent.shared_parameters("critic"), "actor": agent.shared_parameters("actor")}
        device = next(agent.parameters()).device
        # The target holds the encoder too, since the critic reads the encoder's features.
        self.target = nn.ModuleDict({"encoder": copy.deepcopy(agent.encoder), "critic": copy.deepcopy(agent.critic)})
        self.target.requires_grad_(False)
        self.categorical = is_categorical(agent.critic)  # trained by cross-entropy (mtrl/learner/categorical.py)
        self.shared_alpha = cfg.temperature == "shared"
        self.log_alpha = torch.full(
            (1 if self.shared_alpha else num_tasks,), math.log(cfg.initial_alpha), device=device, requires_grad=True
        )
        self.target_entropy = -float(act_dim) if cfg.target_entropy is None else cfg.target_entropy
        self.critic_params = [p for p in [*agent.critic.parameters(), *agent.encoder.parameters()] if p.requires_grad]
        self.actor_params = agent.actor_parameters()
        # Adam with PyTorch's eps (1e-8), as SB3, pytorch_sac, fb/mtrl and BRC's code (optax's
        # default) use it; Meta-World+ alone sets 1e-5 (metaworld_algorithms/config/optim.py,
        # after SBX): kept, not measured (docs/AGENTS.md).
        # sac.weight_decay > 0: AdamW's decoupled decay on actor and critics (BRC's optimiser).
        # foreach: one batched kernel per step instead of torch's per-parameter loop on the CPU,
        # bit-identical results, 6-8 % faster updates (benchmarks/learner.py --adam).
        adam = (
            (lambda params, lr: torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay, foreach=True))
            if cfg.weight_decay
            else (lambda params, lr: torch.optim.Adam(params, lr=lr, foreach=True))
        )
        self.critic_opt = adam(self.critic_params, cfg.critic_lr)
        self.actor_opt = adam(self.actor_params, cfg.actor_lr)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=cfg.alpha_lr, betas=(cfg.alpha_beta1, 0.999))
        self.task_blocks = agent.task_specific_blocks()
        # Adam's step count at each task slice's last reset (reset_tasks), -1 where not (or no
        # longer) tracked: their bias correction counts from there (_bias_correct_reset_slices).
        self.reset_at: dict[str, torch.Tensor] = {}
        # each reset-able parameter by name: (parameter, its per-task view, the task axis)
        named = dict(agent.named_parameters())
        self._task_slices = {b.name: (named[b.name], b.view, b.dim) for b in self.task_blocks}
        if not self.shared_alpha:  # a shared temperature is nobody's to reset
            self._task_slices["log_alpha"] = (self.log_alpha, lambda x, n: x, 0)
        # The levers: task weights, task weighting, soft sharing's penalties, distillation
        # (distill_weight * KL(teacher || student) on the teachers' tasks' samples).
        self.terms = LossTerms(agent, cfg, num_tasks, device, teachers, distill_weight)
        self.weighting, self.penalized = self.terms.weighting, self.terms.penalized  # read by the trainer's logs
        self.reward_scale = (
            ReturnScale(num_tasks, num_slots or num_tasks, cfg.gamma, cfg.reward_scale_bound)
            if cfg.reward_scaling == "returns"
            else None
        )
        self._divisors: torch.Tensor | None = None  # the last update's reward divisors
        self.last_masked = torch.zeros(num_tasks, dtype=torch.bool, device=device)
        self._masks_total_loss = cfg.task_loss_threshold is not None and cfg.task_loss_mask == "total"
        self.device_type = device.type
        self.precision, _ = resolve_precision(cfg.precision, device)  # auto: what the hardware runs fast
        if cfg.compile:  # in place, so state_dict keys (checkpoints) do not change
            for module in (agent.encoder, agent.actor, agent.critic, agent.actor_encoder, *self.target.values()):
                if module is not None:
                    module.compile()

    def task_log_alpha(self) -> torch.Tensor:
        """(num_tasks,) each task's log temperature: ``log_alpha`` itself, or its one shared value
        repeated (``sac.temperature=shared``)."""
        return self.log_alpha.expand(self.num_tasks)

    def effective_log_alpha(self) -> torch.Tensor:
        """(num_tasks,) log alpha as the losses read it: clamped below at ``sac.log_alpha_min``
        (PaCo's ``_get_log_alpha``: clamp_min, so no gradient below it), else ``task_log_alpha``."""
        low = self.cfg.log_alpha_min
        return self.task_log_alpha() if low is None else self.task_log_alpha().clamp(min=low)

    def alphas(self) -> torch.Tensor:
        """(num_tasks,) each task's temperature as the losses use it (detached)."""
        return self.effective_log_alpha().detach().exp()

    def autocast(self) -> torch.autocast:
        """Forward passes of the update: hidden layers in bfloat16 with ``sac.precision=bfloat16``
        (output layers opt out in ``EnsembleMLP``); a no-op with float32."""
        return torch.autocast(self.device_type, dtype=torch.bfloat16, enabled=self.precision == "bfloat16")

    # --- reward scaling (sac.reward_scaling=returns) ------------------------------------

    def observe_rewards(
        self, tasks: np.ndarray, reward: np.ndarray, terminated: np.ndarray, truncated: np.ndarray
    ) -> None:
        """One env step's rewards of each slot (raw, as stored in the replay); a no-op
        without reward scaling."""
        if self.reward_scale is not None:
            self.reward_scale.observe(tasks, reward, terminated, truncated)

    def drop_episodes(self, slots: np.ndarray) -> None:
        """Forget the running episodes of ``slots`` (new episodes start there)."""
        if self.reward_scale is not None:
            self.reward_scale.drop(slots)

    def reward_divisors(self) -> np.ndarray | None:
        """(T,) each task's current reward divisor (None without reward scaling)."""
        return None if self.reward_scale is None else self._current_divisors().cpu().numpy()

    def _current_divisors(self) -> torch.Tensor:
        return self.reward_scale.divisors(self.alphas(), self.target_entropy)

    @staticmethod
    def _scaled(batch: Batch, divisors: torch.Tensor) -> Batch:
        return batch._replace(reward=batch.reward / divisors[batch.task])

    @torch.no_grad()
    def _critic_target(self, batch: Batch, alpha: torch.Tensor) -> torch.Tensor:
        """Soft Bellman target from the target encoder + critics: (B,) values, or for a
        categorical critic the (B, bins) target distribution (BRC: the target members' mean
        distribution, its atoms moved by the soft Bellman backup and projected back)."""
        agent, task = self.agent, batch.task
        gamma = self.cfg.gamma if batch.discount is None else batch.discount  # gamma^k of n-step returns
        next_action, next_log_prob = agent.actor.sample(agent.actor_features(batch.next_obs, task), task)
        target_features = self.target["encoder"](batch.next_obs, task)
        critic = self.target["critic"]
        if self.categorical:
            next_probs = critic.probs(critic.logits(target_features, next_action, task))
            atoms = critic_target(
                batch.reward.unsqueeze(-1),
                batch.terminated.unsqueeze(-1),
                critic.support.view(1, 1, -1),
                next_log_prob.unsqueeze(-1),
                alpha.unsqueeze(-1),
                gamma.unsqueeze(-1) if torch.is_tensor(gamma) else gamma,
            )
            return project(atoms, next_probs, critic.support)
        next_q = critic(target_features, next_action, task)
        return critic_target(batch.reward, batch.terminated, next_q, next_log_prob, alpha, gamma)

    def critic_terms(
        self, batch: Batch, alpha: torch.Tensor, target: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample critic loss (its mean is the loss) and the online Q values: the twin
        MSE, or for a categorical critic the members' cross-entropies to the target
        (``target``: the batch's ``_critic_target``, computed here if not given)."""
        target = self._critic_target(batch, alpha) if target is None else target
        critic, features = self.agent.critic, self.agent.encoder(batch.obs, batch.task)
        if self.categorical:
            logits = critic.logits(features, batch.action, batch.task)
            q = (critic.probs(logits.detach()) @ critic.support).unsqueeze(0)
            return cross_entropy(logits.float(), target), q
        q = critic(features, batch.action, batch.task)
        return critic_loss(q, target, reduction="none"), q

    def total_terms(self, batch: Batch, alpha: torch.Tensor, critic_per_sample: torch.Tensor) -> torch.Tensor:
        """PaCo's per-sample total loss, which its mask thresholds (TToTMooN/paco-mtrl
        paco_mtsac.py, ``calc_loss`` and ``_convert_loss_into_task_loss``): the actor, critic and
        temperature losses as its ALF code values them, averaged over its 2-step minibatches in
        which the TD loss fills the first step only, i.e. 0.5 critic + 0.5 |dQ/da|^2 + alpha
        log pi + log alpha (-log pi - target entropy), the actor's terms at the update's start
        (an actor and a critic forward pass, and the critic's backward to the action)."""
        agent, task = self.agent, batch.task
        with torch.no_grad():
            action, log_prob = agent.actor.sample(agent.actor_features(batch.obs, task), task)
            features = agent.encoder(batch.obs, task)
        action = action.detach().requires_grad_(True)
        agent.critic.requires_grad_(False)  # only dQ/da: no weight gradients recorded
        with torch.enable_grad():
            (dqda,) = torch.autograd.grad(agent.critic(features, action, task).min(0).values.sum(), action)
        agent.critic.requires_grad_(True)
        log_alpha = self.effective_log_alpha().detach()[task]
        actor = 0.5 * dqda.float().pow(2).sum(-1) + alpha * log_prob.float()
        temperature = log_alpha * (-log_prob.float() - self.target_entropy)
        return 0.5 * critic_per_sample.detach().float() + actor + temperature

    def actor_terms(
        self, obs: torch.Tensor, task: torch.Tensor, alpha: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
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

    # --- the update -----------------------------------------------------------------------

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One gradient step on critics, actor and temperatures, then the target networks'
        soft update. ``batch`` holds raw rewards. Returns detached metrics,
        ``divergence/skipped_steps`` (of the three steps) and ``divergence/masked_tasks``
        among them; ``last_masked`` is this update's (num_tasks,) mask (see the class)."""
        if self.reward_scale is not None:  # r / d_task, with the temperatures before this update
            self._divisors = self._current_divisors()
            batch = self._scaled(batch, self._divisors)
        alpha = self.alphas()[batch.task]
        with self.autocast():
            target = self._critic_target(batch, alpha)
            first_pass = self.critic_terms(batch, alpha, target)
            total = self.total_terms(batch, alpha, first_pass[0]) if self._masks_total_loss else None
        terms = self.terms.prepare(self.task_log_alpha(), first_pass[0], batch.task, total)  # weights, PaCo's mask
        self.last_masked = terms.masked
        if terms.keep is not None:
            if not bool(terms.keep.any()):
                return self._skipped_update(terms.masked)
            # The critic's terms are recomputed on the batch with the masked samples zeroed
            # (see sanitised): a second forward pass, only in the (rare) updates that mask a task.
            batch, first_pass, target = sanitised(batch, terms.keep), None, None
        critic = self.update_critic(batch, alpha, terms, first_pass, target)
        actor, log_prob = self.update_actor(batch, alpha, terms)
        temperature = self.update_alpha(batch.task, log_prob, terms.keep)
        self.soft_update()
        if terms.keep is not None:
            self.reset_tasks(terms.masked)
        skipped = critic.pop(SKIPPED) + actor.pop(SKIPPED) + temperature.pop(SKIPPED)  # of the three steps
        masked = terms.masked.sum().float()
        return {**critic, **actor, **temperature, SKIPPED: skipped, "divergence/masked_tasks": masked}

    def update_critic(
        self,
        batch: Batch,
        alpha: torch.Tensor,
        terms: UpdateTerms,
        first_pass: tuple[torch.Tensor, torch.Tensor] | None = None,
        target: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """The critics (and their encoder) regress on the soft Bellman target; ``first_pass``:
        this batch's ``critic_terms`` if already computed, ``target``: its target if already
        computed. FAMO (``sac.famo_update=same_batch``) then learns from the same batch's
        critic terms after the step (the reference's ``update_critic``)."""
        weighting = self.terms.weighting
        with self.autocast():
            if target is None and (first_pass is None or weighting.learns_after_step):
                target = self._critic_target(batch, alpha)
            per_sample, q = first_pass if first_pass is not None else self.critic_terms(batch, alpha, target)
        per_sample, loss = self.terms.critic(per_sample, terms)
        skipped = self._step(
            self.critic_opt, self.critic_params, loss, per_sample, batch.task, self.shared["critic"], keep=terms.keep
        )
        if weighting.learns_after_step:
            with torch.no_grad(), self.autocast():
                weighting.after_step(self.critic_terms(batch, alpha, target)[0], batch.task)
        q = q.detach()
        return {
            "loss/critic": loss.detach(),
            "train/q_mean": q.mean() if terms.keep is None else kept_mean(q.mean(0), terms.keep),
            SKIPPED: torch.tensor(float(skipped)),
            # (num_tasks,) each: the trainer logs them per task (tasks absent from the batch: 0)
            "per_task/critic_loss": task_means(per_sample.detach(), batch.task, self.num_tasks)[0],
            "per_task/q_mean": task_means(q.mean(0), batch.task, self.num_tasks)[0],
        }

    def update_actor(
        self, batch: Batch, alpha: torch.Tensor, terms: UpdateTerms
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The actor (and its encoder) against the freshly updated critics. Returns the logs
        and log pi of the sampled actions (the temperatures' step reads it)."""
        with self.autocast():
            per_sample, log_prob = self.actor_terms(batch.obs, batch.task, alpha)
        per_sample, loss, logs = self.terms.actor(per_sample, terms, self.agent, batch.obs, batch.task)
        skipped = self._step(
            self.actor_opt, self.actor_params, loss, per_sample, batch.task, self.shared["actor"], keep=terms.keep
        )
        return {
            "loss/actor": loss.detach(),
            "train/entropy": -kept_mean(log_prob.detach(), terms.keep),
            SKIPPED: torch.tensor(float(skipped)),
            **logs,
        }, log_prob

    def update_alpha(
        self, task: torch.Tensor, log_prob: torch.Tensor, keep: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        """The temperatures: one per task, each driven only by its task's (kept) samples, or the
        shared one (``sac.temperature=shared``) by the mean entropy of the kept samples; then
        clipped to ``sac.log_alpha_max`` (PaCo's ``after_update``)."""
        log_alpha = self.effective_log_alpha()[task]
        if self.shared_alpha:
            loss = shared_temperature_loss(self.log_alpha[0], -kept_mean(log_prob, keep), self.target_entropy)
        elif keep is None:
            loss = temperature_loss(log_alpha, log_prob, self.target_entropy)
        else:
            loss = kept_mean(temperature_loss(log_alpha, log_prob, self.target_entropy, reduction="none"), keep)
        skipped = self._step(self.alpha_opt, [self.log_alpha], loss, clip=False)
        if self.cfg.log_alpha_max is not None:
            with torch.no_grad():
                self.log_alpha.clamp_(max=self.cfg.log_alpha_max)
        return {"loss/alpha": loss.detach(), SKIPPED: torch.tensor(float(skipped))}

    def _step(
        self,
        opt: torch.optim.Optimizer,
        params: list[torch.Tensor],
        loss: torch.Tensor,
        per_sample: torch.Tensor | None = None,
        task: torch.Tensor | None = None,
        shared: list[torch.Tensor] | None = None,
        clip: bool = True,
        keep: torch.Tensor | None = None,
    ) -> bool:
        """The gradient step on ``params``: backward (with ``conflict.method``'s aggregation of
        the per-task gradients of ``per_sample`` on the ``shared`` parameters, ``keep``: the
        unmasked samples), then clipping (``clip=False``: never, the temperatures) and the
        optimiser step. Returns True when the step was skipped because the loss or the total
        gradient norm is not finite."""
        opt.zero_grad(set_to_none=True)
        if self.conflict.method != "none" and shared:
            aggregated_backward(
                loss, per_sample, task, self.num_tasks, shared, self.conflict.method, self.conflict.cagrad_c, keep
            )
        else:
            loss.backward()
        if clip and self.cfg.max_grad_norm is not None:
            norm = nn.utils.clip_grad_norm_(params, self.cfg.max_grad_norm)  # the norm before clipping
        else:
            norm = nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
        # One host sync per step: Python decides whether to step. Fine on the CPU; a sync-free
        # variant (for the GPU) would fold the check into the step, e.g. scaling the gradients
        # by torch.where(finite, 1, 0) and restoring Adam's state, or a fused masked step.
        if not bool(torch.isfinite(loss) & torch.isfinite(norm)):
            opt.zero_grad(set_to_none=True)
            return True
        opt.step()
        if self.reset_at:
            self._bias_correct_reset_slices(opt)
        return False

    def _skipped_update(self, masked: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every task in the batch masked: no step, no soft update, no reset (there is no
        healthy task to reset towards). Losses are reported as NaN."""
        nan = torch.tensor(float("nan"))
        return {
            "loss/critic": nan,
            "loss/actor": nan,
            "loss/alpha": nan,
            "train/q_mean": nan,
            "train/entropy": nan,
            SKIPPED: torch.tensor(3.0),
            "divergence/masked_tasks": masked.sum().float(),
        }

    @torch.no_grad()
    def reset_tasks(self, masked: torch.Tensor) -> None:
        """Resets the tasks in ``masked`` ((num_tasks,) bool) as ``sac.task_reset`` says:
        ``convex`` (PaCo's, ``_reset_convex``) or ``mean`` (``_reset_to_mean``)."""
        masked = masked.to(self.log_alpha.device)
        if self.cfg.task_reset == "convex":
            self._reset_convex(masked)
        else:
            self._reset_to_mean(masked)

    def _reset_convex(self, masked: torch.Tensor) -> None:
        """PaCo's reset (TToTMooN/paco-mtrl paco_mtsac.py ``after_update``,
        ``reset_task_method="interpolate"``): each masked task's task-specific slices
        (``Agent.task_specific_blocks``) become sum_j lambda_j (unmasked task j's), lambda =
        rand / its sum (one draw of torch's CPU generator per masked task, shared by all of that
        task's slices as the reference's one task encoder shares it), in the online networks
        and, with the same values, in the target networks. Temperatures and Adam's state are
        left as they are, as there. With no unmasked task nothing changes."""
        healthy, bad = (~masked).nonzero().squeeze(1), masked.nonzero().squeeze(1)
        if not len(healthy):
            return
        lam = F.normalize(torch.rand(len(bad), len(healthy)), p=1, dim=-1).to(masked.device)
        mix = torch.eye(self.num_tasks, device=masked.device)  # new slices = mix @ old along the task axis
        mix[bad] = 0.0
        mix[bad.unsqueeze(1), healthy] = lam
        online, target = dict(self.agent.named_parameters()), dict(self.target.named_parameters())
        for block in self.task_blocks:
            source = block.view(online[block.name], self.num_tasks)
            mixed = torch.tensordot(mix, source.movedim(block.dim, 0), dims=1).movedim(0, block.dim)
            on_axis = masked.view([-1 if d == block.dim else 1 for d in range(source.dim())])
            source.copy_(torch.where(on_axis, mixed, source))
            if block.name in target:  # the target's slices take the online values
                slices = block.view(target[block.name], self.num_tasks)
                slices.copy_(torch.where(on_axis, source, slices))

    def _reset_to_mean(self, masked: torch.Tensor) -> None:
        """mtrl's reset of the tasks in ``masked``: each task-specific slice
        (``Agent.task_specific_blocks``) of a masked task is set to the mean of the unmasked
        tasks' slices, in the online networks and, with the same values, in the target
        networks; the Adam moments of those slices are zeroed; log_alpha of a masked task
        becomes the unmasked tasks' mean log_alpha, its moments zeroed too (per-task
        temperatures only: a shared one is left alone). Adam's step count is per tensor, so
        each reset slice's bias correction is restarted by hand after every step
        (``_bias_correct_reset_slices``): it then moves as a fresh Adam would (without that,
        up to ~3x the usual step).

        With no unmasked task (a single task, or all masked) there is nothing to interpolate
        from: the network parameters are left alone and log_alpha of the masked tasks goes
        back to log(initial_alpha) (its moments zeroed). Vectorised over tasks: one sync here,
        and this runs only in updates that mask a task."""
        keep = ~masked
        n_keep = int(keep.sum())
        online, target = dict(self.agent.named_parameters()), dict(self.target.named_parameters())

        def on_task_axis(mask: torch.Tensor, view: torch.Tensor, dim: int) -> torch.Tensor:
            shape = [1] * view.dim()
            shape[dim] = self.num_tasks
            return mask.view(shape)

        def reset(
            name: str,
            param: torch.Tensor,
            view: Callable[[torch.Tensor], torch.Tensor],
            dim: int,
            fallback: float | None = None,
        ) -> None:
            """Masked tasks' slices of ``param`` <- mean of the kept tasks' (or ``fallback``);
            their Adam moments <- 0, their bias correction restarted."""
            slices = view(param)
            m, k = on_task_axis(masked, slices, dim), on_task_axis(keep, slices, dim)
            if n_keep:
                value = torch.where(k, slices, 0.0).sum(dim, keepdim=True) / n_keep
            else:
                value = torch.full_like(slices, fallback)
            slices.copy_(torch.where(m, value, slices))
            for opt in (self.critic_opt, self.actor_opt, self.alpha_opt):
                state = opt.state.get(param, {})
                for key, moment in state.items():
                    if key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
                        moment_slices = view(moment)
                        moment_slices.copy_(torch.where(m, 0.0, moment_slices))
                if "step" in state:
                    since = self.reset_at.get(name, torch.full((self.num_tasks,), -1.0, device=masked.device))
                    self.reset_at[name] = torch.where(masked, float(state["step"]), since)

        for block in self.task_blocks if n_keep else ():

            def view(x: torch.Tensor, block=block) -> torch.Tensor:
                return block.view(x, self.num_tasks)

            reset(block.name, online[block.name], view, block.dim)
            if block.name in target:  # the target's slices take the online values
                target_slices, online_slices = view(target[block.name]), view(online[block.name])
                target_slices.copy_(
                    torch.where(on_task_axis(masked, target_slices, block.dim), online_slices, target_slices)
                )
        if not self.shared_alpha:
            reset("log_alpha", self.log_alpha, lambda x: x, 0, fallback=math.log(self.cfg.initial_alpha))

    @torch.no_grad()
    def _bias_correct_reset_slices(self, opt: torch.optim.Optimizer) -> None:
        """After ``opt``'s step: each reset slice of its parameters moves by Adam's update with
        the bias correction of k = steps since its reset instead of the tensor's step count t
        (the applied update is added back, the wanted one taken). Once beta2^k < 1e-9 the two
        agree to float precision and the slice is no longer tracked."""
        for name, since in list(self.reset_at.items()):
            param, view, dim = self._task_slices[name]
            state = opt.state.get(param)
            if not state or "exp_avg" not in state:
                continue
            group = next(g for g in opt.param_groups if any(p is param for p in g["params"]))
            (b1, b2), lr, eps = group["betas"], group["lr"], group["eps"]
            t = float(state["step"])
            m, v, slices = (view(x, self.num_tasks) for x in (state["exp_avg"], state["exp_avg_sq"], param))
            shape = [1] * m.dim()
            shape[dim] = self.num_tasks
            tracked = since >= 0
            k = torch.where(tracked, t - since, t).clamp(min=1).view(shape)
            applied = lr / (1 - b1**t) * m / (v.sqrt() / math.sqrt(1 - b2**t) + eps)
            wanted = lr / (1 - b1**k) * m / (v.sqrt() / torch.sqrt(1 - b2**k) + eps)
            slices.add_(torch.where(tracked.view(shape), applied - wanted, 0.0))
            done = tracked & (b2 ** (t - since) < 1e-9)
            self.reset_at[name] = torch.where(done, -1.0, since)
            if not bool((self.reset_at[name] >= 0).any()):
                del self.reset_at[name]

    def measure_conflicts(self, batch: Batch) -> dict[str, ConflictStats]:
        """Per-task gradients of the critic and actor losses on the shared parameters of the
        current networks (one backward per task; no parameter or optimiser changes).
        ``batch`` holds raw rewards, scaled as the last update scaled its batch."""
        if self.reward_scale is not None:
            batch = self._scaled(batch, self._divisors if self._divisors is not None else self._current_divisors())
        alpha = self.alphas()[batch.task]
        with self.autocast():
            terms = {
                "critic": self.critic_terms(batch, alpha)[0],
                "actor": self.actor_terms(batch.obs, batch.task, alpha)[0],
            }
        return {
            part: conflict_stats(per_task_gradients(per_sample, batch.task, self.num_tasks, self.shared[part]))
            for part, per_sample in terms.items()
            if self.shared[part]  # soft sharing: nothing shared
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
            "weighting": self.weighting.state_dict(),
            **({"actor_weighting": self.terms.actor_weighting.state_dict()} if self.terms.actor_weighting else {}),
            "reset_at": {name: since.clone() for name, since in self.reset_at.items()},
            **({"reward_scale": self.reward_scale.state_dict()} if self.reward_scale is not None else {}),
        }

    def load_state_dict(self, state: dict) -> None:
        self.agent.load_state_dict(state["agent"])
        self.target.load_state_dict(state["target"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.critic_opt.load_state_dict(state["critic_opt"])
        self.actor_opt.load_state_dict(state["actor_opt"])
        self.alpha_opt.load_state_dict(state["alpha_opt"])
        if "weighting" in state:  # absent from checkpoints written before sac.task_weighting
            self.weighting.load_state_dict(state["weighting"])
        if self.terms.actor_weighting is not None and "actor_weighting" in state:
            self.terms.actor_weighting.load_state_dict(state["actor_weighting"])
        self.reset_at = {name: since.to(self.log_alpha.device) for name, since in state.get("reset_at", {}).items()}
        if self.reward_scale is not None and "reward_scale" in state:  # older checkpoints: TrainingState's
            self.reward_scale.load_state_dict(state["reward_scale"])
