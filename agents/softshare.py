"""Soft parameter sharing: one actor and one pair of critics per task (batched), each task's
parameters pulled toward the tasks' mean by an L2 penalty of strength ``agent.strength``,
added to the critic and actor losses. strength 0: independent single-task networks trained
on one replay; large: the networks stay close to one shared network."""

from __future__ import annotations

from dataclasses import dataclass, field

from mtrl.errors import at_least, check_values, layer_sizes, one_of
from mtrl.learner.agent import Agent, EnvSpec, task_conditioned_agent
from mtrl.learner.soft_sharing import PerTaskMLP
from mtrl.networks.ensemble import INITS
from mtrl.registry import register


@dataclass
class SoftShareConfig:
    name: str = "softshare"
    """The agent (mtrl list shows them)."""
    hidden_sizes: list[int] = field(default_factory=lambda: [400, 400, 400])
    """Hidden-layer widths of each task's actor and critics."""
    strength: float = 1e-3
    """L2 penalty on each task's parameters' distance to the tasks' mean parameters."""
    init: str = "pytorch"
    """Initialisation: pytorch | reference (orthogonal hidden layers)."""

    def validate(self) -> None:
        check_values(
            [
                ("agent.hidden_sizes", self.hidden_sizes, layer_sizes, "a non-empty list of sizes >= 1"),
                ("agent.strength", self.strength, at_least(0), "at least 0 (0: independent networks)"),
                ("agent.init", self.init, *one_of(INITS)),
            ]
        )


@register("agent", "softshare", SoftShareConfig)
def make_softshare(cfg: SoftShareConfig, spec: EnvSpec) -> Agent:
    """Soft sharing: a network per task, an L2 pull toward their mean."""
    init = "pytorch" if cfg.init == "pytorch" else "orthogonal"

    def net(members: int, in_dim: int, out_dim: int) -> PerTaskMLP:
        return PerTaskMLP(members, in_dim, cfg.hidden_sizes, out_dim, spec.num_tasks, cfg.strength, init)

    return task_conditioned_agent(spec, net)
