"""MOORE's orthogonal mixture of experts (Hendawy, Peters & D'Eramo, "Multi-Task
Reinforcement Learning with Mixture of Orthogonal Experts", ICLR 2024).

    u_1..u_k = experts(x)                         one batched call     (k, B, d)
    v_1..v_k = Gram-Schmidt(u_1..u_k)             per sample, orthonormal
    r        = tanh(sum_i w[task]_i v_i)          w: task-specific, (T, k)
    out      = head[task](r)                      one output head per task

Gram-Schmidt of k vectors is the Q factor of the (d, k) matrix [u_1 .. u_k] with the signs
chosen so that R has a positive diagonal; ``orthonormalize`` computes it for the whole batch
with one ``torch.linalg.qr`` (needs d >= k), which is also differentiable.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mtrl.networks.ensemble import EnsembleMLP, TaskBlock


def orthonormalize(u: torch.Tensor) -> torch.Tensor:
    """Gram-Schmidt over the expert axis: u (..., k, B, d) -> v of the same shape with
    <v_i, v_j> = [i == j] for every sample; v_i spans what u_1..u_i span."""
    a = u.movedim(-3, -1)  # (..., B, d, k): each sample's vectors as columns
    if a.dtype in (torch.bfloat16, torch.float16):  # QR runs in float32 under autocast
        a = a.float()
    q, r = torch.linalg.qr(a)
    sign = torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)  # a degenerate column keeps QR's sign
    return (q * sign.unsqueeze(-2)).movedim(-1, -3).to(u.dtype)


class MOORENet(nn.Module):
    """k expert MLPs of the input, made orthonormal per sample, mixed by the task's weights,
    read by the task's output head (an MLP with one head per task)."""

    def __init__(
        self,
        *,
        members: int,
        in_dim: int,
        out_dim: int,
        num_tasks: int,
        num_experts: int,
        expert_hidden: list[int],
        expert_dim: int,
        head_hidden: list[int],
        init: str = "pytorch",
    ):
        super().__init__()
        if expert_dim < num_experts:
            raise ValueError(
                f"MOORE needs expert_dim >= num_experts to make {num_experts} vectors orthonormal, got {expert_dim}"
            )
        self.members, self.out_dim, self.num_experts = members, out_dim, num_experts
        self.experts = EnsembleMLP(
            members=members * num_experts,
            in_dim=in_dim,
            hidden=expert_hidden,
            out_dim=expert_dim,
            head_init="orthogonal",
            init=init,
        )
        # The task's mixing weights: MOORE's bias-free nn.Linear of the task's one-hot, i.e. a
        # (T, k) table, xavier-uniform as its reference code (no softmax, no normalisation).
        bound = math.sqrt(6.0 / (num_tasks + num_experts))
        self.task_weights = nn.Parameter(torch.empty(members, num_tasks, num_experts).uniform_(-bound, bound))
        self.head = EnsembleMLP(
            members=members, in_dim=expert_dim, hidden=head_hidden, out_dim=out_dim, num_heads=num_tasks, init=init
        )

    def representation(self, x: torch.Tensor, task: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(r (members, B, d), orthonormal expert outputs (members, k, B, d))."""
        b = x.shape[-2]
        u = self.experts(x).view(self.members, self.num_experts, b, -1)
        v = orthonormalize(u)
        w = self.task_weights[:, task]  # (members, B, k): row `task` of the table
        return torch.tanh(torch.einsum("mkbd,mbk->mbd", v, w)), v

    def forward(self, x: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        return self.head(self.representation(x, task)[0], task)

    def shared_parameters(self) -> list[nn.Parameter]:
        return list(self.experts.parameters()) + self.head.shared_parameters()

    def task_blocks(self) -> list[TaskBlock]:
        """Row t of the mixing table and task t's head columns."""
        return [TaskBlock("task_weights", 1, 0, 1), *[b.prefixed("head") for b in self.head.task_blocks()]]
