"""Per-task loss weights (``sac.task_weighting``): how much each task's samples count in the
critic and actor losses.

- ``none``: every sample counts the same.
- ``inverse_size``: each task's weight is inverse to its share of the batch, N / (T n_t), so
  every task's loss counts the same however the batch was drawn (with
  ``train.batch_allocation=scheduler`` the batch follows what the scheduler collected; with
  the default equal allocation the weights are 1).
- ``uncertainty`` (Kendall, Gal & Cipolla, CVPR 2018): a learned log-variance s_t per task,
  trained on 1/2 (exp(-s_t) L_t + s_t) with L_t the task's mean critic loss; the weight is
  exp(-s_t), which tends to 1 / L_t.
- ``famo`` (Liu, Liu, Jin, Stone & Liu, "FAMO: Fast Adaptive Multitask Optimization",
  NeurIPS 2023): logits xi, z = softmax(xi); the loss sum_t z_t log L_t / c, c = sum_t z_t / L_t,
  i.e. weights z_t / (c L_t) on L_t; xi follows the change in log losses between one update
  and the next (the reference code's ``update``), so tasks whose loss falls slowly gain
  weight, at a constant cost per step.

Weights are computed from the critic's per-task losses (never negative, unlike the actor's)
and applied to both the critic and actor terms (the critic's only with
``sac.task_weighting_actor=false``), scaled so that the batch's samples weigh 1
on average (the loss keeps its scale). Weights are constants in the networks' gradients.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F

from mtrl.config import TASK_WEIGHTINGS

FAMO_EPS = 1e-8


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
    """``weights(critic_per_sample, task)`` -> (T,) weights; ``update()`` after the step."""

    def __init__(
        self, kind: str, num_tasks: int, device: torch.device | str = "cpu", lr: float = 0.025, famo_decay: float = 1e-3
    ):
        if kind not in TASK_WEIGHTINGS:
            raise ValueError(f"unknown task weighting '{kind}', expected one of {TASK_WEIGHTINGS}")
        self.kind, self.num_tasks = kind, num_tasks
        self.logits = torch.zeros(num_tasks, device=device, requires_grad=True)  # s (uncertainty) or xi (famo)
        self.opt = (
            torch.optim.Adam([self.logits], lr=lr, weight_decay=famo_decay if kind == "famo" else 0.0)
            if kind in ("uncertainty", "famo")
            else None
        )
        self.previous: torch.Tensor | None = None  # FAMO: last update's per-task losses
        self.last = torch.ones(num_tasks, device=device)  # the last weights returned, for the logs

    def weights(self, critic_per_sample: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        losses, counts = task_means(critic_per_sample, task, self.num_tasks)
        # A task whose loss is not finite (the divergence guard masks it out of this update)
        # counts as absent here, so that it cannot poison the learned log-variances or logits.
        present = (counts > 0) & torch.isfinite(losses)
        losses, counts = torch.where(present, losses, 0.0), torch.where(present, counts, 0)
        if self.kind == "none":
            w = torch.ones_like(losses)
        elif self.kind == "inverse_size":
            w = torch.where(present, len(task) / (present.sum() * counts.clamp(min=1)), 0.0)
        elif self.kind == "uncertainty":
            w = torch.exp(-self.logits.detach())
            self._learn_uncertainty(losses, present)
        else:
            w = self._famo(losses, present)
        w = torch.where(present, w, 0.0)
        w = w * len(task) / (w * counts).sum().clamp(min=FAMO_EPS)  # mean 1 over the batch's samples
        self.last = w.detach()
        return self.last

    def _learn_uncertainty(self, losses: torch.Tensor, present: torch.Tensor) -> None:
        """One Adam step on 1/2 (exp(-s) L + s) for the tasks in the batch."""
        s = self.logits
        objective = torch.where(present, 0.5 * (torch.exp(-s) * losses + s), 0.0).sum()  # absent tasks: no gradient
        self.opt.zero_grad(set_to_none=True)
        objective.backward()
        self.opt.step()

    def _famo(self, losses: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """FAMO's weights on L_t; first moves xi by the log-loss change since the last call
        (0 for a task absent from either batch)."""
        if self.previous is not None:
            delta = (self.previous + FAMO_EPS).log() - (losses + FAMO_EPS).log()
            delta = torch.where(present & (self.previous > 0), delta, 0.0)
            with torch.enable_grad():
                (grad,) = torch.autograd.grad(F.softmax(self.logits, -1), self.logits, grad_outputs=delta)
            self.opt.zero_grad(set_to_none=True)
            self.logits.grad = grad
            self.opt.step()
        self.previous = torch.where(present, losses, 0.0)
        z = F.softmax(self.logits.detach(), -1)
        d = losses + FAMO_EPS
        return z / (d * (z / d).sum())

    def state_dict(self) -> dict[str, Any]:
        return {
            "logits": self.logits.detach().clone(),
            "opt": self.opt.state_dict() if self.opt else None,
            "previous": self.previous,
            "last": self.last,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.logits.copy_(state["logits"])
        if self.opt is not None and state["opt"] is not None:
            self.opt.load_state_dict(state["opt"])
        self.previous, self.last = state["previous"], state["last"]
