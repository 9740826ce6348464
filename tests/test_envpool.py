"""The EnvPool backend of the Meta-World suite: task ids, the slot contract (explicit resets,
active masks, truncation), layout against the Python envs, the mismatched-task fallback and
refusal, evaluation on the Python envs, and (slow) the expert-policy fidelity check on MT10."""

import pickle
import re
import sys

import numpy as np
import pytest

from mtrl.envs.meta_world import MetaWorldConfig, MetaWorldSuite, MetaWorldVecEnv, all_task_names
from mtrl.envs.meta_world_envpool import MISMATCHED_TASKS, EnvPoolVecEnv, envpool_id
from mtrl.errors import ConfigError, install_hint
from mtrl.training.logger import read_metrics
from mtrl.training.trainer import train

from conftest import make_config

envpool = pytest.importorskip("envpool", reason="the envpool extra is not installed")


def fixed_goals(env: MetaWorldVecEnv, task: str) -> set:
    return {tuple(np.round(np.float32(pickle.loads(t.data)["rand_vec"][-3:]), 3)) for t in env.goals[task]}


def test_every_metaworld_task_has_an_envpool_id():
    ids = set(envpool.list_all_envs())
    assert {envpool_id(name) for name in all_task_names()} <= ids
    assert envpool_id("button-press-topdown-v3") == "MetaWorld/ButtonPressTopdown-v3"


def test_slots_reset_explicitly_step_under_a_mask_and_truncate():
    env = EnvPoolVecEnv(["reach-v3", "push-v3"], num_slots=3, seed=0, max_episode_steps=5)
    obs = env.reset_slots(np.array([2, 0, 1]), np.array([1, 0, 0]))
    assert obs.shape == (3, 39) and obs.dtype == np.float32
    reach = MetaWorldVecEnv(MetaWorldConfig(benchmark="MT1", tasks=["reach-v3"]), 1, 0, 0)
    ref = reach.reset_slots(np.array([0]), np.array([0]))[0]
    np.testing.assert_allclose(obs[1, :3], ref[:3], atol=1e-3)  # row 1 is slot 0 (reach): same hand start
    active = np.array([True, False, True])
    for t in range(5):
        step = env.step(np.zeros((3, 4), np.float32), active)
        assert step.truncated.tolist() == [t == 4, False, t == 4]
        assert step.obs[1].tolist() == [0.0] * 39 and step.reward[1] == 0  # the inactive slot is untouched
        assert np.isfinite(step.obs[active]).all() and (step.reward[active] > 0).all()
    # after an explicit reset the episode starts over: five more steps until truncation, real rewards
    env.reset_slots(np.array([0, 2]), np.array([0, 1]))
    for t in range(5):
        step = env.step(np.zeros((3, 4), np.float32), active)
        assert step.truncated.tolist() == [t == 4, False, t == 4]
        assert (step.reward[active] > 0).all()
    env.close()


def hands_follow_their_own_actions(env: EnvPoolVecEnv) -> bool:
    """Each slot's hand moves along x with the sign of that slot's own action."""
    x0 = env.step(np.zeros((env.num_slots, 4), np.float32)).obs[:, 0]
    signs = np.where(np.arange(env.num_slots) % 2 == 0, 1.0, -1.0)
    actions = np.zeros((env.num_slots, 4), np.float32)
    actions[:, 0] = signs
    for _ in range(5):
        x1 = env.step(actions).obs[:, 0]
    return bool((np.sign(x1 - x0) == signs).all())


def test_slots_borrow_envs_per_task_and_get_their_own_results():
    env = EnvPoolVecEnv(["reach-v3", "push-v3"], num_slots=4, seed=0, max_episode_steps=50)
    assert env.chunk == 2  # a task's fair share of the slots
    env.reset_slots(np.arange(4), np.array([0, 0, 0, 1]))
    assert env.lender.made == 6  # reach: two pools of two (three busy); push: one pool
    assert hands_follow_their_own_actions(env)
    env.reset_slots(np.arange(4), np.array([1, 1, 1, 1]))
    assert env.lender.made == 8  # push grows by one pool; reach's envs wait
    assert hands_follow_their_own_actions(env)
    env.reset_slots(np.array([2, 0]), np.array([0, 0]))
    assert env.lender.made == 8  # reach's waiting envs are reused
    assert hands_follow_their_own_actions(env)
    env.close()


