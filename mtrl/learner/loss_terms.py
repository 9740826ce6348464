"""The multi-task levers as loss terms, composed in one place.

SAC's critic and actor steps hand their per-sample losses l_i (sample i of task t_i) to
:meth:`LossTerms.critic` and :meth:`LossTerms.actor`, which return the scalar loss

    loss = sum_{i kept} w_i (l_i + distill.weight * KL_i) / #kept  +  sum of the penalties

- w_i: ``sac.task_weights`` (Meta-World+'s softmax(-log alpha) * T, :func:`task_loss_weights`)
  times ``sac.task_weighting``'s weight of task t_i (mtrl/learner/task_weighting.py, from the critic's
  per-task losses; on the actor's terms as ``sac.task_weighting_actor`` says: the critic's weights,
  the actor's own (uncertainty, from the actor's per-task losses) or none, :func:`actor_weighting`);
- kept: samples of tasks that PaCo's guard did not mask (:func:`exploded_tasks`, on the critic's
  or PaCo's total per-sample loss, ``sac.task_loss_mask``);
- KL_i: distillation from a teacher of task t_i (actor only, mtrl/learner/distillation.py);
- penalties: soft parameter sharing's pull toward the tasks' mean (mtrl/learner/hooks.py's ``Penalized``).

They also return the weighted per-sample terms, which conflict aggregation splits by task.
The critic's weights and the mask are decided once per update, from the first forward pass
(:meth:`LossTerms.prepare`); the actor's own weights in :meth:`LossTerms.actor`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from mtrl.config import SACConfig
from mtrl.learner.agent import Agent
from mtrl.learner.hooks import penalized
from mtrl.learner.replay import Batch
from mtrl.learner.task_weighting import TaskWeighting, task_means

if TYPE_CHECKING:
    from mtrl.learner.distillation import Teachers


def task_loss_weights(log_alpha: torch.Tensor) -> torch.Tensor:
    """Meta-World+'s MT-SAC task weights: softmax(-log alpha) * T (mean 1). Tasks whose
    temperature is low -- their policy has become confident -- weigh more."""
    return torch.softmax(-log_alpha.detach(), 0) * log_alpha.shape[0]


# How each task weighting weighs the actor's terms when sac.task_weighting_actor is null: as
# its reference code (Cranial-XIX/FAMO mtrl_files/uw.py fits the actor its own log-sigma on the
# actor's losses; mtrl_files/famo.py weighs the critic alone). inverse_size has no reference; its
# weights depend only on the batch's counts, the same for both losses.
REFERENCE_ACTOR_WEIGHTING = {"none": "none", "inverse_size": "critic", "uncertainty": "own", "famo": "none"}


def actor_weighting(cfg: SACConfig) -> str:
    """How ``sac.task_weighting`` weighs the actor's terms: critic (the critic's weights), own
    (weights of the same kind learned from the actor's per-task losses) or none."""
    if cfg.task_weighting == "none" or cfg.task_weighting_actor is False:
        return "none"
    return "critic" if cfg.task_weighting_actor else REFERENCE_ACTOR_WEIGHTING[cfg.task_weighting]


def exploded_tasks(
    per_sample: torch.Tensor, task: torch.Tensor, num_tasks: int, threshold: float | None
) -> torch.Tensor:
    """(num_tasks,) bool: tasks whose mean loss (``per_sample``: the critic's, or PaCo's total)
    over their samples in the batch is not finite or above ``threshold`` (PaCo's
    mask_extreme_task; None: only non-finite ones). Tasks absent from the batch are never masked."""
    mean, counts = task_means(per_sample, task, num_tasks)
    bad = ~torch.isfinite(mean)
    if threshold is not None:
        bad |= mean > threshold
    return bad & (counts > 0)


def kept_mean(per_sample: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    """The mean over the kept samples (all of them when ``keep`` is None). ``torch.where``,
    not a 0 weight: a masked sample's term may be NaN, and NaN * 0 is NaN."""
    if keep is None:
        return per_sample.mean()
    return torch.where(keep, per_sample, 0.0).sum() / keep.sum()


def sanitised(batch: Batch, keep: torch.Tensor) -> Batch:
    """The batch with the masked samples' fields zeroed. Their terms are dropped by
    ``torch.where``, but a NaN or inf input would still reach the weight gradients through
    the backward pass (the first layer's x^T delta, or (q - y) * 0); zeros cannot."""

    def clean(x: torch.Tensor) -> torch.Tensor:
        return torch.where(keep.view(-1, *([1] * (x.dim() - 1))), x, torch.zeros((), dtype=x.dtype, device=x.device))

    return Batch(*(x if name == "task" or x is None else clean(x) for name, x in zip(Batch._fields, batch)))


@dataclass
class UpdateTerms:
    """One update's levers: PaCo's mask and the per-sample weights of each loss."""

    masked: torch.Tensor  # (T,) bool: tasks left out of this update
    keep: torch.Tensor | None  # (B,) bool: samples of the other tasks; None when no task is masked
    critic_weight: torch.Tensor | None  # (B,) or None: every sample weighs 1
    actor_weight: torch.Tensor | None


class LossTerms:
    """Owns the levers' state (task weighting's learned weights, the penalised modules, the
    teachers) and composes the losses; see the module docstring."""

    def __init__(
        self,
        agent: Agent,
        cfg: SACConfig,
        num_tasks: int,
        device: torch.device,
        teachers: Teachers | None = None,
        distill_weight: float = 1.0,
    ):
        self.cfg, self.num_tasks = cfg, num_tasks
        self.actor_mode = actor_weighting(cfg)

        def weighting() -> TaskWeighting:
            return TaskWeighting(
                cfg.task_weighting, num_tasks, device, cfg.task_weighting_lr, cfg.famo_weight_decay, cfg.famo_update
            )

        self.weighting = weighting()
        self.actor_weighting = weighting() if self.actor_mode == "own" else None  # the actor's own log-sigma
        self.penalized = {"critic": penalized(agent.critic), "actor": penalized(agent.actor)}
        self.teachers, self.distill_weight = teachers, distill_weight

    def prepare(
        self,
        log_alpha: torch.Tensor,
        critic_per_sample: torch.Tensor,
        task: torch.Tensor,
        mask_per_sample: torch.Tensor | None = None,
    ) -> UpdateTerms:
        """This update's weights and mask, from the critic's per-sample losses (the mask from
        ``mask_per_sample`` where given: PaCo's total loss). Task weighting learns here (its
        own optimiser step, before the networks')."""
        weight = actor_weight = None
        if self.cfg.task_weights:
            weight = actor_weight = task_loss_weights(log_alpha)[task]
        if self.weighting.kind != "none":
            weight = self.weighting.weights(critic_per_sample, task)[task] * (1.0 if weight is None else weight)
            if self.actor_mode == "critic":
                actor_weight = weight
        loss = critic_per_sample if mask_per_sample is None else mask_per_sample
        masked = exploded_tasks(loss, task, self.num_tasks, self.cfg.task_loss_threshold)
        keep = ~masked[task] if bool(masked.any()) else None  # one host sync per update
        return UpdateTerms(masked, keep, weight, actor_weight)

    def critic(self, per_sample: torch.Tensor, terms: UpdateTerms) -> tuple[torch.Tensor, torch.Tensor]:
        """(the weighted per-sample terms, the critic's scalar loss)."""
        return self._compose(per_sample, terms.keep, terms.critic_weight, "critic")

    def actor(
        self, per_sample: torch.Tensor, terms: UpdateTerms, agent: Agent, obs: torch.Tensor, task: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """(the weighted per-sample terms, the actor's scalar loss, logs: ``distill/kl``, the
        mean KL over the taught tasks' samples, with teachers). The actor's own task weighting
        learns here, from these terms (its optimiser step, before the actor's)."""
        logs = {}
        if self.teachers is not None:
            kl = self.teachers.kl(agent, obs, task)
            per_sample = per_sample + self.distill_weight * kl
            taught = self.teachers.taught(task)
            logs["distill/kl"] = (kl.detach() * taught).sum() / taught.sum().clamp(min=1)
        weight = terms.actor_weight
        if self.actor_weighting is not None:  # masked tasks count as absent (a NaN mean)
            seen = per_sample if terms.keep is None else torch.where(terms.keep, per_sample, torch.nan)
            own = self.actor_weighting.weights(seen, task)[task]
            weight = own if weight is None else own * weight
        return *self._compose(per_sample, terms.keep, weight, "actor"), logs

    def _compose(
        self, per_sample: torch.Tensor, keep: torch.Tensor | None, weight: torch.Tensor | None, part: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if keep is not None:
            per_sample = torch.where(keep, per_sample, 0.0)
        if weight is not None:
            per_sample = per_sample * weight
        return per_sample, kept_mean(per_sample, keep) + sum(m.penalty() for m in self.penalized[part])
