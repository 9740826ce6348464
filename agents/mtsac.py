"""MT-SAC: one network for all tasks, the task given as a one-hot appended to the state."""

from __future__ import annotations

from dataclasses import dataclass

from mtrl.errors import check_values
from mtrl.learner.agent import Agent, EnvSpec, MLPAgentConfig, OneHotTaskEncoder, mlp_critic
from mtrl.networks.ensemble import TanhGaussianActor
from mtrl.registry import register


@dataclass
class MTSACConfig(MLPAgentConfig):
    name: str = "mtsac"
    """The agent (mtrl list shows them)."""
    task_visible: bool = True
    """Append the task's one-hot to the state; false: hidden (single-task SAC on all tasks)."""

    def validate(self) -> None:
        check_values(self.network_checks())


@register("agent", "mtsac", MTSACConfig)
def make_mtsac(cfg: MTSACConfig, spec: EnvSpec) -> Agent:
    """Multi-task SAC with a one-hot task id appended to the observation."""
    encoder = OneHotTaskEncoder(spec.obs_dim, spec.num_tasks, cfg.task_visible)
    actor = TanhGaussianActor.mlp(in_dim=encoder.out_dim, act_dim=spec.act_dim, hidden=cfg.hidden_sizes, init=cfg.init)
    critic = mlp_critic(cfg, encoder.out_dim, spec.act_dim)
    return Agent(encoder, actor, critic)
