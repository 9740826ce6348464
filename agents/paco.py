"""PaCo (Sun et al., NeurIPS 2022): actor and critics whose parameters are K shared sets
composed by each task's vector w_task; tasks whose loss explodes are masked and their w
reset (``sac.task_loss_threshold`` and the fields after it, set as PaCo's reference code in
configs/*-paco.yaml, act on w: ``Agent.task_specific_blocks``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from mtrl.errors import at_least, check_values, layer_sizes, one_of
from mtrl.learner.agent import Agent, EnvSpec, task_conditioned_agent
from mtrl.networks.ensemble import INITS
from mtrl.networks.paco_layers import PaCoNet
from mtrl.registry import register


@dataclass
class PaCoConfig:
    # The reference MT10 setting (TToTMooN/paco-mtrl metaworld_mt10_paco_conf.py): K = 5 sets
    # of 400-400-400 networks.
    name: str = "paco"
    """The agent (mtrl list shows them)."""
    hidden_sizes: list[int] = field(default_factory=lambda: [400, 400, 400])
    """Hidden-layer widths of each parameter set's actor and critics."""
    num_sets: int = 5
    """K: parameter sets, mixed by each task's learned composition vector."""
    init: str = "pytorch"
    """Each layer's first set (copied to all K): pytorch | reference."""

    def validate(self) -> None:
        check_values(
            [
                ("agent.hidden_sizes", self.hidden_sizes, layer_sizes, "a non-empty list of sizes >= 1"),
                ("agent.num_sets", self.num_sets, at_least(1), "at least 1"),
                ("agent.init", self.init, *one_of(INITS)),
            ]
        )


@register("agent", "paco", PaCoConfig)
def make_paco(cfg: PaCoConfig, spec: EnvSpec) -> Agent:
    """PaCo: task parameters = Phi w_task, K shared parameter sets."""
    init = "pytorch" if cfg.init == "pytorch" else "orthogonal"

    def net(members: int, in_dim: int, out_dim: int) -> PaCoNet:
        return PaCoNet(
            members=members,
            in_dim=in_dim,
            hidden=cfg.hidden_sizes,
            out_dim=out_dim,
            num_tasks=spec.num_tasks,
            num_sets=cfg.num_sets,
            init=init,
        )

    return task_conditioned_agent(spec, net)
