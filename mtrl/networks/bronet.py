"""BroNet (Nauman et al., "Bigger, Better, Faster... BRO", 2024; the network of BRC, Nauman
et al. 2025, "Bigger, Regularized, Categorical"): a wide residual MLP with layer norms.

    h = relu(LN(Dense(x)))
    h = h + LN(Dense(relu(LN(Dense(h)))))      depth times
    out = Dense(h)

All dense layers orthogonal with gain sqrt(2), biases 0, as the reference JAX code
(naumix/BiggerRegularizedCategorical, jaxrl/networks.py). ``members`` networks (twin critics)
run as one batched matmul per layer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from mtrl.networks.ensemble import EnsembleLinear, TaskBlock


class EnsembleLayerNorm(nn.Module):
    """LayerNorm over the last axis with a per-member scale and shift: (members, B, d)."""

    def __init__(self, members: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(members, 1, dim))
        self.bias = nn.Parameter(torch.zeros(members, 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:]) * self.weight + self.bias


def _orthogonal(layer: EnsembleLinear, gain: float | Sequence[float]) -> EnsembleLinear:
    """Each member's (in, out) weight orthogonal with ``gain``. A sequence of gains splits the
    output columns into as many equal blocks, each orthogonal with its own gain: separate
    Dense heads, as BRC's actor has for its means (gain sqrt 2) and log-stds (1)."""
    gains = [gain] if isinstance(gain, (int, float)) else list(gain)
    for w in layer.weight.data:
        for block, g in zip(w.chunk(len(gains), dim=-1), gains):
            block.copy_(nn.init.orthogonal_(torch.empty_like(block), gain=g))
    return layer


class BroNet(nn.Module):
    """``members`` BroNets of ``width`` units and ``depth`` residual blocks. The task enters
    through the input (BRC concatenates a learned task embedding: ``EmbeddingTaskEncoder``),
    so the network itself has no task-specific parameters."""

    def __init__(
        self,
        *,
        members: int,
        in_dim: int,
        width: int,
        depth: int,
        out_dim: int,
        out_gain: float | Sequence[float] = math.sqrt(2),
    ):
        super().__init__()
        self.members, self.out_dim, g = members, out_dim, math.sqrt(2)
        self.stem = _orthogonal(EnsembleLinear(members=members, in_dim=in_dim, out_dim=width), g)
        self.stem_norm = EnsembleLayerNorm(members, width)
        self.blocks = nn.ModuleList(
            nn.ModuleList(
                [
                    _orthogonal(EnsembleLinear(members=members, in_dim=width, out_dim=width), g),
                    EnsembleLayerNorm(members, width),
                    _orthogonal(EnsembleLinear(members=members, in_dim=width, out_dim=width), g),
                    EnsembleLayerNorm(members, width),
                ]
            )
            for _ in range(depth)
        )
        self.head = _orthogonal(EnsembleLinear(members=members, in_dim=width, out_dim=out_dim), out_gain)

    def forward(self, x: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(self.members, -1, -1)
        h = F.relu(self.stem_norm(self.stem(x)))
        for dense1, norm1, dense2, norm2 in self.blocks:
            h = h + norm2(dense2(F.relu(norm1(dense1(h)))))
        with torch.autocast(h.device.type, enabled=False):  # output layer in float32, as EnsembleMLP's head
            return self.head(h.float())

    def shared_parameters(self) -> list[nn.Parameter]:
        return list(self.parameters())

    def task_blocks(self) -> list[TaskBlock]:
        return []
