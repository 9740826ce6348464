"""What an agent's representation does per task, for logs: CARE's attention weights, their
entropy, and how far apart the tasks' context vectors are; :class:`RepresentationProbe`
is the training loop's metric source for them."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from mtrl.learner.agent import Agent
from mtrl.learner.hooks import AttentionEncoder
from mtrl.learner.replay import Batch, MultiTaskReplay
from mtrl.learner.task_weighting import task_means


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


class RepresentationProbe:
    """The training loop's source (:class:`mtrl.training.metrics.MetricSource`) of CARE's
    numbers: at each log point, one batch of ``batch_per_task`` samples per task from the
    replay, its :func:`representation_metrics`, ``attention/<task>/<encoder>`` weights and a
    tasks x encoders heatmap drawn by ``heatmap(tag, matrix)``.

    The batch is drawn for every agent, attention or not, once the replay holds samples:
    the draw advances the replay's random stream, which later batches (and so the whole run)
    depend on, and runs before the redesign drew it the same way."""

    def __init__(
        self,
        agent: Agent,
        replay: MultiTaskReplay,
        batch_per_task: int,
        task_names: list[str],
        heatmap: Callable[[str, np.ndarray], None],
    ):
        self.agent, self.replay, self.batch_per_task = agent, replay, batch_per_task
        self.task_names, self.heatmap = list(task_names), heatmap

    def metrics(self) -> dict[str, float]:
        if not len(self.replay):
            return {}
        probe = self.replay.sample(self.batch_per_task)
        attention = attention_by_task(self.agent, probe, len(self.task_names))
        if attention is None:
            return {}
        record = representation_metrics(self.agent, probe, self.task_names)
        for i, name in enumerate(self.task_names):
            record.update({f"attention/{name}/{j}": float(w) for j, w in enumerate(attention[i])})
        self.heatmap("attention/tasks_x_encoders", attention.cpu().numpy())
        return record
