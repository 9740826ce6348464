"""A categorical value distribution (C51, Bellemare et al. 2017) for the critics, as BRC
trains it (Nauman et al. 2025): logits over ``bins`` atoms evenly spaced on
[-v_max, v_max], the soft Bellman target's atoms projected back onto them, and a
cross-entropy loss.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def project(atoms: torch.Tensor, probs: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
    """The distribution on ``support`` (bins,) closest to placing ``probs`` (B, bins) on
    ``atoms`` (B, bins): each atom is clipped to the support and its mass split between
    the two neighbouring bins in proportion to its distance to them. Mass is preserved,
    and so is the mean of atoms inside the support."""
    v_min, v_max, bins = support[0], support[-1], support.shape[0]
    index = (atoms.clamp(v_min, v_max) - v_min) / ((v_max - v_min) / (bins - 1))  # fractional bin index
    lower = index.floor().clamp(0, bins - 1)
    upper = index.ceil().clamp(0, bins - 1)
    upper_share = index - lower  # 0 when the atom sits on a bin (lower == upper)
    out = torch.zeros_like(probs)
    out.scatter_add_(-1, lower.long(), probs * (1.0 - upper_share))
    out.scatter_add_(-1, upper.long(), probs * upper_share)
    return out


def cross_entropy(logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """Per-sample loss: the cross-entropies of the members' logits (members, B, bins)
    against the target (B, bins), summed over members (as the twin MSE is)."""
    return -(target_probs.unsqueeze(0) * F.log_softmax(logits, -1)).sum(-1).sum(0)


class CategoricalQ(nn.Module):
    """Critics whose ``net`` (any task-conditioned network with ``members`` members and
    ``bins`` outputs, reading cat(features, action)) gives logits over the support.

    ``forward`` returns the expected value under the members' mean distribution, as one
    row (1, B): BRC's actor maximises that, and the min over rows SAC's actor loss takes is
    then the value itself. ``categorical = True`` tells ``SAC`` to train it by cross-entropy
    (mtrl/learner/hooks.py's ``CategoricalCritic``).
    """

    categorical = True

    def __init__(self, net: nn.Module, v_max: float, bins: int):
        super().__init__()
        self.net = net
        self.register_buffer("support", torch.linspace(-v_max, v_max, bins))

    def logits(self, features: torch.Tensor, action: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        """(members, B, bins)"""
        return self.net(torch.cat([features, action], -1), task)

    def probs(self, logits: torch.Tensor) -> torch.Tensor:
        """The members' mean distribution (B, bins)."""
        return F.softmax(logits.float(), -1).mean(0)

    def forward(self, features: torch.Tensor, action: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        return (self.probs(self.logits(features, action, task)) @ self.support).unsqueeze(0)
