"""PaCo's parameter-compositional network (Sun, Zhang, Xu & Tang, "PaCo: Parameter-
Compositional Multi-Task Reinforcement Learning", NeurIPS 2022).

All parameters of the network form a matrix Phi = [phi_1 .. phi_K] of K shared parameter
sets; task t's network is the plain MLP whose parameters are theta_t = Phi w_t, with w_t in
R^K the only task-specific parameters. Every layer is linear in its parameters, so

    x (sum_k w_tk W_k) + sum_k w_tk b_k  =  sum_k w_tk (x W_k + b_k)

and a batch mixing tasks is computed as the K layers' outputs in one batched matmul,
mixed by each sample's w (no loop over tasks or sets). The cost is K plain layers.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from mtrl.networks.ensemble import EnsembleLinear, TaskBlock

# Initialisation as PaCo's reference code (TToTMooN/alf, PaCo_ALF branch): the K parameter
# sets of a layer start identical (``kernel_identical_init``: set 0 copied to all) with zero
# biases, and each task's vector w_t is N(0, 1) (its task encoder, a bias-free FC of the
# one-hot with torch's normal_ init, no softmax or normalisation). The sets then diverge
# because each one's gradient is the composed layer's scaled by w_tk.


class CompositionalLinear(nn.Module):
    """K linear layers per member, mixed per sample: (members, B, in), (members, B, K) ->
    (members, B, out)."""

    def __init__(self, *, members: int, num_sets: int, in_dim: int, out_dim: int, init: str = "pytorch"):
        super().__init__()
        self.members, self.num_sets = members, num_sets
        self.sets = EnsembleLinear(members=members * num_sets, in_dim=in_dim, out_dim=out_dim, init=init)
        with torch.no_grad():  # identical sets, zero biases
            first = self.sets.weight.view(members, num_sets, in_dim, out_dim)[:, :1]
            self.sets.weight.view(members, num_sets, in_dim, out_dim).copy_(first.expand(-1, num_sets, -1, -1))
            self.sets.bias.zero_()

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        m, b, _ = x.shape
        y = self.sets(x.unsqueeze(1).expand(m, self.num_sets, b, x.shape[-1]).reshape(m * self.num_sets, b, -1))
        return torch.einsum("mkbo,mbk->mbo", y.view(m, self.num_sets, b, -1), w)

    def composed(self, w_task: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The plain layer (weight (members, in, out), bias (members, 1, out)) of a task
        whose vector is ``w_task`` (members, K): Phi w."""
        weight = self.sets.weight.view(self.members, self.num_sets, *self.sets.weight.shape[1:])
        bias = self.sets.bias.view(self.members, self.num_sets, *self.sets.bias.shape[1:])
        return torch.einsum("mkio,mk->mio", weight, w_task), torch.einsum("mkio,mk->mio", bias, w_task)


class PaCoNet(nn.Module):
    """A ReLU MLP whose every layer is a ``CompositionalLinear`` over K parameter sets,
    composed by the task's vector ``w[task]`` (members, num_tasks, K)."""

    def __init__(
        self,
        *,
        members: int,
        in_dim: int,
        hidden: list[int],
        out_dim: int,
        num_tasks: int,
        num_sets: int,
        init: str = "pytorch",
    ):
        super().__init__()
        self.members, self.out_dim, self.num_sets = members, out_dim, num_sets
        sizes = [in_dim, *hidden, out_dim]
        self.layers = nn.ModuleList(
            CompositionalLinear(members=members, num_sets=num_sets, in_dim=a, out_dim=b, init=init)
            for a, b in zip(sizes[:-1], sizes[1:])
        )
        self.w = nn.Parameter(torch.randn(members, num_tasks, num_sets))

    def forward(self, x: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(self.members, -1, -1)
        w = self.w[:, task]  # (members, B, K)
        for i, layer in enumerate(self.layers):
            if i:
                x = F.relu(x)
            if i == len(self.layers) - 1:  # output layer in float32, as EnsembleMLP's head
                with torch.autocast(x.device.type, enabled=False):
                    return layer(x.float(), w.float())
            x = layer(x, w)
        raise AssertionError("unreachable")

    def task_parameters(self, task: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """theta_task = Phi w_task: each layer's composed (weight, bias), for inspection."""
        return [layer.composed(self.w[:, task]) for layer in self.layers]

    def shared_parameters(self) -> list[nn.Parameter]:
        return [p for layer in self.layers for p in layer.parameters()]

    def task_blocks(self) -> list[TaskBlock]:
        """Each task's compositional vector: row t of ``w`` (members, T, K)."""
        return [TaskBlock("w", 1, 0, 1)]
