"""Runs that survive kills, corrupt files, full disks, signals and crashing environments.

The kill tests run the real CLI in a subprocess and ``kill -9`` it at random moments; the
resumed run must log exactly what an uninterrupted run with the same seed logs."""

from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

from mtrl import atomic_write as atomic_write_module
from mtrl.atomic_write import atomic_write
from mtrl.checkpoint import (
    CheckpointError,
    list_checkpoints,
    load_checkpoint,
    load_latest_good,
    save_checkpoint,
)
from mtrl.cli import main
from mtrl.envs.toy import PointMassVecEnv, ToyConfig, ToySuite
from mtrl.errors import RunError, WriteError
from mtrl.registry import register
from mtrl.training.logger import read_metrics, without_timing
from mtrl.training.trainer import train

from conftest import make_config

# Small enough that a whole run takes a few seconds in a subprocess.
TINY = [
    "toy-mtsac",
    "agent.hidden_sizes=[32,32]",
    "train.total_steps=3200",
    "train.warmup_steps=400",
    "train.batch_per_task=16",
    "train.buffer_per_task=5000",
    "train.eval_every=1600",
    "train.eval_episodes=2",
    "train.final_eval_episodes=2",
    "train.log_every=200",
    "train.checkpoint_every=400",
    "train.keep_checkpoints=3",
    "train.save_replay=true",
    "train.progress=false",
    "device=cpu",
    "seed=3",
]


def cli(args: list[str], **kwargs) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parent.parent)}
    return subprocess.Popen(
        [sys.executable, "-m", "mtrl.cli", "train", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def comparable(run_dir: Path) -> list[dict]:
    return without_timing(read_metrics(run_dir))


def test_kill_9_at_random_moments_then_resume_gives_the_uninterrupted_metrics(tmp_path):
    longer = [*TINY, "train.total_steps=4800"]  # 12 checkpoint intervals: room for 3 kills before the end
    reference = cli([*longer, f"run.dir={tmp_path / 'reference'}"])
    assert reference.wait(timeout=600) == 0, reference.stderr.read()
    run_dir = tmp_path / "killed"
    chooser = random.Random(0)  # random kill moments, the same ones on every test run
    kills, resumed_lines = 0, []
    args = [*longer, f"run.dir={run_dir}"]
    for attempt in range(8):
        before = list_checkpoints(run_dir)
        proc = cli(args if attempt == 0 else [*args, "resume=true"])
        # kill at a random moment after this process wrote a checkpoint of its own, so that
        # every kill lands in training, between two checkpoints, and loses work to redo
        deadline = time.time() + 300
        while list_checkpoints(run_dir) == before and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        time.sleep(chooser.uniform(0.0, 0.5))
        newest = list_checkpoints(run_dir)[-1:]
        finished = bool(newest) and newest[0].name == "step_4800.pt"  # the final one: nothing left to resume
        if proc.poll() is None and kills < 3 and not finished:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=600)
        resumed_lines += [line for line in proc.stderr.read().splitlines() if "resumed from step" in line]
        if proc.returncode == 0:
            break
    assert kills == 3, "the run finished before three kills: make TINY longer"
    assert len(resumed_lines) == attempt == 3
    killed = comparable(run_dir)
    steps = [r["step"] for r in killed]
    assert steps == sorted(steps)  # no duplicated or out-of-order records
    assert killed == comparable(tmp_path / "reference")


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stop_signal_saves_a_checkpoint_and_says_how_to_resume(tmp_path, sig, code):
    run_dir = tmp_path / "run"
    proc = cli([*TINY, "train.total_steps=200000", "train.checkpoint_every=100000", f"run.dir={run_dir}"])
    while not (run_dir / "metrics.jsonl").exists() or not (run_dir / "metrics.jsonl").stat().st_size:
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.05)
    proc.send_signal(sig)
    assert proc.wait(timeout=120) == code
    start, *lines = proc.stderr.read().strip().splitlines()
    assert start == f"mtrl: run directory: {run_dir}"  # said when training starts
    assert len(lines) == 1 and f"stopped by {sig.name} at step" in lines[0] and "resume=true" in lines[0], lines
    (checkpoint,) = list_checkpoints(run_dir)
    step = load_checkpoint(checkpoint)["env_steps"]
    assert 0 < step < 100000 and f"{step:,}" in lines[0]
    hinted = lines[0].split("resume with: mtrl ")[1].split()  # the command the line gives, run for a few more steps
    assert main([*hinted, f"train.total_steps={step + 100}"]) == 0
    assert read_metrics(run_dir)[-1]["step"] == step + 100


