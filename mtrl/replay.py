"""Task-balanced replay: one preallocated ring buffer partition per task.

A transition stores the raw observation, action, reward, next observation and a
termination flag; the task index is the partition, so no one-hot copies are kept
(Meta-World: 39*4*2 + 4*4 + 4 + 1 = 333 bytes per transition). Sampling draws the
same number of transitions from every task that has data, by index, on the buffer's
device: batch = per_task x tasks, grouped by task.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from mtrl.safe_state import check_like


class Batch(NamedTuple):
    obs: torch.Tensor  # (B, obs_dim) float32
    action: torch.Tensor  # (B, act_dim) float32
    reward: torch.Tensor  # (B,) float32
    next_obs: torch.Tensor  # (B, obs_dim) float32
    terminated: torch.Tensor  # (B,) float32: 1 only for a true end, never for a time limit
    task: torch.Tensor  # (B,) int64


class MultiTaskReplay:
    """Ring buffers of ``capacity_per_task`` transitions for each of ``num_tasks`` tasks."""

    FIELDS = ("obs", "next_obs", "action", "reward", "terminated")  # one tensor each, in add()'s order

    def __init__(self, num_tasks: int, capacity_per_task: int, obs_dim: int, act_dim: int, device: str | torch.device = "cpu"):
        self.num_tasks, self.capacity = num_tasks, capacity_per_task
        self.device = torch.device(device)
        shape = (num_tasks, capacity_per_task)
        self.obs = torch.zeros(*shape, obs_dim, dtype=torch.float32, device=self.device)
        self.next_obs = torch.zeros(*shape, obs_dim, dtype=torch.float32, device=self.device)
        self.action = torch.zeros(*shape, act_dim, dtype=torch.float32, device=self.device)
        self.reward = torch.zeros(shape, dtype=torch.float32, device=self.device)
        self.terminated = torch.zeros(shape, dtype=torch.bool, device=self.device)
        self.pos = np.zeros(num_tasks, np.int64)  # next write index per task
        self.size = np.zeros(num_tasks, np.int64)
        # Device-side copies so that sampling (every update) makes no host->device transfer:
        # sizes are refreshed at add() time; the task-id vector of the last allocation is kept.
        self._size_dev = torch.zeros(num_tasks, dtype=torch.int64, device=self.device)
        self._task_ids: tuple[tuple[int, ...], torch.Tensor] | None = None
        self._host = {k: getattr(self, k).numpy() for k in self.FIELDS} if self.device.type == "cpu" else None

    @property
    def bytes_per_transition(self) -> int:
        return sum(getattr(self, k).element_size() * getattr(self, k)[0, 0].numel() for k in self.FIELDS)

    def add(self, task: np.ndarray, obs: np.ndarray, action: np.ndarray, reward: np.ndarray, next_obs: np.ndarray, terminated: np.ndarray) -> None:
        """Store one transition per slot; several slots may share a task."""
        task = np.asarray(task, np.int64)
        # k-th slot of the same task in this call writes k places after that task's cursor
        same = task[:, None] == task[None, :]
        rank = np.tril(same, -1).sum(1)
        index = (self.pos[task] + rank) % self.capacity
        counts = np.bincount(task, minlength=self.num_tasks)
        self.pos = (self.pos + counts) % self.capacity
        self.size = np.minimum(self.size + counts, self.capacity)
        self._size_dev.copy_(torch.from_numpy(self.size))
        if self._host is not None:  # CPU: write through numpy views, 2x cheaper than torch indexing
            for name, value in zip(self.FIELDS, (obs, next_obs, action, reward, terminated)):
                self._host[name][task, index] = value
            return
        # Accelerator: one host->device copy of all fields, split on the device.
        o, a = self.obs.shape[-1], self.action.shape[-1]
        packed = np.concatenate([obs, next_obs, action, np.asarray(reward)[:, None], np.asarray(terminated)[:, None]], 1)
        rows = torch.as_tensor(packed.astype(np.float32), device=self.device)
        t, i = torch.as_tensor(np.stack([task, index]), device=self.device)
        self.obs[t, i] = rows[:, :o]
        self.next_obs[t, i] = rows[:, o : 2 * o]
        self.action[t, i] = rows[:, 2 * o : 2 * o + a]
        self.reward[t, i] = rows[:, -2]
        self.terminated[t, i] = rows[:, -1] > 0

    def __len__(self) -> int:
        return int(self.size.sum())

    def sample(self, per_task: int | np.ndarray) -> Batch:
        """``per_task`` transitions from every task with data (or ``per_task[t]`` from task t),
        grouped by task."""
        counts = np.broadcast_to(np.asarray(per_task, np.int64), (self.num_tasks,)) * (self.size > 0)
        if counts.sum() == 0:
            raise RuntimeError("cannot sample from an empty replay buffer")
        key = tuple(counts.tolist())
        if self._task_ids is None or self._task_ids[0] != key:
            self._task_ids = (key, torch.as_tensor(np.repeat(np.arange(self.num_tasks), counts), device=self.device))
        task = self._task_ids[1]
        index = (torch.rand(len(task), device=self.device) * self._size_dev[task]).long()
        return Batch(
            obs=self.obs[task, index],
            action=self.action[task, index],
            reward=self.reward[task, index],
            next_obs=self.next_obs[task, index],
            terminated=self.terminated[task, index].float(),
            task=task,
        )

    def state_dict(self) -> dict:
        return {**{k: getattr(self, k) for k in self.FIELDS}, "pos": self.pos.copy(), "size": self.size.copy()}

    def load_state_dict(self, state: dict) -> None:
        check_like(self.pos, state["pos"], "replay.pos")
        check_like(self.size, state["size"], "replay.size")
        for key in self.FIELDS:
            getattr(self, key).copy_(state[key])
        self.pos, self.size = state["pos"].copy(), state["size"].copy()
        self._size_dev.copy_(torch.from_numpy(self.size))