def test_mismatched_task_runs_on_python_envs_or_is_refused(caplog):
    assert "pick-place-v3" in MISMATCHED_TASKS
    cfg = MetaWorldConfig(tasks=["reach-v3", "pick-place-v3"], backend="envpool")
    env = MetaWorldSuite(cfg, seed=0).make_env(2, seed=0)
    assert "pick-place-v3 run(s) on the Python envs" in caplog.text  # the user is told
    assert env.on_python.tolist() == [False, True]
    goals = {"reach-v3": set(), "pick-place-v3": set()}
    for _ in range(5):
        obs = env.reset_slots(np.array([0, 1]), np.array([0, 1]))
        goals["reach-v3"].add(tuple(np.round(obs[0, -3:], 3)))
        goals["pick-place-v3"].add(tuple(np.round(obs[1, -3:], 3)))
        step = env.step(np.zeros((2, 4), np.float32))
        assert (step.reward > 0).all()
    # pick-place runs on Meta-World's envs (its 50 fixed goals); reach on EnvPool (fresh goals)
    assert goals["pick-place-v3"] <= fixed_goals(env.python_env, "pick-place-v3")
    assert not goals["reach-v3"] <= fixed_goals(env.python_env, "reach-v3")
    # a slot changing sides hands its env back, so the other slot takes it over on either side
    env.reset_slots(np.array([0, 1]), np.array([1, 0]))
    assert env.python_env.lender.made == 1 and env.lender.made == 1
    env.close()
    refused = MetaWorldSuite(MetaWorldConfig(benchmark="MT10", backend="envpool", envpool_fallback=False))
    with pytest.raises(ConfigError, match="pick-place-v3 differs from Meta-World in EnvPool"):
        refused.make_env(10, seed=0)


def test_bad_backend_and_missing_envpool_are_one_line_errors(monkeypatch):
    with pytest.raises(ConfigError, match="env.backend must be one of python, envpool"):
        MetaWorldConfig(backend="jax").validate()
    monkeypatch.setitem(sys.modules, "envpool", None)  # import envpool now fails
    suite = MetaWorldSuite(MetaWorldConfig(tasks=["reach-v3"], backend="envpool"))
    with pytest.raises(ConfigError, match=re.escape(install_hint("envpool"))):
        suite.make_env(1, seed=0)


def test_training_on_envpool_evaluates_on_python_envs(tmp_path):
    cfg = make_config(
        {
            "env": {
                "suite": "metaworld",
                "tasks": ["reach-v3", "drawer-close-v3"],
                "backend": "envpool",
                "max_episode_steps": 50,
            },
            "agent": {"name": "mtsac", "hidden_sizes": [32, 32]},
        },
        train={
            "total_steps": 400,
            "warmup_steps": 200,
            "batch_per_task": 8,
            "buffer_per_task": 1000,
            "eval_every": 400,
            "eval_episodes": 1,
            "final_eval_episodes": 1,
            "log_every": 200,
            "progress": False,
        },
        run={"dir": str(tmp_path / "run")},
    )
    suite = MetaWorldSuite(cfg.env, seed=0)
    assert isinstance(suite.make_env(2, seed=0), EnvPoolVecEnv)
    assert isinstance(suite.make_eval_env(1, seed=0), MetaWorldVecEnv)
    result = train(cfg)
    assert result.env_steps == 400
    metrics = read_metrics(result.run_dir)
    assert any(np.isfinite(r.get("loss/critic", np.nan)) for r in metrics)  # it learned
    assert {"eval/success/reach-v3", "eval/success/drawer-close-v3"} <= set(metrics[-1])


@pytest.mark.slow
def test_scripted_experts_agree_on_every_mt10_task_except_the_known_mismatches():
    from mtrl.envs.envpool_fidelity import compare_task

    for task in MetaWorldSuite(MetaWorldConfig(benchmark="MT10")).task_names:
        result = compare_task(task, episodes=100, random_episodes=100)
        assert result.layout_ok, task
        assert result.agrees == (task not in MISMATCHED_TASKS), (task, result)
