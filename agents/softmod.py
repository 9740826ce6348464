"""Soft Modularization (Yang et al., NeurIPS 2020): actor and critics are soft-modular
networks whose routing between modules is computed from the task's embedding and the state."""

from __future__ import annotations

from dataclasses import dataclass, field

from mtrl.errors import at_least, check_values, layer_sizes, one_of
from mtrl.learner.agent import Agent, EnvSpec, task_conditioned_agent
from mtrl.networks.ensemble import INITS
from mtrl.networks.soft_modularization import SoftModularNet
from mtrl.registry import register


@dataclass
class SoftModConfig:
    # The reference code's MT10 "shallow" network (RchalYang/Soft-Module meta_config/mt10):
    # base [400, 400], 2 layers x 2 modules of 256, routing 2 layers of 256. MT50: 4 x 4 of 128.
    name: str = "softmod"
    """The agent (mtrl list shows them)."""
    base_hidden: list[int] = field(default_factory=lambda: [400, 400])
    """Hidden-layer widths of the state's base network."""
    num_layers: int = 2
    """Layers of modules (at least 2)."""
    num_modules: int = 2
    """Modules per layer."""
    module_hidden: int = 256
    """Each module's width."""
    routing_hidden: int = 256
    """Width of the routing network's layers."""
    num_routing_layers: int = 2
    """Layers of the routing network."""
    init: str = "pytorch"
    """Module, base and routing hidden layers' initialisation: pytorch | reference."""

    def validate(self) -> None:
        check_values(
            [
                ("agent.base_hidden", self.base_hidden, layer_sizes, "a non-empty list of sizes >= 1"),
                ("agent.num_layers", self.num_layers, at_least(2), "at least 2"),
                ("agent.num_modules", self.num_modules, at_least(1), "at least 1"),
                ("agent.module_hidden", self.module_hidden, at_least(1), "at least 1"),
                ("agent.routing_hidden", self.routing_hidden, at_least(1), "at least 1"),
                ("agent.num_routing_layers", self.num_routing_layers, at_least(1), "at least 1"),
                ("agent.init", self.init, *one_of(INITS)),
            ]
        )


@register("agent", "softmod", SoftModConfig)
def make_softmod(cfg: SoftModConfig, spec: EnvSpec) -> Agent:
    """Soft Modularization: per-sample routing over layers of modules, from the task embedding."""

    def net(members: int, in_dim: int, out_dim: int) -> SoftModularNet:
        return SoftModularNet(
            members=members,
            in_dim=in_dim,
            out_dim=out_dim,
            num_tasks=spec.num_tasks,
            base_hidden=cfg.base_hidden,
            num_layers=cfg.num_layers,
            num_modules=cfg.num_modules,
            module_hidden=cfg.module_hidden,
            routing_hidden=cfg.routing_hidden,
            num_routing_layers=cfg.num_routing_layers,
            init=cfg.init,
        )

    return task_conditioned_agent(spec, net)
