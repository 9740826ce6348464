"""Multi-task soft actor-critic: the losses as plain functions and one update step.

Temperatures are one tensor ``log_alpha`` of shape (num_tasks,); every sample uses its
own task's alpha, and since a batch holds the same number of samples per task, the
temperature loss of task t only moves alpha_t.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Callable

import torch
from torch import nn

from mtrl.agent import Agent
from mtrl.categorical import cross_entropy, project
from mtrl.config import SACConfig
from mtrl.conflict import ConflictConfig, ConflictStats, aggregate, conflict_stats, per_task_gradients
from mtrl.hardware import resolve_precision
from mtrl.replay import Batch
from mtrl.task_weighting import TaskWeighting, task_means


def critic_target(reward: torch.Tensor, terminated: torch.Tensor, next_q: torch.Tensor, next_log_prob: torch.Tensor, alpha: torch.Tensor,
                  gamma: float | torch.Tensor) -> torch.Tensor:
    """y = r + gamma (1 - terminated) (min_i Q'_i(s', a') - alpha log pi(a'|s')).

    A time-limit truncation is *not* ``terminated``: its next state is bootstrapped. For an
    n-step return r is the discounted sum and ``gamma`` each sample's gamma^k.
    """
    soft_value = next_q.min(0).values - alpha * next_log_prob
    return reward + gamma * (1.0 - terminated) * soft_value


def critic_loss(q: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Sum over the critics of the mean squared TD error; q is (critics, batch).
    ``reduction="none"`` gives the per-sample terms whose mean is the loss.

    Summed, as pytorch_sac and fb/mtrl do (SB3 halves it): the two critics have disjoint
    parameters, so the sum gives each its own MSE gradient, and Adam is invariant to the
    constant factor; with gradient clipping the clip threshold sees twice SB3's norm."""
    per_sample = ((q - target.unsqueeze(0)) ** 2).sum(0)
    return per_sample.mean() if reduction == "mean" else per_sample


def actor_loss(q_pi: torch.Tensor, log_prob: torch.Tensor, alpha: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """E[alpha log pi(a|s) - min_i Q_i(s, a)], a ~ pi (per sample with ``reduction="none"``)."""
    per_sample = alpha * log_prob - q_pi.min(0).values
    return per_sample.mean() if reduction == "mean" else per_sample


def task_loss_weights(log_alpha: torch.Tensor) -> torch.Tensor:
    """Meta-World+'s MT-SAC task weights: softmax(-log alpha) * T (mean 1). Tasks whose
    temperature is low -- their policy has become confident -- weigh more."""
    return torch.softmax(-log_alpha.detach(), 0) * log_alpha.shape[0]


def temperature_loss(log_alpha: torch.Tensor, log_prob: torch.Tensor, target_entropy: float, reduction: str = "mean") -> torch.Tensor:
    """E[-log alpha_task (log pi + target entropy)]; log_alpha holds each sample's task's value
    (per sample with ``reduction="none"``)."""
    per_sample = -(log_alpha * (log_prob.detach() + target_entropy))
    return per_sample.mean() if reduction == "mean" else per_sample


def exploded_tasks(critic_per_sample: torch.Tensor, task: torch.Tensor, num_tasks: int, threshold: float | None) -> torch.Tensor:
    """(num_tasks,) bool: tasks whose mean critic loss over their samples in the batch is not
    finite or above ``threshold`` (PaCo's mask_extreme_task; None: only non-finite ones).
    Tasks absent from the batch are never masked."""
    mean, counts = task_means(critic_per_sample, task, num_tasks)
    bad = ~torch.isfinite(mean)
    if threshold is not None:
        bad |= mean > threshold
    return bad & (counts > 0)


def penalized(module: nn.Module) -> list[nn.Module]:
    """The submodules that define a ``penalty()`` (soft parameter sharing's pull toward the
    mean, mtrl/soft_sharing.py): their sum is added to that network's loss."""
    return [m for m in module.modules() if hasattr(m, "penalty")]


def _kept_mean(per_sample: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    """The mean over the kept samples (all of them when ``keep`` is None). ``torch.where``,
    not a 0 weight: a masked sample's term may be NaN, and NaN * 0 is NaN."""
    if keep is None:
        return per_sample.mean()
    return torch.where(keep, per_sample, 0.0).sum() / keep.sum()


def _sanitised(batch: Batch, keep: torch.Tensor) -> Batch:
    """The batch with the masked samples' fields zeroed. Their terms are dropped by
    ``torch.where``, but a NaN or inf input would still reach the weight gradients through
    the backward pass (the first layer's x^T delta, or (q - y) * 0); zeros cannot."""
    def clean(x: torch.Tensor) -> torch.Tensor:
        return torch.where(keep.view(-1, *([1] * (x.dim() - 1))), x, torch.zeros((), dtype=x.dtype, device=x.device))
    return Batch(*(x if name == "task" or x is None else clean(x) for name, x in zip(Batch._fields, batch)))


class SAC:
    """Owns the agent's target networks, the per-task temperatures and the optimisers.
    With ``conflict.method`` pcgrad/cagrad the shared parameters step along the aggregated
    per-task gradient instead of the plain mean.

    Divergence guards (``update`` reports both):

    - an optimiser step whose loss or gradient norm is not finite is skipped (gradients
      zeroed, ``opt.step()`` not called, so parameters and Adam's state stay as they were)
      and counted in ``divergence/skipped_steps``;
    - a task whose mean critic loss in the batch is not finite or above
      ``sac.task_loss_threshold`` (PaCo's mask_extreme_task, Sun et al. 2022) is left out of
      this update's critic, actor and temperature losses, then its task-specific parameters
      and temperature are reset (``reset_tasks``). ``divergence/masked_tasks`` counts them;
      ``last_masked`` holds the (num_tasks,) bool mask of the last update. If every task in
      the batch is masked the update is skipped entirely (nothing reset).
    """

    def __init__(self, agent: Agent, num_tasks: int, act_dim: int, cfg: SACConfig, conflict: ConflictConfig | None = None,
                 teachers: Any = None, distill_weight: float = 1.0):
        self.agent, self.cfg, self.num_tasks = agent, cfg, num_tasks
        # Distillation (mtrl/distillation.py's Teachers): the actor loss gains
        # distill_weight * KL(teacher || student) on the teachers' tasks' samples.
        self.teachers, self.distill_weight = teachers, distill_weight
        self.conflict = conflict or ConflictConfig()
        self.shared = {"critic": agent.shared_parameters("critic"), "actor": agent.shared_parameters("actor")}
        device = next(agent.parameters()).device
        # The target holds the encoder too, since the critic reads the encoder's features.
        self.target = nn.ModuleDict({"encoder": copy.deepcopy(agent.encoder), "critic": copy.deepcopy(agent.critic)})
        self.target.requires_grad_(False)
        self.log_alpha = torch.full((num_tasks,), math.log(cfg.initial_alpha), device=device, requires_grad=True)
        self.target_entropy = -float(act_dim) if cfg.target_entropy is None else cfg.target_entropy
        self.critic_params = list(agent.critic.parameters()) + list(agent.encoder.parameters())
        self.actor_params = agent.actor_parameters()
        # Adam with PyTorch's eps (1e-8), as SB3, pytorch_sac and fb/mtrl use it; Meta-World+
        # sets 1e-5 (after SBX): a difference listed in docs/AGENTS.md, not yet measured.
        # sac.weight_decay > 0: AdamW's decoupled decay on actor and critics (BRC's optimiser).
        adam = (lambda params, lr: torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)) if cfg.weight_decay \
            else (lambda params, lr: torch.optim.Adam(params, lr=lr))
        self.critic_opt = adam(self.critic_params, cfg.critic_lr)
        self.actor_opt = adam(self.actor_params, cfg.actor_lr)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=cfg.alpha_lr)
        self.task_blocks = agent.task_specific_blocks()
        # Adam's step count at each task slice's last reset (reset_tasks), -1 where not (or no
        # longer) tracked: their bias correction counts from there (_bias_correct_reset_slices).
        self.reset_at: dict[str, torch.Tensor] = {}
        # each reset-able parameter by name: (parameter, its per-task view, the task axis)
        named = dict(agent.named_parameters())
        self._task_slices = {b.name: (named[b.name], b.view, b.dim) for b in self.task_blocks}
        self._task_slices["log_alpha"] = (self.log_alpha, lambda x, n: x, 0)
        self.penalized = {"critic": penalized(agent.critic), "actor": penalized(agent.actor)}
        self.weighting = TaskWeighting(cfg.task_weighting, num_tasks, device, lr=cfg.task_weighting_lr)
        self.last_masked = torch.zeros(num_tasks, dtype=torch.bool, device=device)
        self.device_type = device.type
        self.precision, _ = resolve_precision(cfg.precision, device)  # auto: what the hardware runs fast
        if cfg.compile:  # in place, so state_dict keys (checkpoints) do not change
            for module in (agent.encoder, agent.actor, agent.critic, agent.actor_encoder, *self.target.values()):
                if module is not None:
                    module.compile()

    def autocast(self) -> torch.autocast:
        """Forward passes of the update: hidden layers in bfloat16 with ``sac.precision=bfloat16``
        (output layers opt out in ``EnsembleMLP``); a no-op with float32."""
        return torch.autocast(self.device_type, dtype=torch.bfloat16, enabled=self.precision == "bfloat16")

    def _step(self, opt: torch.optim.Optimizer, params: list[torch.Tensor], loss: torch.Tensor,
              per_sample: torch.Tensor | None = None, task: torch.Tensor | None = None, shared: list[torch.Tensor] | None = None,
              clip: bool = True, keep: torch.Tensor | None = None) -> bool:
        """Backward, conflict aggregation, clipping and the optimiser step on ``params``
        (``clip=False``: never clipped, the temperatures). Returns True when the step was
        skipped because the loss or the total gradient norm is not finite. The aggregation
        sees only the tasks with samples (``keep``: the unmasked ones): an absent or masked
        task's zero row would shrink a mean-scaled direction by (T - k) / T."""
        opt.zero_grad(set_to_none=True)
        if self.conflict.method != "none" and shared:
            grads = per_task_gradients(per_sample, task, self.num_tasks, shared)
            loss.backward()  # the task-specific parameters (heads) keep their plain gradient
            present = torch.bincount(task if keep is None else task[keep], minlength=self.num_tasks) > 0
            direction = aggregate(grads[present], self.conflict.method, self.conflict.cagrad_c)
            offset = 0
            for p in shared:
                p.grad = direction[offset : offset + p.numel()].view_as(p).clone()
                offset += p.numel()
        else:
            loss.backward()
        if clip and self.cfg.max_grad_norm is not None:
            norm = nn.utils.clip_grad_norm_(params, self.cfg.max_grad_norm)  # the norm before clipping
        else:
            norm = nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
        # One host sync per step: Python decides whether to step. Fine on the CPU; a sync-free
        # variant (for the GPU) would fold the check into the step, e.g. scaling the gradients
        # by torch.where(finite, 1, 0) and restoring Adam's state, or a fused masked step.
        if not bool(torch.isfinite(loss) & torch.isfinite(norm)):
            opt.zero_grad(set_to_none=True)
            return True
        opt.step()
        if self.reset_at:
            self._bias_correct_reset_slices(opt)
        return False

    @torch.no_grad()
    def _critic_target(self, batch: Batch, alpha: torch.Tensor) -> torch.Tensor:
        """Soft Bellman target from the target encoder + critics: (B,) values, or for a
        categorical critic the (B, bins) target distribution (BRC: the target members' mean
        distribution, its atoms moved by the soft Bellman backup and projected back)."""
        agent, task = self.agent, batch.task
        gamma = self.cfg.gamma if batch.discount is None else batch.discount  # gamma^k of n-step returns
        next_action, next_log_prob = agent.actor.sample(agent.actor_features(batch.next_obs, task), task)
        target_features = self.target["encoder"](batch.next_obs, task)
        critic = self.target["critic"]
        if getattr(critic, "categorical", False):
            next_probs = critic.probs(critic.logits(target_features, next_action, task))
            atoms = critic_target(batch.reward.unsqueeze(-1), batch.terminated.unsqueeze(-1), critic.support.view(1, 1, -1),
                                  next_log_prob.unsqueeze(-1), alpha.unsqueeze(-1),
                                  gamma.unsqueeze(-1) if torch.is_tensor(gamma) else gamma)
            return project(atoms, next_probs, critic.support)
        next_q = critic(target_features, next_action, task)
        return critic_target(batch.reward, batch.terminated, next_q, next_log_prob, alpha, gamma)

    def critic_terms(self, batch: Batch, alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample critic loss (its mean is the loss) and the online Q values: the twin
        MSE, or for a categorical critic the members' cross-entropies to the target."""
        critic, features = self.agent.critic, self.agent.encoder(batch.obs, batch.task)
        if getattr(critic, "categorical", False):
            logits = critic.logits(features, batch.action, batch.task)
            q = (critic.probs(logits.detach()) @ critic.support).unsqueeze(0)
            return cross_entropy(logits.float(), self._critic_target(batch, alpha)), q
        q = critic(features, batch.action, batch.task)
        return critic_loss(q, self._critic_target(batch, alpha), reduction="none"), q

    def actor_terms(self, obs: torch.Tensor, task: torch.Tensor, alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample actor loss and log pi of the sampled actions. The actor reads its own
        encoder's features (or the critic encoder's, see ``Agent``); the critics judge the
        action on their own encoder's features, which the actor loss does not train unless
        ``agent.actor_encoder=critic``."""
        agent = self.agent
        actor_features = agent.actor_features(obs, task)
        action, log_prob = agent.actor.sample(actor_features, task)
        if agent.actor_encoder is None:
            critic_features = actor_features
        else:
            with torch.no_grad():
                critic_features = agent.encoder(obs, task)
        # The critic is a fixed function here: recording it without parameter gradients
        # skips the critic weight-gradient matmuls that the actor step would throw away.
        agent.critic.requires_grad_(False)
        q_pi = agent.critic(critic_features, action, task)
        agent.critic.requires_grad_(True)
        return actor_loss(q_pi, log_prob, alpha, reduction="none"), log_prob

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One gradient step on critics, actor and temperatures. Returns detached metrics,
        ``divergence/skipped_steps`` (of the three steps) and ``divergence/masked_tasks``
        among them; ``last_masked`` is this update's (num_tasks,) mask (see the class)."""
        task = batch.task
        alpha = self.log_alpha.detach().exp()[task]

        # Critic (and its encoder): regress both critics on the soft Bellman target.
        with self.autocast():
            critic_per_sample, q = self.critic_terms(batch, alpha)
        # Each sample's critic and actor terms weighted by its task's weight: sac.task_weights
        # (Meta-World+'s, from the temperatures) times sac.task_weighting's (from the critic losses;
        # the actor's only with sac.task_weighting_actor).
        weight = actor_weight = None
        if self.cfg.task_weights:
            weight = actor_weight = task_loss_weights(self.log_alpha)[task]
        if self.weighting.kind != "none":
            weight = self.weighting.weights(critic_per_sample, task)[task] * (1.0 if weight is None else weight)
            if self.cfg.task_weighting_actor:
                actor_weight = weight
        masked = exploded_tasks(critic_per_sample, task, self.num_tasks, self.cfg.task_loss_threshold)
        self.last_masked = masked
        keep = None
        if bool(masked.any()):  # one host sync per update
            keep = ~masked[task]
            if not bool(keep.any()):
                return self._skipped_update(masked)
            # Recompute on the batch with the masked samples zeroed (see _sanitised): a new
            # forward pass, only in the (rare) updates that mask a task.
            batch = _sanitised(batch, keep)
            with self.autocast():
                critic_per_sample, q = self.critic_terms(batch, alpha)
            critic_per_sample = torch.where(keep, critic_per_sample, 0.0)
        if weight is not None:
            critic_per_sample = critic_per_sample * weight
        loss_critic = _kept_mean(critic_per_sample, keep) + sum(m.penalty() for m in self.penalized["critic"])
        skipped = self._step(self.critic_opt, self.critic_params, loss_critic, critic_per_sample, task, self.shared["critic"], keep=keep)

        # Actor (and its encoder), judged by the freshly updated critics.
        with self.autocast():
            actor_per_sample, log_prob = self.actor_terms(batch.obs, task, alpha)
        distill = None
        if self.teachers is not None:
            kl = self.teachers.kl(self.agent, batch.obs, task)
            actor_per_sample = actor_per_sample + self.distill_weight * kl
            taught = torch.isin(task, torch.as_tensor([t.task for t in self.teachers.teachers], device=task.device))
            distill = (kl.detach() * taught).sum() / taught.sum().clamp(min=1)
        if keep is not None:
            actor_per_sample = torch.where(keep, actor_per_sample, 0.0)
        if actor_weight is not None:
            actor_per_sample = actor_per_sample * actor_weight
        loss_actor = _kept_mean(actor_per_sample, keep) + sum(m.penalty() for m in self.penalized["actor"])
        skipped += self._step(self.actor_opt, self.actor_params, loss_actor, actor_per_sample, task, self.shared["actor"], keep=keep)

        # Temperatures: one per task, driven only by that task's samples.
        if keep is None:
            loss_alpha = temperature_loss(self.log_alpha[task], log_prob, self.target_entropy)
        else:
            loss_alpha = _kept_mean(temperature_loss(self.log_alpha[task], log_prob, self.target_entropy, reduction="none"), keep)
        skipped += self._step(self.alpha_opt, [self.log_alpha], loss_alpha, clip=False)

        self.soft_update()
        if keep is not None:
            self.reset_tasks(masked)
        return {
            "loss/critic": loss_critic.detach(),
            "loss/actor": loss_actor.detach(),
            "loss/alpha": loss_alpha.detach(),
            "train/q_mean": q.detach().mean() if keep is None else _kept_mean(q.detach().mean(0), keep),
            "train/entropy": -_kept_mean(log_prob.detach(), keep),
            "divergence/skipped_steps": torch.tensor(float(skipped)),
            "divergence/masked_tasks": masked.sum().float(),
            # (num_tasks,) each: the trainer logs them per task (tasks absent from the batch: 0)
            "per_task/critic_loss": task_means(critic_per_sample.detach(), task, self.num_tasks)[0],
            "per_task/q_mean": task_means(q.detach().mean(0), task, self.num_tasks)[0],
            **({"distill/kl": distill} if distill is not None else {}),
        }

    def _skipped_update(self, masked: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every task in the batch masked: no step, no soft update, no reset (there is no
        healthy task to reset towards). Losses are reported as NaN."""
        nan = torch.tensor(float("nan"))
        return {
            "loss/critic": nan, "loss/actor": nan, "loss/alpha": nan, "train/q_mean": nan, "train/entropy": nan,
            "divergence/skipped_steps": torch.tensor(3.0),
            "divergence/masked_tasks": masked.sum().float(),
        }

    @torch.no_grad()
    def reset_tasks(self, masked: torch.Tensor) -> None:
        """PaCo's reset (its ``reset_task_method="interpolate"``) of the tasks in ``masked``
        ((num_tasks,) bool): each task-specific slice (``Agent.task_specific_blocks``) of a
        masked task is set to the mean of the unmasked tasks' slices, in the online networks
        and, with the same values, in the target networks; the Adam moments of those slices
        are zeroed; log_alpha of a masked task becomes the unmasked tasks' mean log_alpha,
        its moments zeroed too. Adam's step count is per tensor, so each reset slice's bias
        correction is restarted by hand after every step (``_bias_correct_reset_slices``):
        it then moves as a fresh Adam would (without that, up to ~3x the usual step).

        With no unmasked task (a single task, or all masked) there is nothing to interpolate
        from: the network parameters are left alone and log_alpha of the masked tasks goes
        back to log(initial_alpha) (its moments zeroed). Vectorised over tasks: one sync here,
        and this runs only in updates that mask a task."""
        masked = masked.to(self.log_alpha.device)
        keep = ~masked
        n_keep = int(keep.sum())
        online, target = dict(self.agent.named_parameters()), dict(self.target.named_parameters())

        def on_task_axis(mask: torch.Tensor, view: torch.Tensor, dim: int) -> torch.Tensor:
            shape = [1] * view.dim()
            shape[dim] = self.num_tasks
            return mask.view(shape)

        def reset(name: str, param: torch.Tensor, view: Callable[[torch.Tensor], torch.Tensor], dim: int,
                  fallback: float | None = None) -> None:
            """Masked tasks' slices of ``param`` <- mean of the kept tasks' (or ``fallback``);
            their Adam moments <- 0, their bias correction restarted."""
            slices = view(param)
            m, k = on_task_axis(masked, slices, dim), on_task_axis(keep, slices, dim)
            if n_keep:
                value = torch.where(k, slices, 0.0).sum(dim, keepdim=True) / n_keep
            else:
                value = torch.full_like(slices, fallback)
            slices.copy_(torch.where(m, value, slices))
            for opt in (self.critic_opt, self.actor_opt, self.alpha_opt):
                state = opt.state.get(param, {})
                for key, moment in state.items():
                    if key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
                        moment_slices = view(moment)
                        moment_slices.copy_(torch.where(m, 0.0, moment_slices))
                if "step" in state:
                    since = self.reset_at.get(name, torch.full((self.num_tasks,), -1.0, device=masked.device))
                    self.reset_at[name] = torch.where(masked, float(state["step"]), since)

        for block in self.task_blocks if n_keep else ():
            def view(x: torch.Tensor, block=block) -> torch.Tensor:
                return block.view(x, self.num_tasks)
            reset(block.name, online[block.name], view, block.dim)
            if block.name in target:  # the target's slices take the online values
                target_slices, online_slices = view(target[block.name]), view(online[block.name])
                target_slices.copy_(torch.where(on_task_axis(masked, target_slices, block.dim), online_slices, target_slices))
        reset("log_alpha", self.log_alpha, lambda x: x, 0, fallback=math.log(self.cfg.initial_alpha))

    @torch.no_grad()
    def _bias_correct_reset_slices(self, opt: torch.optim.Optimizer) -> None:
        """After ``opt``'s step: each reset slice of its parameters moves by Adam's update with
        the bias correction of k = steps since its reset instead of the tensor's step count t
        (the applied update is added back, the wanted one taken). Once beta2^k < 1e-9 the two
        agree to float precision and the slice is no longer tracked."""
        for name, since in list(self.reset_at.items()):
            param, view, dim = self._task_slices[name]
            state = opt.state.get(param)
            if not state or "exp_avg" not in state:
                continue
            group = next(g for g in opt.param_groups if any(p is param for p in g["params"]))
            (b1, b2), lr, eps = group["betas"], group["lr"], group["eps"]
            t = float(state["step"])
            m, v, slices = (view(x, self.num_tasks) for x in (state["exp_avg"], state["exp_avg_sq"], param))
            shape = [1] * m.dim()
            shape[dim] = self.num_tasks
            tracked = since >= 0
            k = torch.where(tracked, t - since, t).clamp(min=1).view(shape)
            applied = lr / (1 - b1 ** t) * m / (v.sqrt() / math.sqrt(1 - b2 ** t) + eps)
            wanted = lr / (1 - b1 ** k) * m / (v.sqrt() / torch.sqrt(1 - b2 ** k) + eps)
            slices.add_(torch.where(tracked.view(shape), applied - wanted, 0.0))
            done = tracked & (b2 ** (t - since) < 1e-9)
            self.reset_at[name] = torch.where(done, -1.0, since)
            if not bool((self.reset_at[name] >= 0).any()):
                del self.reset_at[name]

    def measure_conflicts(self, batch: Batch) -> dict[str, ConflictStats]:
        """Per-task gradients of the critic and actor losses on the shared parameters of the
        current networks (one backward per task; no parameter or optimiser changes)."""
        alpha = self.log_alpha.detach().exp()[batch.task]
        with self.autocast():
            terms = {"critic": self.critic_terms(batch, alpha)[0], "actor": self.actor_terms(batch.obs, batch.task, alpha)[0]}
        return {
            part: conflict_stats(per_task_gradients(per_sample, batch.task, self.num_tasks, self.shared[part]))
            for part, per_sample in terms.items() if self.shared[part]  # soft sharing: nothing shared
        }

    @torch.no_grad()
    def soft_update(self) -> None:
        """target <- tau * online + (1 - tau) * target; the encoder with ``sac.encoder_tau``
        (default: tau, as Meta-World+; fb/mtrl, after SAC-AE, uses 0.05 for its encoder)."""
        encoder_tau = self.cfg.tau if self.cfg.encoder_tau is None else self.cfg.encoder_tau
        for name, tau in (("encoder", encoder_tau), ("critic", self.cfg.tau)):
            for t, o in zip(self.target[name].parameters(), getattr(self.agent, name).parameters()):
                t.lerp_(o, tau)

    def state_dict(self) -> dict:
        return {
            "agent": self.agent.state_dict(),
            "target": self.target.state_dict(),
            "log_alpha": self.log_alpha.detach().clone(),
            "critic_opt": self.critic_opt.state_dict(),
            "actor_opt": self.actor_opt.state_dict(),
            "alpha_opt": self.alpha_opt.state_dict(),
            "weighting": self.weighting.state_dict(),
            "reset_at": {name: since.clone() for name, since in self.reset_at.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        self.agent.load_state_dict(state["agent"])
        self.target.load_state_dict(state["target"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.critic_opt.load_state_dict(state["critic_opt"])
        self.actor_opt.load_state_dict(state["actor_opt"])
        self.alpha_opt.load_state_dict(state["alpha_opt"])
        if "weighting" in state:  # absent from checkpoints written before sac.task_weighting
            self.weighting.load_state_dict(state["weighting"])
        self.reset_at = {name: since.to(self.log_alpha.device) for name, since in state.get("reset_at", {}).items()}
