"""Soft Modularization (Yang, Xu, Wu & Wang, "Multi-Task Reinforcement Learning with Soft
Modularization", NeurIPS 2020), as its reference code's ``ModularGatedCascadeCondNet``
(RchalYang/Soft-Module) computes it:

    h      = base(x)                    MLP, linear last layer                 (B, D)
    e      = task_embedding(one_hot)    one linear layer                       (B, D)
    e      = routing_mlp(relu(e * h))   num_routing_layers, linear last        (B, G)
    p_0    = softmax(W_0 relu(e))                                              (B, n, n)
    p_l    = softmax(W_l relu(C_l [p_0 .. p_{l-1}] * e))    l = 1 .. L-2        (B, n, n)
    p_last = softmax(W_last relu(C_last [p_0 .. p_{L-2}] * e))                 (B, n)
    y_0,j  = module_0,j(relu(h))                                               n modules
    y_l,j  = module_l,j(relu(sum_i p_{l-1}[j, i] y_{l-1,i}))                   l = 1 .. L-1
    out    = last(relu(sum_i p_last[i] y_{L-1,i}))

Softmaxes run over the source modules i (each destination's routing weights are a
distribution). The n modules of a layer are one batched matmul (``EnsembleLinear`` with
members x n members), so no Python loop runs over modules or tasks; the loop over layers
is the network's depth.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from mtrl.networks.ensemble import EnsembleLinear, EnsembleMLP, TaskBlock

MODULE_BIAS_INIT = 0.1  # RchalYang/Soft-Module torchrl/networks/init.py basic_init


class SoftModularNet(nn.Module):
    """``members`` independent soft-modular networks (twin critics: 2) with ``num_layers``
    layers of ``num_modules`` modules of width ``module_hidden``."""

    def __init__(
        self,
        *,
        members: int,
        in_dim: int,
        out_dim: int,
        num_tasks: int,
        base_hidden: list[int],
        num_layers: int,
        num_modules: int,
        module_hidden: int,
        routing_hidden: int,
        num_routing_layers: int,
        init: str = "pytorch",
    ):
        super().__init__()
        if num_layers < 2:
            raise ValueError(f"soft modularization needs at least 2 module layers, got {num_layers}")
        self.members, self.out_dim, self.num_tasks = members, out_dim, num_tasks
        self.num_layers, self.num_modules = num_layers, num_modules
        n, width = num_modules, base_hidden[-1]
        # The reference's MLPBase: hidden layers, the last one linear (no activation).
        self.base = EnsembleMLP(
            members=members, in_dim=in_dim, hidden=base_hidden[:-1], out_dim=width, head_init="orthogonal", init=init
        )
        self.task_embedding = EnsembleLinear(members=members, in_dim=num_tasks, out_dim=width, init=init)
        self.routing = EnsembleMLP(
            members=members,
            in_dim=width,
            hidden=[routing_hidden] * (num_routing_layers - 1),
            out_dim=routing_hidden,
            head_init="orthogonal",
            init=init,
        )
        # Routing logits start near 0 (uniform routing), as the reference's +-3e-3 init.
        self.route_first = EnsembleLinear(members=members, in_dim=routing_hidden, out_dim=n * n, init="small")
        self.route_cond = nn.ModuleList(
            EnsembleLinear(members=members, in_dim=(i + 1) * n * n, out_dim=routing_hidden, init=init)
            for i in range(num_layers - 1)
        )
        self.route_next = nn.ModuleList(
            EnsembleLinear(members=members, in_dim=routing_hidden, out_dim=n * n, init="small")
            for _ in range(num_layers - 2)
        )
        self.route_last = EnsembleLinear(members=members, in_dim=routing_hidden, out_dim=n, init="small")
        self.module_layers = nn.ModuleList(
            EnsembleLinear(
                members=members * n, in_dim=width if i == 0 else module_hidden, out_dim=module_hidden, init=init
            )
            for i in range(num_layers)
        )
        for layer in self.module_layers:  # the reference's basic_init bias: keeps the ReLUs after mixing alive
            nn.init.constant_(layer.bias, MODULE_BIAS_INIT)
        self.last = EnsembleLinear(members=members, in_dim=module_hidden, out_dim=out_dim, init="small")

    def routing_weights(
        self, x: torch.Tensor, task: torch.Tensor
    ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """([p_0 .. p_{L-2}] each (members, B, n, n), p_last (members, B, n), h = base(x))."""
        m, n = self.members, self.num_modules
        h = self.base(x)
        e = self.task_embedding(F.one_hot(task, self.num_tasks).to(h.dtype).unsqueeze(0).expand(m, -1, -1))
        e = self.routing(F.relu(e * h))
        probs = [F.softmax(self.route_first(F.relu(e)).unflatten(-1, (n, n)), dim=-1)]
        for cond, route in zip(self.route_cond, [*self.route_next, self.route_last]):
            c = F.relu(cond(torch.cat([p.flatten(-2) for p in probs], -1)) * e)
            logits = route(c)
            probs.append(F.softmax(logits.unflatten(-1, (n, n)) if route is not self.route_last else logits, dim=-1))
        return probs[:-1], probs[-1], h

    def forward(self, x: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        m, n = self.members, self.num_modules
        probs, last, h = self.routing_weights(x, task)
        b = h.shape[1]
        y = self.module_layers[0](F.relu(h).unsqueeze(1).expand(m, n, b, h.shape[-1]).reshape(m * n, b, -1))
        for layer, p in zip(self.module_layers[1:], probs):
            mixed = torch.einsum("mibh,mbji->mjbh", y.view(m, n, b, -1), p)  # destination j reads sum_i p[j, i] y_i
            y = layer(F.relu(mixed).reshape(m * n, b, -1))
        out = F.relu(torch.einsum("mibh,mbi->mbh", y.view(m, n, b, -1), last))
        with torch.autocast(out.device.type, enabled=False):  # output layer in float32, as EnsembleMLP's head
            return self.last(out.float())

    def shared_parameters(self) -> list[nn.Parameter]:
        """All but the task embedding: the routing network too is shared, a function of it."""
        own = {id(p) for p in self.task_embedding.parameters()}
        return [p for p in self.parameters() if id(p) not in own]

    def task_blocks(self) -> list[TaskBlock]:
        """Row t of the task embedding's weight (members, T, D): task t's embedding."""
        return [TaskBlock("task_embedding.weight", 1, 0, 1)]
