"""Learning on the toy suite: a working agent solves the conflicting tasks, a blind one cannot."""

import pytest

from mtrl.trainer import train

from conftest import TOY_FAST, make_config


@pytest.mark.parametrize("agent", ["mtsac", "mhsac"])
def test_agent_solves_the_toy_suite(agent, run_dir):
    cfg = make_config(TOY_FAST, run={"dir": str(run_dir)}, agent={"name": agent, "hidden_sizes": [128, 128]})
    result = train(cfg)
    assert result.final_eval.success_mean >= 0.9, result.final_eval.to_json()


def test_bfloat16_updates_solve_the_toy_suite_too(run_dir):
    cfg = make_config(TOY_FAST, run={"dir": str(run_dir)}, sac={"precision": "bfloat16"})
    result = train(cfg)
    assert result.final_eval.success_mean >= 0.9, result.final_eval.to_json()


def test_hiding_the_task_id_prevents_solving_conflicting_tasks(run_dir):
    cfg = make_config(TOY_FAST, run={"dir": str(run_dir)}, agent={"task_visible": False})
    result = train(cfg)
    # one policy for opposite goals: at best one direction per start state
    assert result.final_eval.success_mean <= 0.5, result.final_eval.to_json()
