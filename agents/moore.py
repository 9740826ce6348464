"""MOORE (Hendawy et al., ICLR 2024): k expert encoders made orthonormal per sample by
Gram-Schmidt, mixed by task-specific weights, read by per-task output heads, in actor and
critics alike (the critics' experts read the state and the action)."""

from __future__ import annotations

from dataclasses import dataclass, field

from mtrl.errors import ConfigError, at_least, check_values, each_at_least_1, one_of
from mtrl.learner.agent import Agent, EnvSpec, task_conditioned_agent
from mtrl.networks.ensemble import INITS
from mtrl.networks.moore_experts import MOORENet
from mtrl.registry import register


@dataclass
class MOOREConfig:
    # The reference code's Meta-World setting (AhmedMagdyHendawy/MOORE): k = 4 experts on MT10
    # (6 on MT50) of 400-400-400 units, the last layer linear; one linear head per task.
    name: str = "moore"
    """The agent (mtrl list shows them)."""
    num_experts: int = 4
    """k: experts whose outputs are orthogonalised (Gram-Schmidt) and mixed per task."""
    expert_hidden: list[int] = field(default_factory=lambda: [400, 400])
    """Hidden-layer widths of each expert."""
    expert_dim: int = 400
    """Each expert's output size (its last, linear layer); at least num_experts."""
    head_hidden: list[int] = field(default_factory=list)
    """Hidden-layer widths of each task's output head; empty: one linear layer."""
    init: str = "pytorch"
    """Initialisation: pytorch | reference (see mtrl/networks/ensemble.py)."""

    def validate(self) -> None:
        check_values(
            [
                ("agent.num_experts", self.num_experts, at_least(1), "at least 1"),
                ("agent.expert_hidden", self.expert_hidden, each_at_least_1, "a list of sizes >= 1"),
                ("agent.expert_dim", self.expert_dim, at_least(1), "at least 1"),
                ("agent.head_hidden", self.head_hidden, each_at_least_1, "a list of sizes >= 1"),
                ("agent.init", self.init, *one_of(INITS)),
            ]
        )
        if self.expert_dim < self.num_experts:
            raise ConfigError(
                f"agent.expert_dim={self.expert_dim} is below agent.num_experts={self.num_experts}: "
                f"{self.num_experts} orthonormal vectors need at least {self.num_experts} dimensions; "
                "raise expert_dim or lower num_experts"
            )


@register("agent", "moore", MOOREConfig)
def make_moore(cfg: MOOREConfig, spec: EnvSpec) -> Agent:
    """MOORE: orthonormal mixture of experts with task-specific weights and heads."""

    def net(members: int, in_dim: int, out_dim: int) -> MOORENet:
        return MOORENet(
            members=members,
            in_dim=in_dim,
            out_dim=out_dim,
            num_tasks=spec.num_tasks,
            num_experts=cfg.num_experts,
            expert_hidden=cfg.expert_hidden,
            expert_dim=cfg.expert_dim,
            head_hidden=cfg.head_hidden,
            init=cfg.init,
        )

    return task_conditioned_agent(spec, net)
