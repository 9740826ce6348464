"""What the training loop logs every ``train.log_every`` steps, one source per component.

Each source implements :class:`MetricSource`: ``metrics()`` returns its numbers since the
last log point (and resets what it sums). The trainer asks each source in turn and logs the
union as one record of ``metrics.jsonl``; a new component adds a source, not a branch in the
loop. Sources only read the components they wrap, except :class:`RepresentationProbe`
(mtrl/training/introspection.py), which draws a batch from the replay."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch

from mtrl.learner.sac import SAC, task_loss_weights
from mtrl.training.scheduler import Scheduler
from mtrl.training.state import TrainingState, empty_episode_sums


class MetricSource(Protocol):
    """A component's metrics for one log record: ``{key: value}``, per-task values keyed
    ``<name>/<task>``. Called once per log point, in the trainer's order."""

    def metrics(self) -> dict[str, float]: ...


def by_task(prefix: str, values: Sequence[float] | np.ndarray, task_names: Sequence[str]) -> dict[str, float]:
    """``{prefix/<task>: value}`` for a (num_tasks,) vector."""
    return {f"{prefix}/{name}": values[i] for i, name in enumerate(task_names)}


class Throughput:
    """``train/steps_per_second`` since the last log and ``train/updates`` so far."""

    def __init__(self, state: TrainingState):
        self.state = state
        self.t_log, self.steps_at_log = time.perf_counter(), state.env_steps

    def metrics(self) -> dict[str, float]:
        now, steps = time.perf_counter(), self.state.env_steps
        speed = (steps - self.steps_at_log) / max(now - self.t_log, 1e-9)
        self.t_log, self.steps_at_log = now, steps
        return {"train/steps_per_second": speed, "train/updates": self.state.updates}


class UpdateMeans:
    """The means of SAC's update metrics since the last log (per-task vectors by task name).
    The running sums live in the :class:`TrainingState`, so a checkpoint keeps them."""

    def __init__(self, state: TrainingState, task_names: Sequence[str]):
        self.state, self.task_names = state, list(task_names)

    def add(self, update: dict[str, torch.Tensor]) -> None:
        """Sum one update's metrics; an update skipped whole (all three steps) has NaN
        losses and is left out of the means."""
        if int(update["divergence/skipped_steps"]) >= 3:
            return
        for k, v in update.items():
            self.state.update_sums[k] = self.state.update_sums.get(k, 0.0) + v
        self.state.update_count += 1

    def metrics(self) -> dict[str, float]:
        record: dict[str, float] = {}
        for k, v in self.state.update_sums.items():
            mean = v / max(self.state.update_count, 1)
            if mean.dim():
                record.update(by_task(k, [float(x) for x in mean], self.task_names))
            else:
                record[k] = float(mean)
        self.state.update_sums, self.state.update_count = {}, 0
        return record


class EpisodeStats:
    """Each task's mean success and return over the episodes finished since the last log."""

    def __init__(self, state: TrainingState, task_names: Sequence[str]):
        self.state, self.task_names = state, list(task_names)

    def metrics(self) -> dict[str, float]:
        sums, record = self.state.ep_sums, {}
        for i, name in enumerate(self.task_names):
            if sums["count"][i]:
                record[f"train/episode_success/{name}"] = sums["success"][i] / sums["count"][i]
                record[f"train/episode_return/{name}"] = sums["return"][i] / sums["count"][i]
        self.state.ep_sums = empty_episode_sums(len(self.task_names))
        return record


class Temperatures:
    """Each task's SAC temperature ``alpha/<task>``."""

    def __init__(self, sac: SAC, task_names: Sequence[str]):
        self.sac, self.task_names = sac, list(task_names)

    def metrics(self) -> dict[str, float]:
        return by_task("alpha", self.sac.alphas().cpu().numpy(), self.task_names)


class SchedulerStats:
    """The task scheduler's per-task numbers, ``scheduler/<stat>/<task>``."""

    def __init__(self, scheduler: Scheduler, task_names: Sequence[str]):
        self.scheduler, self.task_names = scheduler, list(task_names)

    def metrics(self) -> dict[str, float]:
        record: dict[str, float] = {}
        for k, v in self.scheduler.stats().items():
            record.update(by_task(f"scheduler/{k}", v, self.task_names))
        return record


class TaskWeights:
    """``task_weight/<task>``: the weight of each task's losses in the last update
    (``sac.task_weights``' temperature weights times ``sac.task_weighting``'s), and
    ``task_weight_actor/<task>`` where the actor's terms have weights of their own."""

    def __init__(self, sac: SAC, task_names: Sequence[str], temperature_weights: bool):
        self.sac, self.task_names, self.temperature_weights = sac, list(task_names), temperature_weights

    def metrics(self) -> dict[str, float]:
        scale = task_loss_weights(self.sac.task_log_alpha()) if self.temperature_weights else 1.0
        record = by_task("task_weight", (scale * self.sac.weighting.last).cpu().numpy(), self.task_names)
        own = self.sac.terms.actor_weighting
        if own is not None:
            record.update(by_task("task_weight_actor", (scale * own.last).cpu().numpy(), self.task_names))
        return record


class RewardScales:
    """``reward_scale/<task>``: the factor each task's rewards are multiplied by
    (``sac.reward_scaling=returns``, mtrl/learner/reward_scale.py; SAC owns the scale)."""

    def __init__(self, sac: SAC, task_names: Sequence[str]):
        self.sac, self.task_names = sac, list(task_names)

    def metrics(self) -> dict[str, float]:
        divisors = self.sac.reward_divisors()
        return {} if divisors is None else by_task("reward_scale", 1.0 / divisors, self.task_names)


class SoftSharingSpread:
    """``soft_sharing/spread_<net>``: how far apart the tasks' copies of each penalised
    network are (mean relative spread of its soft-shared modules)."""

    def __init__(self, sac: SAC):
        self.sac = sac

    def metrics(self) -> dict[str, float]:
        record: dict[str, float] = {}
        for net, modules in self.sac.penalized.items():
            spreads = [m.relative_spread() for m in modules]  # every Penalized module has one (hooks.py)
            if spreads:
                record[f"soft_sharing/spread_{net}"] = float(np.mean(spreads))
        return record