def test_the_printed_resume_command_works_verbatim_when_the_run_directory_was_chosen_automatically(tmp_path):
    def stop_when(proc: subprocess.Popen, said: str) -> list[str]:
        """Ctrl-C once the run has said ``said`` on stderr; its stderr lines."""
        lines = []
        while not any(said in line for line in lines):
            line = proc.stderr.readline()
            assert line, f"the run ended before saying {said!r}: {lines}"
            lines.append(line.strip())
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=120) == 130
        return lines + proc.stderr.read().strip().splitlines()

    args = [a for a in TINY if not a.startswith("train.log_every")] + ["train.total_steps=200000", "train.log_every=20"]
    lines = stop_when(cli(args, cwd=tmp_path), "run directory:")  # no run.dir: runs/toy-mtsac-seed3-<time>
    run_dir = lines[0].removeprefix("mtrl: run directory: ")
    assert run_dir.startswith("runs/toy-mtsac-seed3-") and lines[-1].endswith(
        f"resume with: mtrl train {run_dir}/config.yaml resume=true"
    )
    step = load_checkpoint(list_checkpoints(tmp_path / run_dir)[-1])["env_steps"]
    hinted = lines[-1].split("resume with: mtrl train ")[1].split()
    again = stop_when(cli(hinted, cwd=tmp_path), "run directory:")  # the command as printed, nothing added
    assert (
        f"mtrl: resumed from step {step:,} (step_{step}.pt)" in again and f"mtrl: run directory: {run_dir}" in again
    ), again
    assert len(list((tmp_path / "runs").iterdir())) == 1
    assert load_checkpoint(list_checkpoints(tmp_path / run_dir)[-1])["env_steps"] > step


