"""What an agent's representation does per task, for logs: CARE's attention weights, their
entropy, and how far apart the tasks' context vectors are."""

from __future__ import annotations

import math

import torch

from mtrl.agent import Agent
from mtrl.hooks import AttentionEncoder
from mtrl.replay import Batch
from mtrl.task_weighting import task_means


@torch.no_grad()
def attention_by_task(agent: Agent, batch: Batch, num_tasks: int) -> torch.Tensor | None:
    """(num_tasks, k) mean mixture weights of each task's samples, or None for encoders
    without attention. Tasks absent from the batch get zeros."""
    if not isinstance(agent.encoder, AttentionEncoder):
        return None
    return task_means(agent.encoder.attention_weights(batch.obs, batch.task), batch.task, num_tasks)[0]


@torch.no_grad()
def representation_metrics(agent: Agent, batch: Batch, task_names: list[str]) -> dict[str, float]:
    """For each CARE encoder of the agent (``critic``, and ``actor`` when it has its own):
    ``care/<part>/attention_entropy/<task>`` -- the mean entropy of a sample's mixture
    weights, divided by log k (1 = uniform, 0 = one encoder) -- and
    ``care/<part>/context_cosine_mean``, the mean cosine between different tasks' context
    vectors (near 1: the context does not tell the tasks apart); and the scale each task's
    samples hand the heads: ``care/<part>/mixture_norm/<task>`` (mean L2 norm of the mixed
    encoder output) and ``care/<part>/context_norm/<task>`` (of its context vector)."""
    out: dict[str, float] = {}
    num_tasks = len(task_names)
    for part, encoder in (("critic", agent.encoder), ("actor", agent.actor_encoder)):
        if not isinstance(encoder, AttentionEncoder):
            continue
        features, w, _ = encoder.encode(batch.obs, batch.task)
        mixed, context = features.chunk(2, dim=-1)
        for name, part_features in (("mixture_norm", mixed), ("context_norm", context)):
            norms = task_means(part_features.norm(dim=-1), batch.task, num_tasks)[0]
            out.update({f"care/{part}/{name}/{n}": float(norms[i]) for i, n in enumerate(task_names)})
        entropy = -(w * w.clamp(min=1e-12).log()).sum(-1) / math.log(max(w.shape[1], 2))
        per_task = task_means(entropy, batch.task, num_tasks)[0]
        out.update({f"care/{part}/attention_entropy/{n}": float(per_task[i]) for i, n in enumerate(task_names)})
        if num_tasks > 1:
            cos = encoder.context_cosine()
            off_diagonal = ~torch.eye(num_tasks, dtype=torch.bool, device=cos.device)
            out[f"care/{part}/context_cosine_mean"] = float(cos[off_diagonal].mean())
    return out
