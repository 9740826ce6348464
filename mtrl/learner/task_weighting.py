"""Per-task loss weights (``sac.task_weighting``): how much each task's samples count in the
critic and actor losses.

- ``none``: every sample counts the same.
- ``inverse_size``: each task's weight is inverse to its share of the batch, N / (T n_t), so
  every task's loss counts the same however the batch was drawn (with
  ``train.batch_allocation=scheduler`` the batch follows what the scheduler collected; with
  the default equal allocation the weights are 1).
- ``uncertainty`` (Kendall, Gal & Cipolla, CVPR 2018): a learned log-variance s_t per task,
  trained on 1/2 (exp(-s_t) L_t + s_t) with L_t the task's mean loss; the weight is
  exp(-s_t), which tends to 1 / L_t. As the FAMO repository's MT10 agent (Cranial-XIX/FAMO
  mtrl_files/uw.py) the critic and the actor each fit their own s on their own losses. The
  actor's loss is negative once Q outweighs alpha log pi, and then 1/2 (exp(-s) L + s) has no
  minimum: s falls at Adam's pace until Adam's second moment overflows (near s = -43 for
  L = -100) and stops it there for good, in the reference as here (``_freeze_overflowed``);
  such tasks end with weights of the same order, and a task whose actor loss stays positive
  with almost none.
- ``famo`` (Liu, Liu, Jin, Stone & Liu, "FAMO: Fast Adaptive Multitask Optimization",
  NeurIPS 2023): logits xi, z = softmax(xi); the loss sum_t z_t log L_t / c, c = sum_t z_t / L_t,
  i.e. weights z_t / (c L_t) on L_t; xi follows the change in log losses across the critic's
  step (``sac.famo_update``: on the update's own batch, as the reference's MT10 agent,
  mtrl_files/famo.py ``update_critic``, or between one update's batch and the next), so tasks
  whose loss falls slowly gain weight.

Weights are computed from the critic's per-task losses and, as ``sac.task_weighting_actor``
says, also applied to the actor's terms or replaced there by the actor's own (uncertainty: a
second ``TaskWeighting`` fed the actor's per-task losses), scaled so that the batch's samples
weigh 1 on average (the loss keeps its scale). Weights are constants in the networks' gradients.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F

from mtrl.config import TASK_WEIGHTINGS

FAMO_EPS = 1e-8
# The logits' Adam rate in the reference code's MT10 agents (Cranial-XIX/FAMO): mtrl_files/uw_state_sac.yaml
# (w_lr: 0.01) and run.sh's FAMO line (wlr=0.025, over famo_state_sac.yaml's 0.01).
REFERENCE_LR = {"uncertainty": 0.01, "famo": 0.025}


def task_means(per_sample: torch.Tensor, task: torch.Tensor, num_tasks: int) -> tuple[torch.Tensor, torch.Tensor]:
    """((T, ...) mean of ``per_sample`` (B, ...) over each task's samples (0 where absent),
    (T,) counts); detached, in float32 at least. The one per-task mean of the package (also
    mtrl/training/introspection.py's)."""
    values = per_sample.detach().float()
    sums = torch.zeros(num_tasks, *values.shape[1:], dtype=values.dtype, device=values.device).index_add_(
        0, task, values
    )
    counts = torch.bincount(task, minlength=num_tasks)
    return sums / counts.clamp(min=1).view(-1, *[1] * (values.dim() - 1)), counts


class TaskWeighting:
    """``weights(per_sample, task)`` -> (T,) weights; with FAMO's ``same_batch`` update,
    ``after_step(per_sample, task)`` once the critic has stepped. ``lr``: the logits' Adam
    rate (None: the reference's for ``kind``)."""

    def __init__(
        self,
        kind: str,
        num_tasks: int,
        device: torch.device | str = "cpu",
        lr: float | None = None,
        famo_decay: float = 0.01,
        famo_update: str = "same_batch",
    ):
        if kind not in TASK_WEIGHTINGS:
            raise ValueError(f"unknown task weighting '{kind}', expected one of {TASK_WEIGHTINGS}")
        self.kind, self.num_tasks, self.famo_update = kind, num_tasks, famo_update
        self.logits = torch.zeros(num_tasks, device=device, requires_grad=True)  # s (uncertainty) or xi (famo)
        self.opt = None
        if kind in REFERENCE_LR:
            decay = famo_decay if kind == "famo" else 0.0
            self.opt = torch.optim.Adam([self.logits], lr=REFERENCE_LR[kind] if lr is None else lr, weight_decay=decay)
        self.previous: torch.Tensor | None = None  # FAMO: the per-task losses its next logit step starts from
        self.last = torch.ones(num_tasks, device=device)  # the last weights returned, for the logs
        self.frozen = torch.zeros(num_tasks, dtype=torch.bool, device=device)  # uncertainty: s that moves no more

    @property
    def learns_after_step(self) -> bool:
        """Whether ``after_step`` wants the batch's critic terms after the critic's step."""
        return self.kind == "famo" and self.famo_update == "same_batch"

    def weights(self, per_sample: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        losses, counts, present = self._task_losses(per_sample, task)
        if self.kind == "none":
            w = torch.ones_like(losses)
        elif self.kind == "inverse_size":
            w = torch.where(present, len(task) / (present.sum() * counts.clamp(min=1)), 0.0)
        elif self.kind == "uncertainty":
            w = torch.exp(-self.logits.detach())
            self._learn_uncertainty(losses, present)
        else:
            if self.famo_update == "next_batch" and self.previous is not None:
                self._famo_step(losses, present)
            self.previous = losses
            z = F.softmax(self.logits.detach(), -1)
            d = losses + FAMO_EPS
            w = z / (d * (z / d).sum())
        w = torch.where(present, w, 0.0)
        w = w * len(task) / (w * counts).sum().clamp(min=FAMO_EPS)  # mean 1 over the batch's samples
        self.last = w.detach()
        return self.last

    def after_step(self, per_sample: torch.Tensor, task: torch.Tensor) -> None:
        """FAMO's logit step from the log-loss change of each task across the critic's step:
        ``per_sample`` holds the same batch's critic terms after it (the reference's
        ``update_critic``); a no-op unless ``learns_after_step``."""
        if self.learns_after_step and self.previous is not None:
            losses, _, present = self._task_losses(per_sample, task)
            self._famo_step(losses, present)

    def _task_losses(self, per_sample: torch.Tensor, task: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(per-task mean losses, counts, present), absent tasks' losses and counts 0. A task whose
        loss is not finite (the divergence guard masks it out of this update) counts as absent
        here, so that it cannot poison the learned log-variances or logits."""
        losses, counts = task_means(per_sample, task, self.num_tasks)
        present = (counts > 0) & torch.isfinite(losses)
        return torch.where(present, losses, 0.0), torch.where(present, counts, 0), present

    def _learn_uncertainty(self, losses: torch.Tensor, present: torch.Tensor) -> None:
        """One Adam step on 1/2 (exp(-s) L + s) for the tasks in the batch."""
        s = self.logits
        objective = torch.where(present, 0.5 * (torch.exp(-s) * losses + s), 0.0).sum()  # absent tasks: no gradient
        self.opt.zero_grad(set_to_none=True)
        objective.backward()
        before = s.detach().clone()
        self.opt.step()
        self._freeze_overflowed(before)

    @torch.no_grad()
    def _freeze_overflowed(self, before: torch.Tensor) -> None:
        """Where Adam's second moment has overflowed (a falling s of a negative L), the
        reference's Adam never moves s again (its steps are m / inf = 0): s stays at
        ``before`` for good, and the moments are zeroed instead of left infinite (a checkpoint
        refuses an inf)."""
        state = self.opt.state[self.logits]
        self.frozen |= ~torch.isfinite(state["exp_avg_sq"])
        self.logits.copy_(torch.where(self.frozen, before, self.logits))
        for key in ("exp_avg", "exp_avg_sq"):
            state[key].masked_fill_(self.frozen, 0.0)

    def _famo_step(self, losses: torch.Tensor, present: torch.Tensor) -> None:
        """Moves xi by the log-loss change from ``self.previous`` to ``losses`` (0 for a task
        absent from either): Adam on softmax's vector-Jacobian product with that change."""
        delta = (self.previous + FAMO_EPS).log() - (losses + FAMO_EPS).log()
        delta = torch.where(present & (self.previous > 0), delta, 0.0)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(F.softmax(self.logits, -1), self.logits, grad_outputs=delta)
        self.opt.zero_grad(set_to_none=True)
        self.logits.grad = grad
        self.opt.step()

    def state_dict(self) -> dict[str, Any]:
        return {
            "logits": self.logits.detach().clone(),
            "opt": self.opt.state_dict() if self.opt else None,
            "previous": self.previous,
            "last": self.last,
            "frozen": self.frozen.clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.logits.copy_(state["logits"])
        if self.opt is not None and state["opt"] is not None:
            self.opt.load_state_dict(state["opt"])
        self.previous, self.last = state["previous"], state["last"]
        self.frozen = state.get("frozen", torch.zeros_like(self.frozen)).to(self.frozen.device)  # older: none
