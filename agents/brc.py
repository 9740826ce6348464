"""BRC, "Bigger, Regularized, Categorical" (Nauman et al., 2025): BroNet actor and critics
(wide residual MLPs with layer norm) reading a learned, normalised task embedding; critics
with a categorical value distribution trained by cross-entropy. Its reward normalisation and
AdamW are SAC options that BRC's configs turn on (``sac.reward_scaling=returns``,
``sac.weight_decay``); ``agent.v_max`` should equal ``sac.reward_scale_bound`` (loading a
config refuses a support narrower than the bound)."""

from __future__ import annotations

from dataclasses import dataclass

from mtrl.errors import at_least, check_values, positive
from mtrl.learner.agent import Agent, EmbeddingTaskEncoder, EnvSpec
from mtrl.learner.categorical import CategoricalQ
from mtrl.networks.bronet import BroNet
from mtrl.networks.ensemble import TanhGaussianActor
from mtrl.registry import register


@dataclass
class BRCConfig:
    # The reference code's multi-task setting (naumix/BiggerRegularizedCategorical train.py):
    # critics 4096 wide with 2 residual blocks, actor 256 wide with 1, a 32-d task embedding,
    # 101 bins on [-10, 10].
    name: str = "brc"
    """The agent (mtrl list shows them)."""
    critic_width: int = 4096
    """Width of the critics' BroNet (residual blocks of LayerNorm MLPs)."""
    critic_depth: int = 2
    """Residual blocks in each critic."""
    actor_width: int = 256
    """Width of the actor's BroNet."""
    actor_depth: int = 1
    """Residual blocks in the actor."""
    embedding_dim: int = 32
    """Size of the learned task embedding concatenated to the state."""
    bins: int = 101
    """Atoms of the categorical critic's support."""
    v_max: float = 10.0
    """The categorical support spans [-v_max, v_max]."""

    def validate(self) -> None:
        check_values(
            [
                ("agent.critic_width", self.critic_width, at_least(1), "at least 1"),
                ("agent.critic_depth", self.critic_depth, at_least(0), "at least 0"),
                ("agent.actor_width", self.actor_width, at_least(1), "at least 1"),
                ("agent.actor_depth", self.actor_depth, at_least(0), "at least 0"),
                ("agent.embedding_dim", self.embedding_dim, at_least(1), "at least 1"),
                ("agent.bins", self.bins, at_least(2), "at least 2"),
                ("agent.v_max", self.v_max, positive, "positive"),
            ]
        )


@register("agent", "brc", BRCConfig)
def make_brc(cfg: BRCConfig, spec: EnvSpec) -> Agent:
    """BRC: BroNet actor and categorical twin critics on [state || task embedding]."""
    # The embedding belongs to the critics (trained by their loss); the actor reads it
    # without training it, as the reference code's actor input.
    encoder = EmbeddingTaskEncoder(spec.obs_dim, spec.num_tasks, cfg.embedding_dim)
    actor = TanhGaussianActor(
        BroNet(
            members=1,
            in_dim=encoder.out_dim,
            width=cfg.actor_width,
            depth=cfg.actor_depth,
            out_dim=2 * spec.act_dim,
            out_gain=1.0,
        )
    )
    critic = CategoricalQ(
        BroNet(
            members=2,
            in_dim=encoder.out_dim + spec.act_dim,
            width=cfg.critic_width,
            depth=cfg.critic_depth,
            out_dim=cfg.bins,
        ),
        cfg.v_max,
        cfg.bins,
    )
    return Agent(encoder, actor, critic, actor_encoder="critic_detached")
