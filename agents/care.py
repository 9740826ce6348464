"""CARE: SAC whose actor and critics read a mixture of k state encoders weighted by
attention from a task-description embedding (Sodhani et al., ICML 2021)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from mtrl.agent import ACTOR_ENCODERS, Agent, EnvSpec
from mtrl.care import ATTENTION_KINDS, EMBEDDING_KINDS, CAREEncoder, TaskEmbedding
from mtrl.errors import ConfigError
from mtrl.embeddings import load_task_embeddings
from mtrl.networks import TanhGaussianActor, TwinQ
from mtrl.registry import register


@dataclass
class CAREConfig:
    name: str = "care"
    hidden_sizes: list[int] = field(default_factory=lambda: [400, 400, 400])  # actor and critics
    num_encoders: int = 6  # k
    encoder_hidden: list[int] = field(default_factory=lambda: [50])
    encoder_dim: int = 50  # each encoder's output and the context vector's size
    context_hidden: list[int] = field(default_factory=lambda: [50])
    attention: str = "dot"  # dot (the paper's) | mlp (an MLP of the context)
    attention_temperature: float = 1.0
    task_embedding: str = "pretrained"  # pretrained | learned | one_hot
    embedding_file: str | None = None  # None: the suite's shipped file
    # own: the actor has its own CARE encoder, trained by the actor loss (Meta-World+'s
    # reference design); critic_detached: it reads the critic's encoder without training it
    # (the original CARE code); critic: it reads and trains the critic's encoder.
    actor_encoder: str = "own"


@register("agent", "care", CAREConfig)
def make_care(cfg: CAREConfig, spec: EnvSpec) -> Agent:
    """CARE: mixture of encoders with attention from task-description embeddings."""
    if cfg.attention not in ATTENTION_KINDS:
        raise ConfigError(f"agent.attention must be one of {', '.join(ATTENTION_KINDS)}, got '{cfg.attention}'")
    if cfg.task_embedding not in EMBEDDING_KINDS:
        raise ConfigError(f"agent.task_embedding must be one of {', '.join(EMBEDDING_KINDS)}, got '{cfg.task_embedding}'")
    if cfg.actor_encoder not in ACTOR_ENCODERS:
        raise ConfigError(f"agent.actor_encoder must be one of {', '.join(ACTOR_ENCODERS)}, got '{cfg.actor_encoder}'")
    if cfg.num_encoders < 1:
        raise ConfigError(f"agent.num_encoders must be at least 1, got {cfg.num_encoders}")
    pretrained = None
    if cfg.task_embedding in ("pretrained", "learned"):
        path = cfg.embedding_file or spec.embedding_file
        if path is None:
            raise ConfigError(
                f"suite '{spec.suite}' ships no task embeddings; run `mtrl embed-tasks {spec.suite} --out FILE` "
                "and set agent.embedding_file=FILE (or agent.task_embedding=one_hot)"
            )
        pretrained = torch.as_tensor(load_task_embeddings(path, list(spec.task_names), list(spec.descriptions)))

    def care_encoder() -> CAREEncoder:
        embedding = TaskEmbedding(cfg.task_embedding, spec.num_tasks, pretrained)
        return CAREEncoder(spec.obs_dim, embedding, cfg.num_encoders, cfg.encoder_hidden, cfg.encoder_dim,
                           cfg.context_hidden, cfg.attention, cfg.attention_temperature)

    encoder = care_encoder()
    actor_encoder = care_encoder() if cfg.actor_encoder == "own" else None
    actor = TanhGaussianActor(encoder.out_dim, spec.act_dim, cfg.hidden_sizes)
    critic = TwinQ(encoder.out_dim, spec.act_dim, cfg.hidden_sizes)
    return Agent(encoder, actor, critic, actor_encoder=cfg.actor_encoder, actor_encoder_net=actor_encoder)
