"""Faults the training loop contains where they happen, each with its counters and metrics
(:class:`mtrl.training.metrics.MetricSource`): an environment that raises is rebuilt
(:class:`EnvRebuilder`); updates with non-finite or exploding losses, skipped or masked by
:class:`mtrl.learner.sac.SAC`, are counted, and the run stops when they persist
(:class:`DivergenceGuard`). The counters live in the :class:`TrainingState`, so a checkpoint
keeps them; these classes are their only writers."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from mtrl.checkpoint import latest_checkpoint
from mtrl.errors import RunError
from mtrl.learner.sac import SAC
from mtrl.suite import MultiTaskVecEnv, Suite
from mtrl.training.state import TrainingState

# An env that fails this many times in a row (its rebuild included) stops the run.
MAX_ENV_FAULTS_IN_A_ROW = 3


def say(message: str) -> None:
    """One line on stderr for what a user must know about the run (resumes, faults)."""
    print(f"mtrl: {message}", file=sys.stderr, flush=True)


def last_good_checkpoint(run_dir: Path) -> str:
    """What a run that stops on a fault leaves to resume from, for its one-line message."""
    last = latest_checkpoint(run_dir)
    return f"the last good checkpoint is {last}" if last else "no checkpoint was saved"


class DivergenceGuard:
    """Counts updates that skipped a step or masked a task; ``patience`` of them in a row
    stop the run (``train.divergence_patience``) with a one-line :class:`RunError`."""

    def __init__(self, state: TrainingState, sac: SAC, patience: int, run_dir: Path, task_names: Sequence[str]):
        self.state, self.sac, self.patience, self.run_dir = state, sac, patience, run_dir
        self.task_names = list(task_names)

    def check(self, update: dict[str, torch.Tensor]) -> None:
        """Account for one update's ``divergence/*`` metrics; raise when divergence persists."""
        skipped, masked = int(update["divergence/skipped_steps"]), int(update["divergence/masked_tasks"])
        state = self.state
        if not (skipped or masked):
            state.bad_updates_in_a_row = 0
            return
        state.faults["skipped_steps"] += skipped
        if masked:
            state.faults["masked"] += self.sac.last_masked.cpu().numpy()
        state.bad_updates_in_a_row += 1
        if state.bad_updates_in_a_row >= self.patience:
            raise RunError(
                f"training diverged: {state.bad_updates_in_a_row} updates in a row had non-finite or "
                f"exploding losses (step {state.env_steps}); {last_good_checkpoint(self.run_dir)}; "
                "lower the learning rates or sac.max_grad_norm"
            )

    def metrics(self) -> dict[str, float]:
        masked = self.state.faults["masked"]
        return {
            "divergence/skipped_steps_total": self.state.faults["skipped_steps"],
            **{f"divergence/masked/{name}": masked[i] for i, name in enumerate(self.task_names)},
        }


class EnvRebuilder:
    """An env that raised is closed and built again, its running episodes dropped; after
    :data:`MAX_ENV_FAULTS_IN_A_ROW` failures in a row the run stops with a one-line
    :class:`RunError` saying how to resume."""

    def __init__(self, state: TrainingState, suite: Suite, num_slots: int, resume_hint: str):
        self.state, self.suite, self.num_slots, self.resume_hint = state, suite, num_slots, resume_hint
        self.in_a_row = 0

    def succeeded(self) -> None:
        """A vector step went through: the next fault is the first in a row again."""
        self.in_a_row = 0

    def rebuild(self, error: Exception) -> MultiTaskVecEnv:
        state = self.state
        while True:
            state.faults["env_faults"] += 1
            self.in_a_row += 1
            reason = f"{type(error).__name__}: {str(error).splitlines()[0][:100] if str(error) else ''}"
            if self.in_a_row >= MAX_ENV_FAULTS_IN_A_ROW:
                raise RunError(
                    f"the environment failed {MAX_ENV_FAULTS_IN_A_ROW} times in a row at step "
                    f"{state.env_steps} ({reason}); the checkpoints are kept; {self.resume_hint}"
                )
            say(
                f"the environment failed at step {state.env_steps} ({reason}); rebuilding it, its running episodes "
                "are dropped"
            )
            try:
                state.env.close()
            except Exception:
                pass
            try:
                state.env = self.suite.make_env(self.num_slots, seed=int(state.rng.integers(2**31)))
                state.start_episodes(np.arange(self.num_slots))
                return state.env
            except Exception as e:
                error = e

    def metrics(self) -> dict[str, float]:
        return {"faults/env_rebuilds": self.state.faults["env_faults"]}
