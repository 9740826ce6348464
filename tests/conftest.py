"""Shared helpers: configs built in code, and a tiny scripted suite for bookkeeping tests."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from mtrl import hardware
from mtrl.config import from_dict, merge
from mtrl.registry import register
from mtrl.suite import MultiTaskVecEnv, StepResult, Suite

# Under pytest-xdist (`-n 2`, CI), each worker takes one core: two workers of one thread
# beat one process of two threads on the learning tests' small networks.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)

TOY_FAST = {
    "env": {"suite": "toy", "num_tasks": 4},
    "agent": {"name": "mtsac", "hidden_sizes": [128, 128]},
    "train": {
        "total_steps": 16_000,
        "warmup_steps": 2_000,
        "batch_per_task": 64,
        "buffer_per_task": 50_000,
        "eval_every": 8_000,
        "eval_episodes": 20,
        "log_every": 2_000,
        "checkpoint_every": 8_000,
        "progress": False,
    },
}


def make_config(base: dict, **sections):
    """``make_config(TOY_FAST, train={"total_steps": 100}, seed=1)``"""
    return from_dict(merge(base, sections))


# A short run that checkpoints half-way, for the resume tests.
RESUMABLE = {
    "total_steps": 1200,
    "warmup_steps": 400,
    "checkpoint_every": 600,
    "eval_every": 0,
    "log_every": 200,
    "final_eval_episodes": 2,
    "save_replay": True,
}


def assert_resumes_exactly(tmp_path: Path, base: dict, **sections) -> list[dict]:
    """Trains ``base`` + ``sections`` (``RESUMABLE``'s schedule) whole, and again stopped at its
    step-600 checkpoint and resumed; asserts that both log the same training records (the
    stopped run's extra final evaluation left out) and returns them."""
    from mtrl.training.logger import read_metrics, without_timing
    from mtrl.training.trainer import train

    def run(name: str, total: int, resume: bool = False) -> None:
        schedule = {**RESUMABLE, **sections.get("train", {}), "total_steps": total}
        train(make_config(base, **{**sections, "train": schedule}, run={"dir": str(tmp_path / name)}, resume=resume))

    def training(name: str) -> list[dict]:
        return [r for r in without_timing(read_metrics(tmp_path / name)) if "eval/success_mean" not in r]

    run("whole", RESUMABLE["total_steps"])
    run("stopped", 600)
    run("stopped", RESUMABLE["total_steps"], resume=True)
    assert training("stopped") == training("whole")
    return training("whole")


@dataclass
class CountdownConfig:
    suite: str = "countdown"
    num_tasks: int = 2
    terminate_at: int = 3  # task 0 terminates at this step
    episode_steps: int = 5  # every task is truncated here


class CountdownEnv(MultiTaskVecEnv):
    """obs = [steps taken, task id]; task 0 reaches a true terminal state early, others hit
    the time limit; success exactly at step 2. Reward = step index."""

    def __init__(self, cfg: CountdownConfig, num_slots: int):
        self.cfg, self.num_slots = cfg, num_slots
        self.obs_dim, self.act_dim, self.max_episode_steps = 2, 1, cfg.episode_steps
        self.t = np.zeros(num_slots, np.int64)
        self.task = np.zeros(num_slots, np.int64)

    def _obs(self, slots):
        return np.stack([self.t[slots], self.task[slots]], 1).astype(np.float32)

    def reset_slots(self, slots, tasks, variants=None):
        self.t[slots], self.task[slots] = 0, tasks
        return self._obs(slots)

    def step(self, actions, active=None):
        self.t += 1
        all_slots = np.arange(self.num_slots)
        return StepResult(
            obs=self._obs(all_slots),
            reward=self.t.astype(np.float32),
            terminated=(self.task == 0) & (self.t >= self.cfg.terminate_at),
            truncated=self.t >= self.cfg.episode_steps,
            success=self.t == 2,
        )


@register("suite", "countdown", CountdownConfig)
class CountdownSuite(Suite):
    """Scripted episodes for bookkeeping tests."""

    Config = CountdownConfig

    @property
    def task_names(self):
        return [f"count-{i}" for i in range(self.cfg.num_tasks)]

    @property
    def descriptions(self):
        return {n: f"Count steps in task {n}." for n in self.task_names}

    def make_env(self, num_slots, seed):
        return CountdownEnv(self.cfg, num_slots)


@pytest.fixture
def run_dir(tmp_path):
    return tmp_path / "run"


# A toy run of a few seconds, trained once per test module that asks for it (policy, video).
TINY_TOY = [
    "train.total_steps=400",
    "train.warmup_steps=100",
    "train.eval_every=0",
    "train.eval_episodes=1",
    "train.final_eval_episodes=1",
    "train.log_every=200",
    "train.checkpoint_every=200",
    "agent.hidden_sizes=[16]",
    "device=cpu",
    "train.progress=false",
]


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    from mtrl.cli import main

    run_dir = tmp_path_factory.mktemp("toy") / "run"
    assert main(["train", "toy-mtsac", *TINY_TOY, f"run.dir={run_dir}"]) == 0
    return run_dir


@pytest.fixture(autouse=True)
def float32_unless_asked(monkeypatch):
    """sac.precision=auto resolves to float32 in every test, whatever the CPU (it would pick
    bfloat16 on an AVX512-BF16 one), so that a test's numbers do not depend on the machine;
    bfloat16 is tested where a test asks for it, and auto's choice with explicit CPU flags."""
    monkeypatch.setattr(hardware, "cpu_flags", lambda *args: set())
