"""Multi-head SAC: a shared trunk with one output head per task in actor and critics."""

from __future__ import annotations

from dataclasses import dataclass

from mtrl.agents.mtsac import MTSACConfig
from mtrl.learner.agent import Agent, EnvSpec, OneHotTaskEncoder, mlp_critic
from mtrl.networks.ensemble import TanhGaussianActor
from mtrl.registry import register


@dataclass
class MHSACConfig(MTSACConfig):
    """MT-SAC's fields; the heads are what differs (``make_mhsac``)."""

    name: str = "mhsac"
    """The agent (mtrl list shows them)."""
    task_visible: bool = True
    """Also append the task's one-hot to the shared trunk's input (Meta-World+ MH-SAC)."""


@register("agent", "mhsac", MHSACConfig)
def make_mhsac(cfg: MHSACConfig, spec: EnvSpec) -> Agent:
    """Multi-head SAC: shared hidden layers, one output head per task."""
    encoder = OneHotTaskEncoder(spec.obs_dim, spec.num_tasks, cfg.task_visible)
    actor = TanhGaussianActor.mlp(
        in_dim=encoder.out_dim, act_dim=spec.act_dim, hidden=cfg.hidden_sizes, num_heads=spec.num_tasks, init=cfg.init
    )
    critic = mlp_critic(cfg, encoder.out_dim, spec.act_dim, spec.num_tasks)
    return Agent(encoder, actor, critic)
