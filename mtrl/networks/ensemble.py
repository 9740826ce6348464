"""Building blocks: ensembles of MLPs run as one batched matmul, optional per-task output
heads, the tanh-Gaussian actor and the twin Q critic.

Ensembles (the two critics, CARE's k encoders) are one module with stacked weights so a
forward pass is a handful of ``baddbmm`` calls, never a Python loop over members.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

# The log-std is squashed into [LOG_STD_MIN, LOG_STD_MAX] by tanh (pytorch_sac's
# parameterisation, which fb/mtrl's CARE builds on). Why -5 and not the -20 or -10 of
# clamping implementations (SB3, Meta-World+): with a tanh squash an output of 0 -- the
# start, given the small output layer -- maps to the middle of the range; a -20 floor
# puts that middle at -9 (std 1e-4, a nearly deterministic initial policy), -5 at -1.5.
# exp(-5) = 0.007 is still far below any useful action noise on [-1, 1] actions.
LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


# Two initialisations (``init`` below, the agents' ``agent.init``):
# - "reference": orthogonal weights and zero biases for hidden layers, as pytorch_sac (the SAC
#   code fb/mtrl's CARE builds on); output layers start small (mtrl's choice; pytorch_sac's are
#   orthogonal too) so that Q values start near 0 and the policy near the middle of its
#   mean/log-std range. fb/mtrl itself inits every linear layer xavier-uniform with zero bias
#   (its mtrl/agent/utils.py weight_init), Meta-World+ he-uniform.
# - "pytorch", PyTorch's nn.Linear default (weights and biases uniform in +-1/sqrt(in)), as
#   SB3 has. The default for actor and critic networks: it learned faster in mtrl's ablation
#   (toy suite, 5 seeds: 0.86 vs 0.54 mean success at 5k steps; MT10, 3 seeds: 0.113 vs
#   0.059 at 150k steps, on par with SB3's 0.123; docs/RESULTS.md).
# CARE's representation modules (encoders, context, attention scores) always use the
# reference init: with PyTorch's, the context vectors of different tasks start nearly
# parallel (pairwise cosine ~0.99), the random biases dominating the small differences
# between task embeddings.
OUTPUT_INIT_SCALE = 1e-3
INITS = ("pytorch", "reference")


class EnsembleLinear(nn.Module):
    """``members`` independent linear layers applied to a (members, batch, in) tensor.

    ``init="orthogonal"``: each member's (in, out) weight is orthogonal (gain 1), bias 0.
    ``init="small"``: weights uniform in +-OUTPUT_INIT_SCALE, bias 0 (output layers).
    ``init="pytorch"``: weights and biases uniform in +-1/sqrt(in), as ``nn.Linear``.
    """

    def __init__(self, *, members: int, in_dim: int, out_dim: int, init: str = "orthogonal"):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(members, in_dim, out_dim))
        self.bias = nn.Parameter(torch.zeros(members, 1, out_dim))
        if init == "orthogonal":
            for w in self.weight.data:  # member by member, as separate nn.Linear layers would be
                nn.init.orthogonal_(w)
        elif init == "small":
            nn.init.uniform_(self.weight, -OUTPUT_INIT_SCALE, OUTPUT_INIT_SCALE)
        elif init == "pytorch":
            bound = 1.0 / math.sqrt(in_dim)
            nn.init.uniform_(self.weight, -bound, bound)
            nn.init.uniform_(self.bias, -bound, bound)
        else:
            raise ValueError(f"unknown init '{init}', expected 'orthogonal', 'small' or 'pytorch'")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class EnsembleMLP(nn.Module):
    """``members`` ReLU MLPs with identical shapes, evaluated together.

    The interface every task-conditioned network of an actor or critic has (the other
    architectures, e.g. ``mtrl/networks/paco_layers.py``, follow it): ``forward(x, task)`` with x (batch, in)
    -> (members, batch, out); ``members``, ``out_dim``; ``shared_parameters()`` (what every
    task's output depends on: conflict monitoring acts there) and ``task_blocks()`` (the
    per-task slices PaCo's reset acts on).

    With ``num_heads > 1`` the last layer has one output head per task and each sample
    reads the head of its task (multi-head SAC); all heads are computed in one matmul.
    Input is (batch, in) shared by all members or (members, batch, in); output is
    (members, batch, out). ``init="reference"``: orthogonal hidden layers and a ``head_init``
    output layer ("small" for policy/value outputs, "orthogonal" for representations, CARE's
    encoders and context, whose outputs must differ from the start); ``init="pytorch"``:
    PyTorch's default in every layer. ``layer_norm``: each hidden layer is Linear -> LayerNorm
    -> ReLU (BRC's and FastTD3's critics), each member with its own gain and bias.
    """

    def __init__(
        self,
        *,
        members: int,
        in_dim: int,
        hidden: list[int],
        out_dim: int,
        num_heads: int = 1,
        head_init: str = "small",
        init: str = "reference",
        layer_norm: bool = False,
    ):
        super().__init__()
        if init not in INITS:
            raise ValueError(f"unknown init '{init}', expected one of {INITS}")
        self.members, self.out_dim, self.num_heads = members, out_dim, num_heads
        sizes = [in_dim, *hidden]
        hidden_init, head_init = ("pytorch", "pytorch") if init == "pytorch" else ("orthogonal", head_init)
        self.hidden = nn.ModuleList(
            EnsembleLinear(members=members, in_dim=a, out_dim=b, init=hidden_init)
            for a, b in zip(sizes[:-1], sizes[1:])
        )
        # absent, not identity, without layer_norm: checkpoints' keys stay as they were
        self.norms = nn.ModuleList(EnsembleLayerNorm(members, b) for b in hidden) if layer_norm else None
        self.head = EnsembleLinear(members=members, in_dim=sizes[-1], out_dim=out_dim * num_heads, init=head_init)

    def forward(self, x: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(self.members, -1, -1)
        for i, layer in enumerate(self.hidden):
            x = layer(x)
            x = F.relu(self.norms[i](x) if self.norms is not None else x)
        # The output layer stays float32 under a bfloat16 autocast: Q values reach the
        # hundreds, where bfloat16's 3 significant digits would swamp the rewards.
        with torch.autocast(x.device.type, enabled=False):
            out = self.head(x.float())
        if self.num_heads == 1:
            return out
        return select_heads(out, task, self.num_heads)

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters every task's output depends on: all but per-task heads."""
        params = [p for layer in self.hidden for p in layer.parameters()]
        params += list(self.norms.parameters()) if self.norms is not None else []
        return params + (list(self.head.parameters()) if self.num_heads == 1 else [])

    def task_blocks(self) -> list[TaskBlock]:
        """Each task's out_dim columns of a per-task head's weight (members, in, out * heads)
        and bias (members, 1, out * heads), as ``forward`` reads them."""
        return head_columns("head", self.num_heads, self.out_dim)


class EnsembleLayerNorm(nn.Module):
    """LayerNorm over the last dimension of a (members, batch, dim) tensor, each member with
    its own elementwise gain (starting at 1) and bias (at 0)."""

    def __init__(self, members: int, dim: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(members, 1, dim))
        self.bias = nn.Parameter(torch.zeros(members, 1, dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:], eps=self.eps) * self.weight + self.bias


def select_heads(out: torch.Tensor, task: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(members, batch, out * heads) -> (members, batch, out): each sample's task's head."""
    if num_heads == 1:
        return out
    members, batch = out.shape[:2]
    out = out.view(members, batch, num_heads, -1)
    index = task.view(1, -1, 1, 1).expand(members, -1, 1, out.shape[-1])
    return out.gather(2, index).squeeze(2)


def head_columns(name: str, num_heads: int, out_dim: int) -> list[TaskBlock]:
    """The per-task columns of an ``EnsembleLinear`` named ``name`` with one head per task."""
    if num_heads == 1:
        return []
    return [TaskBlock(f"{name}.{p}", 2, 0, out_dim) for p in ("weight", "bias")]


@dataclass(frozen=True)
class TaskBlock:
    """The task-specific part of one parameter: task t owns ``width`` consecutive indices
    of dimension ``dim`` starting at ``start + t * width``. ``name`` is the parameter's name
    relative to the module that reports it (``Agent.task_specific_blocks`` prefixes it to
    a name in ``Agent.named_parameters()`` and, for the encoder and critic, ``SAC.target``)."""

    name: str
    dim: int
    start: int
    width: int

    def prefixed(self, prefix: str) -> TaskBlock:
        return TaskBlock(f"{prefix}.{self.name}", self.dim, self.start, self.width)

    def view(self, tensor: torch.Tensor, num_tasks: int) -> torch.Tensor:
        """A view of ``tensor`` (the parameter, or an optimiser moment of its shape) with
        the tasks' slices on a new axis: dimension ``dim`` becomes (num_tasks, width)."""
        return tensor.narrow(self.dim, self.start, num_tasks * self.width).unflatten(self.dim, (num_tasks, self.width))


class TanhGaussianActor(nn.Module):
    """pi(a|s) = tanh(N(mu(s), sigma(s))); log-std squashed into [log_std_min, LOG_STD_MAX].

    ``net`` is any task-conditioned network (see ``EnsembleMLP``'s interface) with one
    member and 2 * act_dim outputs (the means, then the log-stds); :meth:`mlp` builds the
    plain MLP one. ``log_std_min``: the floor (LOG_STD_MIN; BRC's code has -10)."""

    def __init__(self, net: nn.Module, *, log_std_min: float = LOG_STD_MIN):
        super().__init__()
        self.net, self.log_std_min = net, log_std_min

    @classmethod
    def mlp(
        cls, *, in_dim: int, act_dim: int, hidden: list[int], num_heads: int = 1, init: str = "pytorch"
    ) -> TanhGaussianActor:
        return cls(
            EnsembleMLP(members=1, in_dim=in_dim, hidden=hidden, out_dim=2 * act_dim, num_heads=num_heads, init=init)
        )

    def forward(self, features: torch.Tensor, task: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.net(features, task)[0].chunk(2, dim=-1)
        log_std = self.log_std_min + 0.5 * (LOG_STD_MAX - self.log_std_min) * (torch.tanh(log_std) + 1)
        return mean, log_std

    def sample(self, features: torch.Tensor, task: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterised action in [-1, 1] and its log-probability (batch,)."""
        mean, log_std = self(features, task)
        u = mean + log_std.exp() * torch.randn_like(mean)
        return torch.tanh(u), squashed_log_prob(u, mean, log_std)

    def deterministic(self, features: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self(features, task)[0])


def squashed_log_prob(u: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """log pi(tanh(u)) for u ~ N(mean, exp(log_std)), summed over action dimensions.

    Uses log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)), stable for large |u|.
    """
    gaussian = -0.5 * ((u - mean) / log_std.exp()) ** 2 - log_std - 0.5 * math.log(2 * math.pi)
    correction = 2 * (math.log(2) - u - F.softplus(-2 * u))
    return (gaussian - correction).sum(-1)


class TwinQ(nn.Module):
    """Two Q networks in one ensemble: returns (2, batch). ``net`` is any task-conditioned
    network with two members, one output, reading cat(features, action); :meth:`mlp` builds
    the plain MLP one."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    @classmethod
    def mlp(
        cls,
        *,
        in_dim: int,
        act_dim: int,
        hidden: list[int],
        num_heads: int = 1,
        members: int = 2,
        init: str = "pytorch",
        layer_norm: bool = False,
    ) -> TwinQ:
        return cls(
            EnsembleMLP(
                members=members,
                in_dim=in_dim + act_dim,
                hidden=hidden,
                out_dim=1,
                num_heads=num_heads,
                init=init,
                layer_norm=layer_norm,
            )
        )

    def forward(self, features: torch.Tensor, action: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([features, action], -1), task).squeeze(-1)