def test_corrupt_latest_checkpoint_is_skipped_with_the_reason(tmp_path, capsys):
    run_dir = tmp_path / "run"
    args = [*TINY, "train.total_steps=1200", f"run.dir={run_dir}"]
    assert main(["train", *args]) == 0
    checkpoints = list_checkpoints(run_dir)
    assert [p.name for p in checkpoints] == ["step_400.pt", "step_800.pt", "step_1200.pt"]
    data = checkpoints[-1].read_bytes()
    checkpoints[-1].write_bytes(data[: len(data) // 2])  # truncated, as by a crash mid-copy
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(checkpoints[-1])
    path, state, skipped = load_latest_good(run_dir)
    assert path == checkpoints[1] and state["env_steps"] == 800 and len(skipped) == 1
    capsys.readouterr()
    assert main(["train", *args[:-1], "train.total_steps=1600", f"run.dir={run_dir}", "resume=true"]) == 0
    err = capsys.readouterr().err
    assert "skipped step_1200.pt is truncated or corrupt" in err and "resumed from step 800" in err


def test_a_flipped_byte_is_caught_by_the_checksum(tmp_path):
    path = save_checkpoint(tmp_path, 10, {"sac": {"w": torch.ones(1000)}, "env_steps": 10}, keep=1)
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum"):
        load_checkpoint(path)


def test_no_checkpoint_ever_holds_a_non_finite_weight(tmp_path):
    with pytest.raises(RunError, match="non-finite"):
        save_checkpoint(tmp_path, 10, {"sac": {"agent": {"w": torch.tensor([1.0, float("nan")])}}}, keep=1)
    assert not list_checkpoints(tmp_path)


def test_keep_must_be_at_least_one(tmp_path):
    with pytest.raises(ValueError):
        save_checkpoint(tmp_path, 1, {"sac": {}}, keep=0)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "eval.json"
    atomic_write(target, "old")

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic_write_module.os, "fsync", disk_full)
    with pytest.raises(WriteError, match="the disk is full"):
        atomic_write(target, "new content")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval.json"]


def test_an_unwritable_run_directory_is_one_line_and_writes_nothing(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["train", *TINY, f"run.dir={blocker / 'run'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mtrl: error: cannot write to run.dir"), err


def test_resume_of_a_run_that_never_checkpointed_starts_it_again(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("seed: 0\n")  # a start that failed before its first checkpoint
    (run_dir / "metrics.jsonl").write_text('{"step": 5}\n')
    assert main(["train", *TINY, "train.total_steps=400", f"run.dir={run_dir}"]) == 2  # refused without resume=true
    assert main(["train", *TINY, "train.total_steps=400", f"run.dir={run_dir}", "resume=true"]) == 0
    assert "starting it from step 0" in capsys.readouterr().err
    assert read_metrics(run_dir)[0]["step"] > 5


# --- environment faults ------------------------------------------------------------------

FAILS: dict[str, list[int]] = {"at": [], "steps": [0]}


@dataclass
class FlakyConfig(ToyConfig):
    suite: str = "flaky-toy"
    fail_at: list[int] = field(default_factory=list)  # vector steps (counted over all envs) that raise
    nan_reward_task: int = -1  # this task's rewards are NaN (a broken reward function)


class FlakyEnv(PointMassVecEnv):
    def step(self, actions, active=None):
        FAILS["steps"][0] += 1
        if FAILS["steps"][0] in self.cfg.fail_at:
            raise RuntimeError("simulator crashed")
        result = super().step(actions, active)
        broken = (self.goal == self.goals[self.cfg.nan_reward_task]).all(1) if self.cfg.nan_reward_task >= 0 else False
        result.reward = np.where(broken, np.float32("nan"), result.reward)
        return result


@register("suite", "flaky-toy", FlakyConfig)
class FlakySuite(ToySuite):
    """The toy suite with a simulator that crashes at given steps (tests only)."""

    Config = FlakyConfig

    def make_env(self, num_slots, seed):
        return FlakyEnv(self.cfg, num_slots, seed)


FLAKY = {
    "env": {"suite": "flaky-toy", "num_tasks": 2},
    "agent": {"name": "mtsac", "hidden_sizes": [16]},
    "train": {
        "total_steps": 400,
        "warmup_steps": 100,
        "batch_per_task": 8,
        "buffer_per_task": 1000,
        "eval_every": 0,
        "eval_episodes": 1,
        "final_eval_episodes": 1,
        "log_every": 400,
        "checkpoint_every": 0,
        "progress": False,
    },
}


def test_an_environment_that_raises_is_rebuilt_and_training_goes_on(tmp_path, capsys):
    FAILS["steps"][0] = 0
    result = train(make_config(FLAKY, env={"fail_at": [30, 90]}, run={"dir": str(tmp_path / "run")}))
    assert result.env_steps == 400
    last = [r for r in read_metrics(tmp_path / "run") if "faults/env_rebuilds" in r][-1]
    assert last["faults/env_rebuilds"] == 2
    assert capsys.readouterr().err.count("the environment failed at step") == 2


def test_an_environment_that_keeps_failing_stops_the_run_with_one_line(tmp_path):
    FAILS["steps"][0] = 0
    with pytest.raises(RunError, match="failed 3 times in a row"):
        train(make_config(FLAKY, env={"fail_at": list(range(20, 30))}, run={"dir": str(tmp_path / "run")}))


def test_a_task_with_nan_rewards_is_masked_and_never_reaches_the_weights(tmp_path):
    run_dir = tmp_path / "run"
    # (a patience above the run's length: by default 100 masked updates in a row stop a run)
    train(
        make_config(FLAKY, env={"nan_reward_task": 1}, train={"divergence_patience": 10_000}, run={"dir": str(run_dir)})
    )
    last = [r for r in read_metrics(run_dir) if "divergence/masked/reach-north" in r][-1]
    assert last["divergence/masked/reach-north"] == last["train/updates"] > 100  # in every update
    assert last["divergence/masked/reach-east"] == 0
    assert last["loss/critic"] is not None  # the healthy task still learns, with finite losses
    state = load_checkpoint(list_checkpoints(run_dir)[-1])
    assert all(torch.isfinite(v).all() for v in state["sac"]["agent"].values())


def test_persistent_divergence_stops_the_run_with_one_line(tmp_path):
    with pytest.raises(RunError, match="training diverged: 5 updates in a row"):
        train(
            make_config(
                FLAKY, env={"nan_reward_task": 1}, train={"divergence_patience": 5}, run={"dir": str(tmp_path / "run")}
            )
        )


def test_resuming_a_finished_run_is_refused_and_changes_nothing(tmp_path, capsys):
    run_dir = tmp_path / "run"
    args = ["train", *TINY, "train.total_steps=400", f"run.dir={run_dir}"]
    assert main(args) == 0
    before = (run_dir / "metrics.jsonl").read_bytes()
    assert main([*args, "resume=true"]) == 2
    assert "already finished at step 400" in capsys.readouterr().err
    assert (run_dir / "metrics.jsonl").read_bytes() == before  # no second final evaluation
    assert main([*args[:-2], "train.total_steps=800", f"run.dir={run_dir}", "resume=true"]) == 0  # training further
    finals = [r for r in read_metrics(run_dir) if r.get("eval/episodes_per_task") == 2 and "eval/success_mean" in r]
    assert [r["step"] for r in finals][-2:] == [400, 800]
