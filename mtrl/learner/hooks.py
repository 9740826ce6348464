"""What the parts of an agent may provide beyond the base interface (mtrl/learner/agent.py), and who
uses it. Each is a ``typing.Protocol`` checked with ``isinstance`` (structurally: a module
provides it by defining the members, no base class needed).

- :class:`Penalized`: a module of the actor or critic network whose ``penalty()`` is added to
  that network's loss (soft parameter sharing, mtrl/learner/soft_sharing.py); SAC adds it, the
  trainer logs ``relative_spread()``.
- :class:`CategoricalCritic`: a critic with a categorical value distribution
  (mtrl/learner/categorical.py); SAC trains it by cross-entropy instead of the twin MSE.
- :class:`AttentionEncoder`: an encoder that mixes several encoders by per-task attention
  (CARE, mtrl/networks/care_encoder.py); mtrl/training/introspection.py logs its weights and context vectors.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import nn


@runtime_checkable
class Penalized(Protocol):
    """A module coupling per-task parameters by a loss term rather than by sharing them."""

    def penalty(self) -> torch.Tensor:
        """Scalar added to the loss of the network the module belongs to."""
        ...

    def relative_spread(self) -> float:
        """How far apart the tasks' parameters are (0: identical), for the logs."""
        ...


@runtime_checkable
class CategoricalCritic(Protocol):
    """Critics giving logits (members, B, bins) over the values of their ``support`` (bins,)
    buffer. (A registered buffer is no class member, so the ``isinstance`` check leaves it out.)"""

    categorical: bool

    def logits(self, features: torch.Tensor, action: torch.Tensor, task: torch.Tensor) -> torch.Tensor: ...

    def probs(self, logits: torch.Tensor) -> torch.Tensor:
        """The members' mean distribution (B, bins)."""
        ...


@runtime_checkable
class AttentionEncoder(Protocol):
    """An encoder whose features mix k encoders' outputs by per-sample attention weights."""

    def encode(self, obs: torch.Tensor, task: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(features [mixture || context], attention weights (B, k), encoder outputs (k, B, d))."""
        ...

    def attention_weights(self, obs: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        """(B, k) mixture weights."""
        ...

    def context_cosine(self) -> torch.Tensor:
        """(T, T) cosine similarity of the tasks' context vectors."""
        ...


def penalized(module: nn.Module) -> list[Penalized]:
    """The submodules of ``module`` that are :class:`Penalized`."""
    return [m for m in module.modules() if isinstance(m, Penalized)]


def is_categorical(critic: nn.Module) -> bool:
    """Whether SAC trains ``critic`` by cross-entropy (:class:`CategoricalCritic` with
    ``categorical`` true)."""
    return isinstance(critic, CategoricalCritic) and bool(critic.categorical)
