"""Meta-World v3 suite: task order, descriptions, observations, time limits, and a short
MT10 run through the CLI (a few hundred steps, one evaluation episode per task)."""

import json

import numpy as np
import pytest

from mtrl.cli import main
from mtrl.envs.meta_world import MetaWorldConfig, MetaWorldSuite, all_task_names
from mtrl.envs.meta_world_descriptions import DESCRIPTIONS
from mtrl.errors import ConfigError
from mtrl.training.logger import read_metrics

MT10 = [
    "reach-v3",
    "push-v3",
    "pick-place-v3",
    "door-open-v3",
    "drawer-open-v3",
    "drawer-close-v3",
    "button-press-topdown-v3",
    "peg-insert-side-v3",
    "window-open-v3",
    "window-close-v3",
]


def test_task_order_and_descriptions():
    assert MetaWorldSuite(MetaWorldConfig(benchmark="MT10")).task_names == MT10
    assert len(MetaWorldSuite(MetaWorldConfig(benchmark="MT25")).task_names) == 25
    names = MetaWorldSuite(MetaWorldConfig(benchmark="MT50")).task_names
    assert names == all_task_names() and len(names) == 50
    assert set(DESCRIPTIONS) == set(names)
    assert all(d.endswith(".") and len(d.split()) >= 3 for d in DESCRIPTIONS.values())


def test_a_task_subset_names_no_benchmark_in_its_saved_config():
    import yaml

    from mtrl.config import config_yaml, load_config

    saved = yaml.safe_load(config_yaml(load_config("quickstart")))["env"]
    assert saved["benchmark"] is None and len(saved["tasks"]) == 4  # not "MT10" beside its 4 tasks
    assert load_config("mt10-mtsac").env.benchmark == "MT10"
    assert MetaWorldSuite(MetaWorldConfig()).task_names == MetaWorldSuite(MetaWorldConfig(benchmark="MT10")).task_names


@pytest.mark.parametrize(
    "cfg, message",
    [
        (MetaWorldConfig(benchmark="MT11"), "env.benchmark must be one of"),
        (MetaWorldConfig(benchmark="MT1"), "needs exactly one task"),
        (MetaWorldConfig(tasks=["reach-v2"]), "unknown Meta-World task 'reach-v2' (did you mean 'reach-v3'"),
        (MetaWorldConfig(max_episode_steps=501), "in 1..500"),
        (MetaWorldConfig(reward_function_version="2"), "must be 'v2'"),
    ],
)
def test_bad_suite_options_are_refused(cfg, message):
    with pytest.raises(ConfigError) as err:
        cfg.validate()
    assert message in str(err.value)


def test_goal_visible_observations_random_train_goals_and_truncation():
    suite = MetaWorldSuite(MetaWorldConfig(benchmark="MT1", tasks=["reach-v3"], max_episode_steps=20), seed=0)
    env = suite.make_env(2, seed=0)
    goals = set()
    for _ in range(6):
        obs = env.reset_slots(np.arange(2), np.array([0, 0]))
        assert obs.shape == (2, 39) and obs.dtype == np.float32
        goals.update(map(tuple, np.round(obs[:, -3:].astype(np.float64), 3)))  # the last 3 entries: the goal
    assert len(goals) > 1 and all(any(abs(v) > 0 for v in g) for g in goals)
    train_goals = {tuple(np.round(np.float32(t_goal).astype(np.float64), 3)) for t_goal in _goal_positions(env)}
    assert goals <= train_goals  # every reset used one of the 50 fixed train goals
    for t in range(20):
        step = env.step(np.zeros((2, 4), np.float32))
        assert not step.terminated.any()
        assert step.truncated.all() == (t == 19)
    env.close()


def _goal_positions(env):
    import pickle

    out = []
    for task in env.goals["reach-v3"]:
        data = pickle.loads(task.data)
        out.append(np.asarray(data["rand_vec"])[-3:])
    return out


def test_cli_trains_mt10_briefly_and_evaluates_one_episode_per_task(tmp_path, capsys):
    run_dir = tmp_path / "mt10"
    code = main(
        [
            "train",
            "mt10-mtsac",
            f"run.dir={run_dir}",
            "train.total_steps=300",
            "train.warmup_steps=100",
            "train.batch_per_task=8",
            "train.buffer_per_task=1000",
            "train.eval_episodes=1",
            "train.final_eval_episodes=1",
            "train.log_every=100",
            "agent.hidden_sizes=[32,32]",
            "train.progress=false",
            "device=cpu",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "reach-v3" in out and "window-close-v3" in out
    final = [r for r in read_metrics(run_dir) if "eval/success_mean" in r][-1]
    assert {f"eval/success/{t}" for t in MT10} <= set(final)
    code = main(["eval", str(run_dir), "--episodes", "1"])
    assert code == 0
    report = json.loads((run_dir / "eval.json").read_text())
    assert list(report["tasks"]) == MT10
    assert all(t["episodes"] == 1 for t in report["tasks"].values())
    assert 0.0 <= report["success_mean"] <= 1.0


def test_python_backend_builds_envs_per_concurrent_use_not_per_slot_and_task():
    suite = MetaWorldSuite(MetaWorldConfig(tasks=["reach-v3", "push-v3"]), seed=0)
    env = suite.make_env(3, seed=0)
    for tasks in ([0, 0, 1], [1, 1, 0], [0, 1, 0], [1, 0, 1]):
        env.reset_slots(np.arange(3), np.array(tasks))
    assert env.lender.made == 4  # peak use: two of reach and two of push (not 3 slots x 2 tasks)
    env.close()
