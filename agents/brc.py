"""BRC, "Bigger, Regularized, Categorical" (Nauman et al., 2025): BroNet actor and critics
(wide residual MLPs with layer norm) reading a learned, normalised task embedding; critics
with a categorical value distribution trained by cross-entropy. Its reward normalisation,
AdamW, single temperature and unclipped gradients are SAC options that BRC's paper configs turn on
(``sac.reward_scaling=returns``, ``sac.weight_decay``, ``sac.temperature=shared``,
``sac.alpha_beta1=0.5``, ``sac.max_grad_norm=null``); ``agent.v_max`` should equal
``sac.reward_scale_bound`` (loading a config refuses a support narrower than the bound)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from mtrl.errors import at_least, check_values, one_of, positive
from mtrl.learner.agent import Agent, EmbeddingTaskEncoder, EnvSpec
from mtrl.learner.categorical import CategoricalQ
from mtrl.networks.bronet import BroNet
from mtrl.networks.ensemble import LOG_STD_MAX, TanhGaussianActor
from mtrl.registry import register

# The actor's output layer: the means' and the log-stds' columns as separate orthogonal heads of
# gains sqrt 2 and 1 (jaxrl/networks.py NormalTanhPolicy: default_init() and
# default_init(self.log_std_scale), log_std_scale = 1), or one orthogonal matrix of gain 1 over both.
ACTOR_HEAD_GAINS = {"split": (math.sqrt(2), 1.0), "joint": 1.0}


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
    actor_head_init: str = "split"
    """split: the actor's mean and log-std heads orthogonal apart, gains sqrt 2 and 1 (BRC's code) | joint: gain 1."""
    log_std_min: float = -10.0
    """The actor's log-std floor (BRC's code: -10; mtrl's other agents: -5)."""

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
                ("agent.actor_head_init", self.actor_head_init, *one_of(ACTOR_HEAD_GAINS)),
                ("agent.log_std_min", self.log_std_min, lambda v: v < LOG_STD_MAX, f"below {LOG_STD_MAX}"),
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
            out_gain=ACTOR_HEAD_GAINS[cfg.actor_head_init],
        ),
        log_std_min=cfg.log_std_min,
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
