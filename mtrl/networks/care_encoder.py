"""CARE: a mixture of k state encoders weighted by attention computed from a task context
(Sodhani, Zhang & Pineau, "Multi-Task Reinforcement Learning with Context-based
Representations", ICML 2021).

    z_ctx      = context_mlp(relu(embedding[task]))                (B, d)
    z_1..z_k   = encoders(obs)          one batched call           (k, B, d)
    weights    = softmax(score(z_ctx, z_i) / temperature over i)   (B, k)
    features   = [sum_i weights_i z_i || z_ctx]                    (B, 2d)

``score`` is an MLP of z_ctx alone, with the context MLP's hidden layers (``attention="mlp"``,
the default: both reference codes' form, fb/mtrl's ``AttentionBasedExperts`` and Meta-World+'s
``CARENetwork``), or the dot product <z_ctx, z_i> (``attention="dot"``: the paper's figure,
where the weights depend on the state too). The ReLU on the embedding is both references'
(fb/mtrl ``TaskEncoder``, Meta-World+ ``CARENetwork``); ``embedding_relu=False`` feeds the
embedding as it is (mtrl's CARE before issue 22).

In an agent the actor and the critics each own one such encoder (Meta-World+'s reference
design; the critic's also has a target copy), so the actor's representation is trained by
the actor's loss. Sharing the critic's encoder, read detached by the actor, is the old
design, kept for ablation (``agent.actor_encoder=critic_detached``).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from mtrl.networks.ensemble import EnsembleMLP

ATTENTION_KINDS = ("dot", "mlp")
EMBEDDING_KINDS = ("pretrained", "learned", "one_hot")


class TaskEmbedding(nn.Module):
    """Task id -> input of the context encoder: a frozen pretrained vector, a learned vector
    (initialised from the pretrained one when given), or a one-hot (ablations)."""

    def __init__(self, *, kind: str, num_tasks: int, pretrained: torch.Tensor | None = None, dim: int = 64):
        super().__init__()
        self.kind, self.num_tasks = kind, num_tasks
        if kind == "pretrained":
            self.register_buffer("table", pretrained.float().clone())
        elif kind == "learned":
            self.table = nn.Parameter(
                pretrained.float().clone() if pretrained is not None else torch.randn(num_tasks, dim) * 0.1
            )
        elif kind == "one_hot":
            self.register_buffer("table", torch.eye(num_tasks))
        else:
            raise ValueError(f"unknown task embedding kind '{kind}', expected one of {EMBEDDING_KINDS}")
        self.out_dim = self.table.shape[1]

    def forward(self, task: torch.Tensor) -> torch.Tensor:
        return self.table[task]


class CAREEncoder(nn.Module):
    """The CARE representation (mixture || context); ``out_dim = 2 * encoder_dim``, plus
    ``obs_dim`` with ``append_obs`` (the raw observation appended) and ``num_tasks`` with
    ``append_task_id`` (the task's one-hot row appended): ablations, not CARE."""

    def __init__(
        self,
        *,
        obs_dim: int,
        task_embedding: TaskEmbedding,
        num_encoders: int,
        encoder_hidden: list[int],
        encoder_dim: int,
        context_hidden: list[int],
        attention: str = "mlp",
        temperature: float = 1.0,
        append_obs: bool = False,
        append_task_id: bool = False,
        embedding_relu: bool = True,
    ):
        super().__init__()
        if attention not in ATTENTION_KINDS:
            raise ValueError(f"unknown attention '{attention}', expected one of {ATTENTION_KINDS}")
        self.task_embedding, self.embedding_relu = task_embedding, embedding_relu
        # Representations: orthogonal (gain 1, zero bias) output layers too, so tasks and encoders
        # differ from the start. The references differ here and from each other: fb/mtrl inits
        # every layer xavier-uniform (mtrl/agent/utils.py weight_init), Meta-World+ he-uniform
        # (config/nn.py); a gain-1 orthogonal square layer has xavier's weight variance, 1/fan.
        self.context = EnsembleMLP(
            members=1, in_dim=task_embedding.out_dim, hidden=context_hidden, out_dim=encoder_dim, head_init="orthogonal"
        )
        self.encoders = EnsembleMLP(
            members=num_encoders, in_dim=obs_dim, hidden=encoder_hidden, out_dim=encoder_dim, head_init="orthogonal"
        )
        self.attention, self.temperature = attention, temperature
        # "mlp": the reference codes' form: an MLP of the task's context alone to k logits, so the
        # weights do not depend on the state. Its hidden layers are the context MLP's, as in both
        # (fb/mtrl: 2 x 50 for each; Meta-World+: encoder_width x encoder_depth for each).
        self.score = (
            EnsembleMLP(
                members=1, in_dim=encoder_dim, hidden=context_hidden, out_dim=num_encoders, head_init="orthogonal"
            )
            if attention == "mlp"
            else None
        )
        self.num_encoders, self.encoder_dim = num_encoders, encoder_dim
        self.append_obs, self.append_task_id = append_obs, append_task_id
        self.num_tasks = task_embedding.num_tasks
        self.out_dim = 2 * encoder_dim + (obs_dim if append_obs else 0) + (self.num_tasks if append_task_id else 0)

    def context_vector(self, task: torch.Tensor) -> torch.Tensor:
        embedding = self.task_embedding(task)
        return self.context(F.relu(embedding) if self.embedding_relu else embedding)[0]

    def encode(self, obs: torch.Tensor, task: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(features, attention weights (B, k), encoder outputs (k, B, d))."""
        z_ctx = self.context_vector(task)
        z = self.encoders(obs)
        if self.attention == "dot":
            logits = torch.einsum("kbd,bd->bk", z, z_ctx)
        else:
            logits = self.score(z_ctx)[0]
        weights = F.softmax(logits / self.temperature, dim=-1)
        mixed = torch.einsum("bk,kbd->bd", weights, z)
        return torch.cat([mixed, z_ctx], -1), weights, z

    def forward(self, obs: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        parts = [self.encode(obs, task)[0]]
        if self.append_obs:
            parts.append(obs)
        if self.append_task_id:
            parts.append(F.one_hot(task, self.num_tasks).to(obs.dtype))
        return torch.cat(parts, -1) if len(parts) > 1 else parts[0]

    def attention_weights(self, obs: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        """(B, k) mixture weights, for introspection."""
        return self.encode(obs, task)[1]

    def context_cosine(self) -> torch.Tensor:
        """(T, T) cosine similarity between the context vectors of all tasks: near 1
        everywhere means the context does not tell tasks apart."""
        z = F.normalize(
            self.context_vector(
                torch.arange(self.task_embedding.table.shape[0], device=self.task_embedding.table.device)
            ),
            dim=-1,
        )
        return z @ z.T
