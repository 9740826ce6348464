import numpy as np

from mtrl.envs.toy import ToyConfig, ToySuite


def test_tasks_conflict_from_the_same_state():
    suite = ToySuite(ToyConfig(num_tasks=4, start_noise=0.0))
    env = suite.make_env(4, seed=0)
    obs = env.reset_slots(np.arange(4), np.arange(4))
    assert np.allclose(obs, obs[0])  # identical observations ...
    east = env.step(np.tile([1.0, 0.0], (4, 1)))
    # ... and the same action helps task 0 (east) but hurts task 2 (west)
    assert east.reward[0] > -0.7 + 1e-3 and east.reward[2] < -0.7 - 1e-3
    assert np.allclose(env.goals[0], -env.goals[2]) and np.allclose(env.goals[1], -env.goals[3])


def test_success_and_time_limit():
    cfg = ToyConfig(num_tasks=2, episode_steps=10, start_noise=0.0)
    env = ToySuite(cfg).make_env(2, seed=0)
    env.reset_slots(np.arange(2), np.array([0, 0]))
    steps = [env.step(np.array([[1.0, 0.0], [-1.0, 0.0]])) for _ in range(10)]
    assert steps[3].success[0] and not steps[2].success[0]  # 0.6 away after 4 steps of 0.15 -> 0.1 radius
    assert not any(s.success[1] for s in steps)
    assert [bool(s.truncated[0]) for s in steps] == [False] * 9 + [True]
    assert not any(s.terminated.any() for s in steps)


def test_descriptions_cover_every_task():
    suite = ToySuite(ToyConfig(num_tasks=6))
    assert set(suite.descriptions) == set(suite.task_names) and len(set(suite.task_names)) == 6
