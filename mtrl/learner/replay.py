"""Task-balanced replay: one preallocated ring buffer partition per task.

A transition stores the raw observation, action, reward, next observation and a
termination flag; the task index is the partition, so no one-hot copies are kept
(Meta-World: 39*4*2 + 4*4 + 4 + 1 = 333 bytes per transition). Sampling draws the
same number of transitions from every task that has data, by index, on the buffer's
device: batch = per_task x tasks, grouped by task.

With ``n_step > 1`` each slot's transitions wait in a short queue until n steps have
passed or the episode ends; then the buffer stores (s_0, a_0, sum_k gamma^k r_k, s_k,
terminated, gamma^k) with k = n, or fewer at an episode's end. A time-limit truncation
bootstraps from its last state, a termination does not, and since a slot changes task only
between episodes no n-step return crosses a task boundary.
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
    discount: torch.Tensor | None = None  # (B,) gamma^k of an n-step return; None: 1-step (sac.gamma)


class MultiTaskReplay:
    """Ring buffers of ``capacity_per_task`` transitions for each of ``num_tasks`` tasks."""

    FIELDS = ("obs", "next_obs", "action", "reward", "terminated")  # one tensor each, in add()'s order

    def __init__(
        self,
        num_tasks: int,
        capacity_per_task: int,
        obs_dim: int,
        act_dim: int,
        device: str | torch.device = "cpu",
        n_step: int = 1,
        gamma: float = 0.99,
        num_slots: int | None = None,
    ):
        self.num_tasks, self.capacity = num_tasks, capacity_per_task
        self.n_step, self.gamma = n_step, gamma
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
        if n_step > 1:
            self.discount = torch.zeros(shape, dtype=torch.float32, device=self.device)
            self.FIELDS = (*MultiTaskReplay.FIELDS, "discount")
            self.pending = PendingSteps(num_slots or num_tasks, n_step, obs_dim, act_dim)
        self._host = {k: getattr(self, k).numpy() for k in self.FIELDS} if self.device.type == "cpu" else None

    @property
    def bytes_per_transition(self) -> int:
        return sum(getattr(self, k).element_size() * getattr(self, k)[0, 0].numel() for k in self.FIELDS)

    def add(
        self,
        task: np.ndarray,
        obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        next_obs: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray | None = None,
    ) -> None:
        """Store one transition per slot (row i is slot i); several slots may share a task.
        With ``n_step > 1`` ``truncated`` is needed: what is stored are the n-step
        transitions that this step completes."""
        if self.n_step == 1:
            self._write(task, obs, action, reward, next_obs, terminated)
            return
        if truncated is None:
            raise ValueError("an n-step replay needs each step's truncated flags")
        ended = np.asarray(terminated, bool) | np.asarray(truncated, bool)
        self.pending.push(task, obs, action, reward, next_obs)
        out = [self.pending.emit(s, self.gamma, bool(terminated[s])) for s in np.flatnonzero(ended)]
        full = np.flatnonzero(~ended & (self.pending.length == self.n_step))
        out += [self.pending.emit(s, self.gamma, False, first_only=True) for s in full]
        self._write_rows(out)

    def flush(self, slots: np.ndarray) -> None:
        """Store what waits in ``slots`` as shorter returns bootstrapped from their last state
        (their episodes are dropped: an env rebuilt after a fault, a resume without them)."""
        if self.n_step > 1:
            self._write_rows([self.pending.emit(s, self.gamma, False) for s in slots if self.pending.length[s]])

    def _write_rows(self, rows: list[tuple[np.ndarray, ...]]) -> None:
        if rows:
            self._write(*(np.concatenate(column) for column in zip(*rows)))

    def _write(
        self,
        task: np.ndarray,
        obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        next_obs: np.ndarray,
        terminated: np.ndarray,
        discount: np.ndarray | None = None,
    ) -> None:
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
            for name, value in zip(self.FIELDS, (obs, next_obs, action, reward, terminated, discount)):
                self._host[name][task, index] = value
            return
        # Accelerator: one host->device copy of all fields, split on the device.
        o, a = self.obs.shape[-1], self.action.shape[-1]
        packed = np.concatenate(
            [obs, next_obs, action, np.asarray(reward)[:, None], np.asarray(terminated)[:, None]], 1
        )
        rows = torch.as_tensor(packed.astype(np.float32), device=self.device)
        t, i = torch.as_tensor(np.stack([task, index]), device=self.device)
        self.obs[t, i] = rows[:, :o]
        self.next_obs[t, i] = rows[:, o : 2 * o]
        self.action[t, i] = rows[:, 2 * o : 2 * o + a]
        self.reward[t, i] = rows[:, -2]
        self.terminated[t, i] = rows[:, -1] > 0
        if discount is not None:
            self.discount[t, i] = torch.as_tensor(np.asarray(discount, np.float32), device=self.device)

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
            discount=self.discount[task, index] if self.n_step > 1 else None,
        )

    def state_dict(self) -> dict:
        state = {**{k: getattr(self, k) for k in self.FIELDS}, "pos": self.pos.copy(), "size": self.size.copy()}
        if self.n_step > 1:
            state["pending"] = self.pending.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        check_like(self.pos, state["pos"], "replay.pos")
        check_like(self.size, state["size"], "replay.size")
        for key in self.FIELDS:
            getattr(self, key).copy_(state[key])
        self.pos, self.size = state["pos"].copy(), state["size"].copy()
        self._size_dev.copy_(torch.from_numpy(self.size))
        if self.n_step > 1:
            self.pending.load_state_dict(state["pending"])


class PendingSteps:
    """Each slot's last (at most n) 1-step transitions, oldest first, not yet stored."""

    def __init__(self, num_slots: int, n: int, obs_dim: int, act_dim: int):
        self.task = np.zeros((num_slots, n), np.int64)
        self.obs = np.zeros((num_slots, n, obs_dim), np.float32)
        self.action = np.zeros((num_slots, n, act_dim), np.float32)
        self.reward = np.zeros((num_slots, n), np.float32)
        self.next_obs = np.zeros((num_slots, n, obs_dim), np.float32)
        self.length = np.zeros(num_slots, np.int64)

    def push(
        self, task: np.ndarray, obs: np.ndarray, action: np.ndarray, reward: np.ndarray, next_obs: np.ndarray
    ) -> None:
        slots, at = np.arange(len(self.length)), self.length
        self.task[slots, at], self.obs[slots, at], self.action[slots, at] = task, obs, action
        self.reward[slots, at], self.next_obs[slots, at] = reward, next_obs
        self.length = at + 1

    def emit(self, s: int, gamma: float, terminated: bool, first_only: bool = False) -> tuple[np.ndarray, ...]:
        """The n-step transitions starting at slot ``s``'s first waiting step (or at every
        waiting step), all ending at its last one; they leave the queue."""
        k = int(self.length[s])
        starts = np.arange(1 if first_only else k)
        steps = np.arange(k)
        # return from start j: sum_{i >= j} gamma^(i - j) r_i; its bootstrap discount gamma^(k - j)
        powers = np.where(steps[None, :] >= starts[:, None], gamma ** (steps[None, :] - starts[:, None]), 0.0)
        returns = (powers * self.reward[s, :k].astype(np.float64)).sum(1).astype(np.float32)
        rows = (
            self.task[s, starts],
            self.obs[s, starts],
            self.action[s, starts],
            returns,
            np.repeat(self.next_obs[s, k - 1][None], len(starts), 0),
            np.full(len(starts), terminated),
            (gamma ** (k - starts)).astype(np.float32),
        )
        kept = k - len(starts)  # shift what stays to the front
        for field in (self.task, self.obs, self.action, self.reward, self.next_obs):
            field[s, :kept] = field[s, len(starts) : k].copy()
        self.length[s] = kept
        return rows

    def state_dict(self) -> dict:
        return {
            k: torch.from_numpy(getattr(self, k).copy())
            for k in ("task", "obs", "action", "reward", "next_obs", "length")
        }

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            getattr(self, key)[...] = value.cpu().numpy()
