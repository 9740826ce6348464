"""Learning on the toy suite: a working agent solves the conflicting tasks, a blind one cannot."""

from pathlib import Path

import pytest
import torch
import yaml

from mtrl import hardware
from mtrl.training.logger import read_metrics
from mtrl.training.trainer import train

from conftest import TOY_FAST, make_config


@pytest.mark.parametrize("agent", ["mtsac", "mhsac"])
def test_agent_solves_the_toy_suite(agent, run_dir):
    cfg = make_config(TOY_FAST, run={"dir": str(run_dir)}, agent={"name": agent, "hidden_sizes": [128, 128]})
    result = train(cfg)
    assert result.final_eval.success_mean >= 0.9, result.final_eval.to_json()


# Read at import, before the autouse fixture hides the CPU's flags from each test.
BF16_FAST, BF16_WHY = hardware.bf16_is_fast(torch.device("cpu"))


@pytest.mark.skipif(
    not BF16_FAST,
    reason=f"bfloat16 is emulated here, ~14x slower ({BF16_WHY}); tests/test_precision.py still checks its updates",
)
def test_bfloat16_updates_solve_the_toy_suite_too(run_dir):
    cfg = make_config(TOY_FAST, run={"dir": str(run_dir)}, sac={"precision": "bfloat16"})
    result = train(cfg)
    assert result.final_eval.success_mean >= 0.9, result.final_eval.to_json()


def test_three_step_returns_solve_the_toy_suite_too(run_dir):
    """At 20k steps: at the others' 16k, seed 0 left reach-east unsolved (0.75) on AVX2 CPUs, whose
    sums differ from AVX-512's in the last bits; seeds 1-3 solved all four, and seed 0 did at 20k."""
    cfg = make_config(TOY_FAST, run={"dir": str(run_dir)}, sac={"n_step": 3}, train={"total_steps": 20_000})
    result = train(cfg)
    assert result.final_eval.success_mean >= 0.9, result.final_eval.to_json()


def test_hiding_the_task_id_prevents_solving_conflicting_tasks(run_dir):
    cfg = make_config(TOY_FAST, run={"dir": str(run_dir)}, agent={"task_visible": False})
    result = train(cfg)
    # one policy for opposite goals: at best one direction per start state
    assert result.final_eval.success_mean <= 0.5, result.final_eval.to_json()


ARCHITECTURES = ["softmod", "moore", "paco", "brc"]


def toy_sections(agent: str) -> dict:
    """The agent and sac sections and the update ratio of configs/toy-<agent>.yaml."""
    data = yaml.safe_load((Path(__file__).parents[1] / "configs" / f"toy-{agent}.yaml").read_text())
    train_keys = {k: v for k, v in data["train"].items() if k == "updates_per_step"}
    return {"agent": data["agent"], "sac": data.get("sac", {}), "train": {**TOY_FAST["train"], **train_keys}}


@pytest.mark.parametrize("agent", ARCHITECTURES)
def test_each_architecture_solves_the_toy_suite(agent, run_dir):
    """Soft Modularization, MOORE, PaCo and BRC with their toy configs' networks, at the
    MT-SAC test's budget (BRC with its paper's 2 updates per vector step)."""
    cfg = make_config(TOY_FAST, run={"dir": str(run_dir)}, **toy_sections(agent))
    result = train(cfg)
    assert result.final_eval.success_mean >= 0.9, result.final_eval.to_json()


def test_each_architecture_runs_with_the_monitor_and_the_scheduler_and_reports(tmp_path):
    """Every architecture through the CLI with conflict monitoring and the learning-progress
    scheduler, then one `mtrl report` over all of them."""
    from mtrl.analysis.report import write_report
    from mtrl.cli import main

    tiny = [
        "train.total_steps=600",
        "train.warmup_steps=200",
        "train.eval_every=0",
        "train.eval_episodes=1",
        "train.final_eval_episodes=2",
        "train.log_every=200",
        "train.checkpoint_every=0",
        "device=cpu",
        "train.progress=false",
        "conflict.monitor_every=20",
        "scheduler.name=learning_progress",
    ]
    for agent in ARCHITECTURES:
        assert main(["train", f"toy-{agent}", *tiny, f"run.name={agent}", f"run.dir={tmp_path / 'runs' / agent}"]) == 0
        records = read_metrics(tmp_path / "runs" / agent)
        assert any("conflict/critic/conflicting_fraction" in r for r in records), agent
        assert any(k.startswith("scheduler/") for r in records for k in r), agent
    report = write_report([tmp_path / "runs"], tmp_path / "report", reps=100)
    assert sorted(m.label for m in report.methods) == sorted(ARCHITECTURES)


LEVERS = {
    "uncertainty": {"sac": {"task_weighting": "uncertainty"}},
    "famo": {"sac": {"task_weighting": "famo"}},
    # inverse_size matters when the batch follows a skewed collection: the scheduler's shares
    "inverse_size": {
        "sac": {"task_weighting": "inverse_size"},
        "scheduler": {"name": "learning_progress"},
        "train": {"batch_allocation": "scheduler"},
    },
    "softshare": {"agent": {"name": "softshare", "hidden_sizes": [128, 128], "strength": 1e-3}},
}


@pytest.mark.parametrize("lever", list(LEVERS))
def test_each_multi_task_lever_solves_the_toy_suite(lever, run_dir):
    """Loss weighting and soft sharing keep MT-SAC solving the conflicting toy tasks (they
    reach 100 % by 8k steps here; 10k steps, final evaluation only)."""
    sections = {k: dict(v) for k, v in LEVERS[lever].items()}
    sections["train"] = {**TOY_FAST["train"], "total_steps": 10_000, "eval_every": 0, **sections.get("train", {})}
    cfg = make_config(TOY_FAST, run={"dir": str(run_dir)}, **sections)
    result = train(cfg)
    assert result.final_eval.success_mean >= 0.9, result.final_eval.to_json()
    if lever == "softshare":  # the logged spread of the tasks' actors, from ~0.87 (4 independent inits)
        records = read_metrics(run_dir)
        spreads = [r["soft_sharing/spread_actor"] for r in records if "soft_sharing/spread_actor" in r]
        assert spreads and spreads[-1] < 0.5, spreads


def test_a_student_distilled_from_single_task_teachers_solves_the_toy_suite(tmp_path):
    """Four single-task teachers (one per goal), then a student trained with their KL term at
    the lever tests' budget."""
    teachers = []
    for angle in (0, 90, 180, 270):
        cfg = make_config(
            TOY_FAST,
            run={"dir": str(tmp_path / f"teacher{angle}")},
            env={"num_tasks": 1, "goal_angles": [angle]},
            train={
                **TOY_FAST["train"],
                "total_steps": 6_000,
                "warmup_steps": 1_000,
                "eval_every": 0,
                "checkpoint_every": 0,
                "num_slots": 4,
            },
        )  # 4 slots of its task: 1,250 updates
        assert train(cfg).final_eval.success_mean >= 0.9  # a teacher worth distilling
        teachers.append(str(tmp_path / f"teacher{angle}"))
    cfg = make_config(
        TOY_FAST,
        run={"dir": str(tmp_path / "student")},
        distill={"teachers": teachers, "weight": 1.0},
        train={**TOY_FAST["train"], "total_steps": 10_000, "eval_every": 0},
    )
    result = train(cfg)
    assert result.final_eval.success_mean >= 0.9, result.final_eval.to_json()
