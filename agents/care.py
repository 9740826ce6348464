"""CARE: SAC whose actor and critics read a mixture of k state encoders weighted by
attention from a task-description embedding (Sodhani et al., ICML 2021)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from mtrl.errors import ConfigError, at_least, check_values, each_at_least_1, one_of, positive
from mtrl.learner.agent import ACTOR_ENCODERS, Agent, EnvSpec, MLPAgentConfig, mlp_critic
from mtrl.networks.care_encoder import ATTENTION_KINDS, EMBEDDING_KINDS, CAREEncoder, TaskEmbedding
from mtrl.networks.ensemble import TanhGaussianActor
from mtrl.networks.task_embeddings import load_task_embeddings
from mtrl.registry import register


@dataclass
class CAREConfig(MLPAgentConfig):
    name: str = "care"
    """The agent (mtrl list shows them)."""
    num_encoders: int = 6
    """k: the number of state encoders in the mixture (Meta-World+: 6 on MT10, 10 on MT50; fb/mtrl's MT10 run: 4)."""
    encoder_hidden: list[int] = field(default_factory=lambda: [50])
    """Hidden-layer widths of each state encoder (fb/mtrl: one of 50; Meta-World+: two)."""
    encoder_dim: int = 50
    """Each encoder's output size, and the context vector's."""
    context_hidden: list[int] = field(default_factory=lambda: [50, 50])
    """Hidden-layer widths of the MLP from the task embedding to the context vector (and of the mlp attention's)."""
    attention: str = "mlp"
    """How the context weighs the encoders: mlp (an MLP of the context alone: the reference codes') | dot (the paper's).

    dot's weights depend on the state too; mlp was no worse in the MT10 CARE probes (docs/RESULTS.md)."""
    attention_temperature: float = 1.0
    """The attention softmax's temperature."""
    task_embedding: str = "pretrained"
    """pretrained (fixed description embeddings) | learned (initialised from them) | one_hot."""
    embedding_relu: bool = True
    """A ReLU on the task embedding before the context MLP, as both reference codes (fb/mtrl
    TaskEncoder, Meta-World+ CARENetwork); false: mtrl's earlier CARE, which a run's config.yaml
    without this key means (docs/AGENTS.md). A no-op on one_hot embeddings."""
    embedding_file: str | None = None
    """The task-description embeddings' file; null: the suite's shipped file."""
    actor_encoder: str = "own"
    """own | critic_detached | critic: which CARE encoder the actor reads, and whether it trains it.

    own: the actor has its own encoder, trained by the actor loss (Meta-World+'s reference
    design); critic_detached: it reads the critic's encoder without training it (the original
    CARE code); critic: it reads and trains the critic's encoder."""
    critic_reads_obs: bool = False
    """Also give the critics the raw observation beside the CARE representation (an ablation,
    not CARE: is the encoder mixture the critics' bottleneck? docs/RESULTS.md, reach-v3)."""
    critic_reads_task_id: bool = False
    """Also give the critics the task's one-hot row, as MT-SAC's critics read it (an ablation, not
    CARE: is the learned context too weak a task signal for the critics? docs/RESULTS.md, reach-v3)."""
    critic_encoder_trains: bool = True
    """false: the critics' CARE encoder keeps its initial weights and takes no gradient (an
    ablation, not CARE: does training it through the critic loss cost the critics reach-v3's
    geometry? docs/RESULTS.md)."""
    actor_reads_obs_and_task_id: bool = False
    """Also give the actor the raw observation and the task's one-hot row beside its own CARE
    encoder, all that MT-SAC's actor reads (an ablation, not CARE: is CARE's actor what loses
    reach-v3? docs/RESULTS.md). Needs agent.actor_encoder=own."""

    def validate(self) -> None:
        check_values(
            [
                *self.network_checks(),
                ("agent.num_encoders", self.num_encoders, at_least(1), "at least 1"),
                ("agent.encoder_hidden", self.encoder_hidden, each_at_least_1, "a list of sizes >= 1"),
                ("agent.encoder_dim", self.encoder_dim, at_least(1), "at least 1"),
                ("agent.context_hidden", self.context_hidden, each_at_least_1, "a list of sizes >= 1"),
                ("agent.attention", self.attention, *one_of(ATTENTION_KINDS)),
                ("agent.attention_temperature", self.attention_temperature, positive, "positive"),
                ("agent.task_embedding", self.task_embedding, *one_of(EMBEDDING_KINDS)),
                ("agent.actor_encoder", self.actor_encoder, *one_of(ACTOR_ENCODERS)),
            ]
        )
        if not self.critic_encoder_trains and self.actor_encoder == "critic":
            raise ConfigError(
                "agent.critic_encoder_trains=false freezes the encoder that agent.actor_encoder=critic trains"
            )
        if self.actor_reads_obs_and_task_id and self.actor_encoder != "own":
            raise ConfigError("agent.actor_reads_obs_and_task_id=true needs agent.actor_encoder=own (its own encoder)")


@register("agent", "care", CAREConfig)
def make_care(cfg: CAREConfig, spec: EnvSpec) -> Agent:
    """CARE: mixture of encoders with attention from task-description embeddings."""
    pretrained = None
    if cfg.task_embedding in ("pretrained", "learned"):
        path = cfg.embedding_file or spec.embedding_file
        if path is None:
            raise ConfigError(
                f"suite '{spec.suite}' ships no task embeddings; run `mtrl embed-tasks {spec.suite} --out FILE` "
                "and set agent.embedding_file=FILE (or agent.task_embedding=one_hot)"
            )
        pretrained = torch.as_tensor(load_task_embeddings(path, list(spec.task_names), list(spec.descriptions)))

    def care_encoder(append_obs: bool = False, append_task_id: bool = False) -> CAREEncoder:
        embedding = TaskEmbedding(kind=cfg.task_embedding, num_tasks=spec.num_tasks, pretrained=pretrained)
        return CAREEncoder(
            obs_dim=spec.obs_dim,
            task_embedding=embedding,
            num_encoders=cfg.num_encoders,
            encoder_hidden=cfg.encoder_hidden,
            encoder_dim=cfg.encoder_dim,
            context_hidden=cfg.context_hidden,
            attention=cfg.attention,
            temperature=cfg.attention_temperature,
            append_obs=append_obs,
            append_task_id=append_task_id,
            embedding_relu=cfg.embedding_relu,
        )

    encoder = care_encoder(append_obs=cfg.critic_reads_obs, append_task_id=cfg.critic_reads_task_id)
    encoder.requires_grad_(cfg.critic_encoder_trains)  # the learner trains what requires grad
    both = cfg.actor_reads_obs_and_task_id
    actor_encoder = care_encoder(append_obs=both, append_task_id=both) if cfg.actor_encoder == "own" else None
    actor_in = (actor_encoder or encoder).out_dim  # the encoder the actor reads
    actor = TanhGaussianActor.mlp(in_dim=actor_in, act_dim=spec.act_dim, hidden=cfg.hidden_sizes, init=cfg.init)
    critic = mlp_critic(cfg, encoder.out_dim, spec.act_dim)
    return Agent(encoder, actor, critic, actor_encoder=cfg.actor_encoder, actor_encoder_net=actor_encoder)
