"""What an agent's representation does per task, for logs: CARE's attention weights."""

from __future__ import annotations

import torch

from mtrl.agent import Agent
from mtrl.replay import Batch


@torch.no_grad()
def attention_by_task(agent: Agent, batch: Batch, num_tasks: int) -> torch.Tensor | None:
    """(num_tasks, k) mean mixture weights of each task's samples, or None for encoders
    without attention. Tasks absent from the batch get zeros."""
    weights_fn = getattr(agent.encoder, "attention_weights", None)
    if weights_fn is None:
        return None
    weights = weights_fn(batch.obs, batch.task)
    sums = torch.zeros(num_tasks, weights.shape[1], device=weights.device).index_add_(0, batch.task, weights)
    counts = torch.bincount(batch.task, minlength=num_tasks).clamp(min=1).unsqueeze(1)
    return sums / counts
