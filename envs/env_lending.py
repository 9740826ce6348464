"""Lending environments to slots, so memory follows how many slots run a task at once.

A slot can run any task, so building one env per (slot, task) grows to slots x tasks: with
a scheduler that moves slots between tasks, MT50 with 50 slots would hold 2,500 Meta-World
envs of about 20 MB each (``benchmarks/env_memory.py``), more than this 24 GiB machine has.
Instead each slot borrows an env of its episode's task and gives it back at its next reset.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class EnvLender:
    """Hands out env handles per task; ``make(task)`` builds new handles (one or several)
    only when all of that task's handles are lent out."""

    def __init__(self, num_slots: int, make: Callable[[int], list[Any]]):
        self.make = make
        self.made = 0  # handles built so far
        self._free: dict[int, list[Any]] = {}
        self._lent: list[tuple[int, Any] | None] = [None] * num_slots  # (task, handle) per slot

    def give_back(self, slots: list[int]) -> None:
        """Take back the slots' current handles (if any)."""
        for slot in slots:
            if self._lent[slot] is not None:
                task, handle = self._lent[slot]
                self._free[task].append(handle)
                self._lent[slot] = None

    def relend(self, slots: list[int], tasks: list[int]) -> list[Any]:
        """Take back the slots' current handles, then lend each slot one of its new task's."""
        self.give_back(slots)
        out = []
        for slot, task in zip(slots, tasks):
            free = self._free.setdefault(task, [])
            if not free:
                new = self.make(task)
                self.made += len(new)
                free.extend(reversed(new))  # lend them in the order they were built
            handle = free.pop()
            self._lent[slot] = (task, handle)
            out.append(handle)
        return out
