"""Soft parameter sharing: one network per task, pulled toward each other by an L2 penalty
(Duong et al. 2015; Ruder 2017's overview of multi-task learning calls it soft sharing).

    penalty = strength * sum over layers and tasks of |theta_t - mean_t' theta_t'|^2

Each task's network is one member of a batched ensemble: a batch is grouped by task (padded
to the largest task's count) and run as one ``baddbmm`` per layer, so no loop runs over tasks.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from mtrl.networks.ensemble import EnsembleLinear, TaskBlock


class PerTaskMLP(nn.Module):
    """``members`` x ``num_tasks`` ReLU MLPs; sample b is run by its task's network."""

    def __init__(
        self,
        members: int,
        in_dim: int,
        hidden: list[int],
        out_dim: int,
        num_tasks: int,
        strength: float,
        init: str = "pytorch",
    ):
        super().__init__()
        self.members, self.out_dim, self.num_tasks, self.strength = members, out_dim, num_tasks, strength
        sizes = [in_dim, *hidden, out_dim]
        self.layers = nn.ModuleList(
            EnsembleLinear(members=members * num_tasks, in_dim=a, out_dim=b, init=init)
            for a, b in zip(sizes[:-1], sizes[1:])
        )

    def forward(self, x: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        m, t, b = self.members, self.num_tasks, x.shape[0]
        counts = torch.bincount(task, minlength=t)
        order = torch.argsort(task, stable=True)
        sorted_task = task[order]
        position = torch.arange(b, device=x.device) - (torch.cumsum(counts, 0) - counts)[sorted_task]
        width = int(counts.max()) if b else 0  # one host sync: the padded group size
        grouped = x.new_zeros(t, width, x.shape[-1])
        grouped[sorted_task, position] = x[order]
        h = grouped.unsqueeze(0).expand(m, -1, -1, -1).reshape(m * t, width, -1)
        for i, layer in enumerate(self.layers):
            if i:
                h = F.relu(h)
            if i == len(self.layers) - 1:  # output layer in float32, as EnsembleMLP's head
                with torch.autocast(h.device.type, enabled=False):
                    h = layer(h.float())
            else:
                h = layer(h)
        out = h.view(m, t, width, -1)[:, sorted_task, position]
        return out[:, torch.argsort(order)]

    def _per_task(self) -> list[torch.Tensor]:
        """Each weight and bias viewed as (members, tasks, ...)."""
        return [
            p.view(self.members, self.num_tasks, *p.shape[1:])
            for layer in self.layers
            for p in (layer.weight, layer.bias)
        ]

    def _distance_to_mean(self) -> torch.Tensor:
        """Sum of squared distances of each task's parameters to the tasks' mean."""
        total = self.layers[0].weight.new_zeros(())
        for per_task in self._per_task():
            total = total + ((per_task - per_task.mean(1, keepdim=True)) ** 2).sum()
        return total

    # penalty() and relative_spread() make it a mtrl/learner/hooks.py ``Penalized`` module.
    def penalty(self) -> torch.Tensor:
        """strength * sum of squared distances of each task's parameters to the tasks' mean."""
        return self.strength * self._distance_to_mean()

    @torch.no_grad()
    def relative_spread(self) -> float:
        """sqrt(sum_t |theta_t - mean|^2 / sum_t |theta_t|^2) over every layer: about
        sqrt((T-1)/T) for independently initialised networks, 0 when all tasks' are the same.
        Logged as ``soft_sharing/spread_<net>`` to show how far the penalty has pulled them."""
        size = sum(float((v**2).sum()) for v in self._per_task())
        return (float(self._distance_to_mean()) / size) ** 0.5 if size else 0.0

    def shared_parameters(self) -> list[nn.Parameter]:
        return []  # nothing is shared; the penalty couples the tasks

    def task_blocks(self) -> list[TaskBlock]:
        """Every parameter: member m's task t is index m * T + t of dimension 0."""
        return [
            TaskBlock(f"layers.{i}.{p}", 0, m * self.num_tasks, 1)
            for i in range(len(self.layers))
            for p in ("weight", "bias")
            for m in range(self.members)
        ]
