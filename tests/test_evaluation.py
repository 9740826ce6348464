import numpy as np
import pytest

from mtrl.suite import MultiTaskVecEnv, StepResult
from mtrl.training.evaluation import evaluate


class ScriptedEnv(MultiTaskVecEnv):
    """Task 0 succeeds only at step 2, task 1 never, task 2 only at its last step (4).
    Counts resets per task so the test can check how many episodes really ran."""

    def __init__(self, num_slots):
        self.num_slots, self.obs_dim, self.act_dim, self.max_episode_steps = num_slots, 1, 1, 4
        self.t = np.zeros(num_slots, int)
        self.task = np.zeros(num_slots, int)
        self.resets = np.zeros(3, int)

    def reset_slots(self, slots, tasks, variants=None):
        self.t[slots], self.task[slots] = 0, tasks
        np.add.at(self.resets, tasks, 1)
        return np.zeros((len(slots), 1), np.float32)

    def step(self, actions, active=None):
        self.t += 1
        success = ((self.task == 0) & (self.t == 2)) | ((self.task == 2) & (self.t == 4))
        return StepResult(
            np.zeros((self.num_slots, 1), np.float32),
            np.ones(self.num_slots, np.float32),
            np.zeros(self.num_slots, bool),
            self.t >= 4,
            success,
        )


def zero_policy(obs, task):
    return np.zeros((len(obs), 1), np.float32)


@pytest.mark.parametrize("num_slots", [3, 7, 30])
def test_exactly_n_episodes_per_task_and_any_step_success(num_slots):
    env = ScriptedEnv(num_slots)
    result = evaluate(zero_policy, env, ["a", "b", "c"], num_episodes=5, stop_on_success=False)
    assert env.resets.tolist() == [5, 5, 5]
    assert result.episodes.tolist() == [5, 5, 5]
    # task 0 was successful only in the middle of the episode: still a success
    assert result.success.tolist() == [1.0, 0.0, 1.0]
    assert result.returns.tolist() == [4.0, 4.0, 4.0]  # full episodes of reward 1 per step


def test_stop_on_success_ends_the_episode_at_its_first_success():
    result = evaluate(zero_policy, ScriptedEnv(3), ["a", "b", "c"], num_episodes=2, stop_on_success=True)
    assert result.success.tolist() == [1.0, 0.0, 1.0]
    assert result.returns.tolist() == [2.0, 4.0, 4.0]
    metrics = result.metrics()
    assert metrics["eval/success/a"] == 1.0 and metrics["eval/success_mean"] == pytest.approx(2 / 3)


class VariantEnv(ScriptedEnv):
    """Records the variant each reset asked for, per task."""

    def __init__(self, num_slots):
        super().__init__(num_slots)
        self.variants = {0: [], 1: [], 2: []}

    def reset_slots(self, slots, tasks, variants=None):
        for t, v in zip(tasks, variants):
            self.variants[int(t)].append(int(v))
        return super().reset_slots(slots, tasks)


@pytest.mark.parametrize("num_slots", [3, 9])
def test_episodes_visit_consecutive_variants_from_first_episode(num_slots):
    env = VariantEnv(num_slots)
    evaluate(zero_policy, env, ["a", "b", "c"], num_episodes=5, first_episode=20)
    assert all(sorted(v) == [20, 21, 22, 23, 24] for v in env.variants.values()), env.variants


def test_meta_world_evaluation_visits_every_goal_once_in_50_episodes():
    """The protocol: 50 episodes of a task, one per each of its 50 train goals; and
    evaluations of 10 episodes that advance first_episode rotate through the goals."""
    from mtrl.envs.meta_world import MetaWorldConfig, MetaWorldSuite

    suite = MetaWorldSuite(MetaWorldConfig(tasks=["reach-v3"], max_episode_steps=1), seed=0)
    env = suite.make_eval_env(50, seed=0)
    goals = {tuple(np.asarray(g).round(5)) for g in _task_goals(env)}
    assert len(goals) == 50
    seen = []
    original = env.reset_slots

    def spy(slots, tasks, variants=None):
        obs = original(slots, tasks, variants)
        seen.extend(tuple(o[-3:].astype(np.float64).round(5)) for o in obs)
        return obs

    env.reset_slots = spy
    evaluate(zero_policy4, env, ["reach-v3"], num_episodes=50)
    assert len(seen) == 50 and {tuple(np.float32(g).astype(np.float64).round(5)) for g in goals} == set(seen)
    seen.clear()
    for e in range(5):  # five mid-run evaluations of 10 episodes: again every goal once
        evaluate(zero_policy4, env, ["reach-v3"], num_episodes=10, first_episode=10 * e)
    assert len(set(seen)) == 50
    env.close()


def zero_policy4(obs, task):
    return np.zeros((len(obs), 4), np.float32)


def _task_goals(env):
    import pickle

    return [np.asarray(pickle.loads(t.data)["rand_vec"])[-3:] for t in env.goals["reach-v3"]]


def test_the_schedule_logs_what_each_evaluation_cost_in_seconds():
    """``eval/seconds`` (docs/PERFORMANCE.md: the evaluations' share of a run) covers the whole
    evaluation: here 2 episodes of 4 steps, each vector step's policy call sleeping 10 ms."""
    import time
    from types import SimpleNamespace

    from mtrl.training.evaluation import EvaluationSchedule

    def slow_policy(obs, task):
        time.sleep(0.01)
        return zero_policy(obs, task)

    logged = []
    cfg = SimpleNamespace(
        eval_every=10, total_steps=100, eval_episodes=2, final_eval_episodes=2, eval_stop_on_success=False
    )
    schedule = EvaluationSchedule(ScriptedEnv(3), ["a", "b", "c"], cfg, lambda step, m: logged.append(m))
    schedule.run(slow_policy, step=10)
    assert logged[0]["eval/episodes_per_task"] == 2
    assert 0.08 <= logged[0]["eval/seconds"] < 5.0  # 8 policy calls of 10 ms
