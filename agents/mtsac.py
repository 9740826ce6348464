"""MT-SAC: one network for all tasks, the task given as a one-hot appended to the state."""

from __future__ import annotations

from dataclasses import dataclass, field

from mtrl.errors import check_values, layer_sizes, one_of
from mtrl.learner.agent import Agent, EnvSpec, OneHotTaskEncoder, critic_size_check, mlp_critic
from mtrl.networks.ensemble import INITS, TanhGaussianActor
from mtrl.registry import register


@dataclass
class MTSACConfig:
    name: str = "mtsac"
    """The agent (mtrl list shows them)."""
    hidden_sizes: list[int] = field(default_factory=lambda: [400, 400, 400])
    """Hidden-layer widths of the actor and the critics."""
    init: str = "pytorch"
    """Actor and critic networks' initialisation: pytorch | reference (see mtrl/networks/ensemble.py)."""
    critic_hidden_sizes: list[int] | None = None
    """The twin critics' hidden widths; null: hidden_sizes.

    Meta-World+'s scaling study found critic width buys most of the gain."""
    critic_layer_norm: bool = False
    """LayerNorm after each of the critics' hidden layers."""
    task_visible: bool = True
    """Append the task's one-hot to the state; false: hidden (single-task SAC on all tasks)."""

    def validate(self) -> None:
        check_values(
            [
                ("agent.hidden_sizes", self.hidden_sizes, layer_sizes, "a non-empty list of sizes >= 1"),
                ("agent.init", self.init, *one_of(INITS)),
                critic_size_check(self),
            ]
        )


@register("agent", "mtsac", MTSACConfig)
def make_mtsac(cfg: MTSACConfig, spec: EnvSpec) -> Agent:
    """Multi-task SAC with a one-hot task id appended to the observation."""
    encoder = OneHotTaskEncoder(spec.obs_dim, spec.num_tasks, cfg.task_visible)
    actor = TanhGaussianActor.mlp(in_dim=encoder.out_dim, act_dim=spec.act_dim, hidden=cfg.hidden_sizes, init=cfg.init)
    critic = mlp_critic(cfg, encoder.out_dim, spec.act_dim)
    return Agent(encoder, actor, critic)
