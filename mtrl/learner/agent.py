"""What every agent is: a task-aware encoder, a tanh-Gaussian actor and twin critics.

    features = encoder(obs, task)                  # trained by the critic loss
    q1, q2   = critic(features, action, task)
    action   = actor(actor_features(obs, task), task)

``actor_features`` comes from the actor's own encoder when the agent has one (CARE's
default: trained by the actor loss), else from the critic's encoder, detached or not
(``actor_encoder``). Agents in ``agents/`` differ only in the encoders (one-hot, CARE, ...)
and in whether the actor and critic have one output head per task. :mod:`mtrl.learner.sac` trains
any of them. What the parts may provide beyond this (a loss penalty, a categorical critic,
attention weights) is declared in :mod:`mtrl.learner.hooks`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from mtrl.errors import layer_sizes, one_of, or_null
from mtrl.networks.care_encoder import TaskEmbedding
from mtrl.networks.ensemble import INITS, EnsembleMLP, TanhGaussianActor, TaskBlock, TwinQ


@dataclass(frozen=True)
class EnvSpec:
    """What an agent factory needs to know about the suite."""

    obs_dim: int
    act_dim: int
    task_names: tuple[str, ...]
    descriptions: tuple[str, ...]
    suite: str
    embedding_file: str | None = None  # the suite's shipped task-description embeddings

    @property
    def num_tasks(self) -> int:
        return len(self.task_names)


class OneHotTaskEncoder(nn.Module):
    """features = [obs || one_hot(task)], or just obs when the task is hidden (an ablation)."""

    def __init__(self, obs_dim: int, num_tasks: int, task_visible: bool = True):
        super().__init__()
        self.obs_dim, self.num_tasks, self.task_visible = obs_dim, num_tasks, task_visible
        self.out_dim = obs_dim + (num_tasks if task_visible else 0)

    def forward(self, obs: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        if not self.task_visible:
            return obs
        return torch.cat([obs, F.one_hot(task, self.num_tasks).to(obs.dtype)], -1)


class EmbeddingTaskEncoder(nn.Module):
    """features = [obs || e_task / |e_task|], e a learned (T, dim) table (BRC's task embedding;
    its rows are task-specific blocks, see ``Agent.task_specific_blocks``)."""

    def __init__(self, obs_dim: int, num_tasks: int, dim: int):
        super().__init__()
        self.embedding = TaskEmbedding(kind="learned", num_tasks=num_tasks, dim=dim)
        self.out_dim = obs_dim + dim

    def forward(self, obs: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        return torch.cat([obs, F.normalize(self.embedding(task), dim=-1).to(obs.dtype)], -1)


def task_conditioned_agent(spec: EnvSpec, net: Callable[[int, int, int], nn.Module]) -> Agent:
    """An agent whose actor and critic networks read the task id themselves (Soft
    Modularization, MOORE, PaCo, soft sharing): ``net(members, in_dim, out_dim)`` builds each;
    the encoder passes the state through."""
    encoder = OneHotTaskEncoder(spec.obs_dim, spec.num_tasks, task_visible=False)
    actor = TanhGaussianActor(net(1, spec.obs_dim, 2 * spec.act_dim))
    return Agent(encoder, actor, TwinQ(net(2, spec.obs_dim + spec.act_dim, 1)))


@dataclass
class MLPAgentConfig:
    """The fields of an agent whose actor and twin critics are MLPs (MT-SAC, MH-SAC, CARE):
    ``mlp_critic`` builds its critics, ``network_checks`` validates the fields."""

    name: str = ""
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

    def network_checks(self) -> list[tuple]:
        """The ``check_values`` rows of the fields above."""
        return [
            ("agent.hidden_sizes", self.hidden_sizes, layer_sizes, "a non-empty list of sizes >= 1"),
            ("agent.init", self.init, *one_of(INITS)),
            (
                "agent.critic_hidden_sizes",
                self.critic_hidden_sizes,
                or_null(layer_sizes),
                "a non-empty list of sizes >= 1 (or null: agent.hidden_sizes)",
            ),
        ]


def mlp_critic(cfg: MLPAgentConfig, in_dim: int, act_dim: int, num_heads: int = 1) -> TwinQ:
    """The twin MLP critics of ``cfg`` (``critic_hidden_sizes`` wide, else ``hidden_sizes``)."""
    return TwinQ.mlp(
        in_dim=in_dim,
        act_dim=act_dim,
        hidden=cfg.critic_hidden_sizes or cfg.hidden_sizes,
        num_heads=num_heads,
        init=cfg.init,
        layer_norm=cfg.critic_layer_norm,
    )


ACTOR_ENCODERS = ("own", "critic_detached", "critic")


class Agent(nn.Module):
    """Encoder + actor + twin critics; the critic loss always trains ``encoder``.

    ``actor_encoder``: ``"own"`` -- the actor reads its own encoder (the ``actor_encoder_net``
    argument), trained by the actor loss (Meta-World+'s CARE); ``"critic_detached"`` -- it
    reads the critic's encoder without training it (SAC-AE's and the original CARE code's
    choice); ``"critic"`` -- it reads and trains the critic's encoder.
    """

    def __init__(
        self,
        encoder: nn.Module,
        actor: TanhGaussianActor,
        critic: TwinQ,
        actor_encoder: str = "critic_detached",
        actor_encoder_net: nn.Module | None = None,
    ):
        super().__init__()
        if actor_encoder not in ACTOR_ENCODERS:
            raise ValueError(f"unknown actor_encoder '{actor_encoder}', expected one of {ACTOR_ENCODERS}")
        if (actor_encoder == "own") != (actor_encoder_net is not None):
            raise ValueError("actor_encoder='own' needs actor_encoder_net, and only it takes one")
        self.encoder, self.actor, self.critic = encoder, actor, critic
        self.actor_encoder_kind = actor_encoder
        self.actor_encoder = actor_encoder_net  # None unless "own"

    def actor_features(self, obs: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        """The actor's input; carries gradient into whichever encoder the actor loss trains."""
        if self.actor_encoder is not None:
            return self.actor_encoder(obs, task)
        if self.actor_encoder_kind == "critic_detached":
            with torch.no_grad():
                return self.encoder(obs, task)
        return self.encoder(obs, task)

    def actor_encoder_parameters(self) -> list[nn.Parameter]:
        """The encoder parameters the actor loss trains: its own encoder's, the critic
        encoder's (``"critic"``) or none (``"critic_detached"``)."""
        if self.actor_encoder is not None:
            return list(self.actor_encoder.parameters())
        return list(self.encoder.parameters()) if self.actor_encoder_kind == "critic" else []

    def actor_parameters(self) -> list[nn.Parameter]:
        """What the actor loss trains: the actor and :meth:`actor_encoder_parameters`."""
        return list(self.actor.parameters()) + self.actor_encoder_parameters()

    def shared_parameters(self, part: str) -> list[nn.Parameter]:
        """Parameters that every task's ``part`` ("critic" or "actor") loss flows through:
        the hidden layers, the output layer unless it has one head per task, and the
        encoder that loss trains. Conflict monitoring and PCGrad/CAGrad act here."""
        params = (self.critic if part == "critic" else self.actor).net.shared_parameters()
        encoder_params = list(self.encoder.parameters()) if part == "critic" else self.actor_encoder_parameters()
        return [p for p in encoder_params + params if p.requires_grad]  # a frozen encoder takes no gradient

    def task_specific_blocks(self) -> list[TaskBlock]:
        """The parameters, or parts of them, that belong to one task (PaCo's per-task reset
        acts on them, see ``SAC.reset_tasks``):

        - with a visible one-hot task input (MT-SAC, MH-SAC), the rows of the actor's and the
          critics' first layer that read the one-hot columns: features are [obs || one_hot],
          the critics read cat(features, action), so rows obs_dim .. obs_dim + T of both;
        - with per-task output heads (MH-SAC), each task's out_dim columns of the head
          weight and bias;
        - a learned task-embedding table (CARE with ``task_embedding=learned``): its rows.

        CARE with its default frozen embedding has none."""
        blocks = []
        actor_encoder = self.actor_encoder if self.actor_encoder is not None else self.encoder
        for part, net, encoder in (("actor", self.actor.net, actor_encoder), ("critic", self.critic.net, self.encoder)):
            blocks += _one_hot_rows(f"{part}.net", net, encoder) + [
                b.prefixed(f"{part}.net") for b in net.task_blocks()
            ]
        for prefix, encoder in (("encoder", self.encoder), ("actor_encoder", self.actor_encoder)):
            for name, module in encoder.named_modules() if encoder is not None else ():
                if isinstance(module, TaskEmbedding) and isinstance(module.table, nn.Parameter):
                    blocks.append(TaskBlock(".".join(filter(None, (prefix, name, "table"))), 0, 0, 1))
        return blocks

    @torch.no_grad()
    def act(self, obs: np.ndarray, task: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """Actions for a batch of numpy observations and task ids (collection / evaluation)."""
        device = next(self.parameters()).device
        obs_t = torch.as_tensor(obs, dtype=torch.float32, device=device)
        task_t = torch.as_tensor(task, dtype=torch.long, device=device)
        features = self.actor_features(obs_t, task_t)
        if deterministic:
            action = self.actor.deterministic(features, task_t)
        else:
            action = self.actor.sample(features, task_t)[0]
        return action.cpu().numpy()


def _one_hot_rows(prefix: str, net: EnsembleMLP, encoder: nn.Module) -> list[TaskBlock]:
    """The rows of ``net``'s first weight (members, in, out) that read a one-hot task input."""
    if not (isinstance(encoder, OneHotTaskEncoder) and encoder.task_visible and isinstance(net, EnsembleMLP)):
        return []
    first = "hidden.0" if len(net.hidden) else "head"
    return [TaskBlock(f"{prefix}.{first}.weight", 1, encoder.obs_dim, 1)]
