"""The learning-progress scheduler against a simulated success process."""

import numpy as np

from mtrl.scheduler import LearningProgress, LearningProgressConfig

SOLVED, HOPELESS, CHANGING, SOLVED_TOO = 0, 1, 2, 3


def simulate(seed, episodes=3000, ramp=600, cfg=None):
    """Task 2's success chance rises from 0 to 1 over its first ``ramp`` episodes; tasks 0/3
    always succeed, task 1 never. Returns the tasks chosen while task 2 was changing, after
    its first success (before it, no task has moved and the choice is uniform)."""
    sched = LearningProgress(cfg or LearningProgressConfig(), num_tasks=4, num_slots=4, seed=seed)
    rng = np.random.default_rng(seed + 100)
    runs = np.zeros(4)
    chosen = []
    tasks = sched.initial_tasks()
    first_success = False
    for ep in range(episodes):
        slot = ep % 4
        task = tasks[slot]
        p = [1.0, 0.0, min(1.0, runs[CHANGING] / ramp), 1.0][task]
        changing = runs[CHANGING] < ramp
        runs[task] += 1
        success = rng.random() < p
        first_success |= bool(success and task == CHANGING)
        sched.record(int(task), bool(success))
        tasks[slot] = sched.next_task(slot)
        if changing and first_success:
            chosen.append(tasks[slot])
    return np.bincount(chosen, minlength=4) / len(chosen), sched


def test_the_changing_task_gets_most_episodes_and_the_others_about_the_floor():
    cfg = LearningProgressConfig()
    floor = cfg.epsilon / 4
    shares = np.mean([simulate(seed)[0] for seed in range(3)], axis=0)
    assert shares[CHANGING] > 0.6, shares
    for task in (SOLVED, HOPELESS, SOLVED_TOO):
        assert floor * 0.5 < shares[task] < floor * 2, shares


def test_uniform_when_nothing_changes():
    sched = LearningProgress(LearningProgressConfig(), num_tasks=5, num_slots=5, seed=0)
    assert np.allclose(sched.probabilities(), 0.2)
    for _ in range(50):  # constant outcomes, whatever they are, are no progress
        for task, success in enumerate([1, 0, 1, 0, 1]):
            sched.record(task, bool(success))
    assert np.allclose(sched.probabilities(), 0.2)
    assert np.allclose(sched.learning_progress(), 0.0)


def test_forgetting_attracts_data_too():
    sched = LearningProgress(LearningProgressConfig(), num_tasks=3, num_slots=3, seed=0)
    for _ in range(200):
        for task in range(3):
            sched.record(task, True)
    for _ in range(20):
        sched.record(1, False)  # task 1 is being forgotten
    p = sched.probabilities()
    assert p[1] > 0.5 and p[0] == p[2]


def test_reproducible_for_a_seed_and_probabilities_keep_the_floor():
    a, sa = simulate(seed=7, episodes=800)
    b, sb = simulate(seed=7, episodes=800)
    assert np.array_equal(a, b)
    assert np.array_equal(sa.episodes, sb.episodes)
    p = sa.probabilities()
    assert np.isclose(p.sum(), 1.0) and (p >= sa.cfg.epsilon / 4 - 1e-12).all()
