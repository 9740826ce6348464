"""The learning-progress scheduler against simulated success processes.

Shares are the scheduler's probabilities averaged over its decisions (the expected share of
episodes): that leaves out the multinomial noise of the draws, not the noise of the success
processes, which is what the scheduler has to see through.
"""

import copy

import numpy as np
import pytest

from mtrl.errors import ConfigError
from mtrl.training.scheduler import LearningProgress, LearningProgressConfig, ema_difference_variance

SEEDS = range(5)
RAMP = 600  # episodes (of that task) an improving task needs from 0 % to 100 % success


def steady(p):
    return lambda k: p


def improving(k):
    return min(1.0, k / RAMP)


def forgetting(k):  # solved for 300 episodes, then forgotten over RAMP episodes
    return 1.0 if k < 300 else max(0.0, 1.0 - (k - 300) / RAMP)


def simulate(chances, seed, episodes=3000, cfg=None):
    """One slot per task; ``chances[i](k)``: the success chance of task i's k-th episode.
    Returns the probabilities at every decision, the per-task episode counts before each
    decision, and the scheduler."""
    n = len(chances)
    sched = LearningProgress(cfg or LearningProgressConfig(), num_tasks=n, num_slots=n, seed=seed)
    rng = np.random.default_rng(seed + 100)
    runs = np.zeros(n, np.int64)
    tasks = sched.initial_tasks()
    probs, counts = [], []
    for ep in range(episodes):
        slot = ep % n
        task = tasks[slot]
        success = rng.random() < chances[task](runs[task])
        runs[task] += 1
        sched.record(int(task), bool(success))
        probs.append(sched.probabilities())
        counts.append(runs.copy())
        tasks[slot] = sched.next_task(slot)
    return np.array(probs), np.array(counts), sched


@pytest.mark.parametrize("chances", [(0.5, 0.5, 0.5, 0.5), (0.1, 0.5, 0.9, 0.97)])
def test_steady_tasks_get_their_uniform_share(chances):
    n = len(chances)
    shares, uniform_time = [], []
    for seed in SEEDS:
        probs, _, sched = simulate([steady(p) for p in chances], seed)
        shares.append(sched.episodes / sched.episodes.sum())  # episodes actually run
        uniform_time.append(np.mean(np.ptp(probs, axis=1) < 1e-12))
    assert np.max(shares) <= 1 / n + 0.05, shares
    # Noise alone hardly moves it off uniform (|fast - slow| with a softmax never was uniform).
    assert np.mean(uniform_time) >= 0.8, uniform_time


SOLVED, HOPELESS, STEADY, IMPROVING = range(4)


def test_the_improving_task_gets_most_and_solved_and_hopeless_the_least():
    shares, whole_run = [], []
    for seed in SEEDS:
        probs, runs, sched = simulate([steady(1.0), steady(0.0), steady(0.5), improving], seed)
        whole_run.append(sched.episodes / sched.episodes.sum())
        # while its success is changing: from 5 % (before that hardly any success) to 100 %
        changing = (runs[:, IMPROVING] >= 0.05 * RAMP) & (runs[:, IMPROVING] < RAMP)
        assert changing.sum() > 200
        shares.append(probs[changing].mean(axis=0))
    share = np.mean(shares, axis=0)
    assert share[IMPROVING] >= 0.4 and share[IMPROVING] >= 2 * share[[SOLVED, HOPELESS, STEADY]].max(), share
    assert share[STEADY] <= 0.25 + 0.02, share
    for task in (SOLVED, HOPELESS):
        assert share[task] <= share[STEADY] and share[task] <= 0.25, share
    assert (np.array(shares)[:, IMPROVING] == np.array(shares).max(axis=1)).all(), shares  # every seed
    # Over the whole run too, after the improving task is solved as well: the steady task
    # does not take over once nothing else changes.
    assert np.max(np.array(whole_run)[:, STEADY]) <= 0.25 + 0.05, whole_run
    assert np.max(np.array(whole_run)[:, [SOLVED, HOPELESS]]) <= 0.25, whole_run


def test_forgetting_attracts_episodes_too():
    shares = []
    for seed in SEEDS[:3]:
        probs, runs, _ = simulate([steady(1.0), steady(0.0), steady(0.5), forgetting], seed)
        dropping = (runs[:, 3] >= 300 + 0.05 * RAMP) & (runs[:, 3] < 300 + RAMP)
        assert dropping.sum() > 200
        shares.append(probs[dropping].mean(axis=0))
    share = np.mean(shares, axis=0)
    assert share[3] >= 0.4 and share[3] >= 2 * share[:3].max(), share
    assert share[STEADY] <= 0.25, share


def test_forgetting_shows_up_at_once_in_the_probabilities():
    sched = LearningProgress(LearningProgressConfig(), num_tasks=3, num_slots=3, seed=0)
    for _ in range(200):
        for task in range(3):
            sched.record(task, True)
    for _ in range(20):
        sched.record(1, False)  # task 1 is being forgotten
    p = sched.probabilities()
    assert p[1] > 0.5 and p[0] == p[2]


def test_uniform_when_nothing_changes():
    sched = LearningProgress(LearningProgressConfig(), num_tasks=5, num_slots=5, seed=0)
    assert np.allclose(sched.probabilities(), 0.2)
    for _ in range(50):  # constant outcomes, whatever they are, are no progress
        for task, success in enumerate([1, 0, 1, 0, 1]):
            sched.record(task, bool(success))
    assert np.allclose(sched.probabilities(), 0.2)
    assert np.allclose(sched.learning_progress(), 0.0) and np.allclose(sched.noise(), 0.0)


def test_the_averages_are_the_weighted_sums_of_the_docstring():
    cfg = LearningProgressConfig()
    sched = LearningProgress(cfg, num_tasks=1, num_slots=1, seed=0)
    x = np.random.default_rng(0).random(300) < 0.3
    for n, success in enumerate(x, start=1):
        sched.record(0, bool(success))
        k = np.arange(n)
        for a, value in ((cfg.fast_rate, sched.fast[0]), (cfg.slow_rate, sched.slow[0])):
            weights = a * (1 - a) ** k / (1 - (1 - a) ** n)  # weight of the outcome k episodes back
            assert np.isclose(value, weights @ x[:n][::-1], atol=1e-12)


@pytest.mark.parametrize("p", [0.5, 0.2])
def test_the_noise_formula_matches_a_simulation(p):
    a, b = LearningProgressConfig().fast_rate, LearningProgressConfig().slow_rate
    # the stationary formula, written out, is the n -> infinity limit of the finite-n one
    stationary = a / (2 - a) + b / (2 - b) - 2 * a * b / (1 - (1 - a) * (1 - b))
    assert np.isclose(ema_difference_variance(a, b, 10**6), stationary, rtol=1e-9)
    assert ema_difference_variance(a, b, 0) == 0 and ema_difference_variance(a, b, 1) == 0
    chains, steps = 4000, 3000  # (1 - a_s)^3000 ~ 6e-6: the last steps are stationary
    rng = np.random.default_rng(1)
    fast, slow = np.zeros(chains), np.zeros(chains)
    checks = {2: None, 10: None, 50: None, 250: None, steps: None}
    for n in range(1, steps + 1):
        x = (rng.random(chains) < p).astype(float)
        fast += a / (1 - (1 - a) ** n) * (x - fast)  # the scheduler's update (previous test)
        slow += b / (1 - (1 - b) ** n) * (x - slow)
        if n in checks:
            checks[n] = np.var(fast - slow)
    for n, empirical in checks.items():
        predicted = p * (1 - p) * ema_difference_variance(a, b, n)
        assert abs(empirical / predicted - 1) < 0.1, (n, empirical, predicted)
    assert abs(checks[steps] / (p * (1 - p) * stationary) - 1) < 0.1


def test_stats_for_the_logs():
    _, _, sched = simulate([steady(1.0), steady(0.0), steady(0.5), improving], seed=0, episodes=400)
    stats = sched.stats()
    assert set(stats) == {"probability", "episodes", "learning_progress", "noise"}
    assert all(v.shape == (4,) for v in stats.values())
    assert np.allclose(stats["noise"][:2], 0.0) and stats["noise"][2] > 0.01
    gap = np.abs(sched.fast - sched.slow)
    assert np.allclose(stats["learning_progress"], np.maximum(0, gap - 2 * stats["noise"]))


def test_state_dict_round_trip_gives_identical_choices():
    _, _, sched = simulate([steady(1.0), steady(0.0), steady(0.5), improving], seed=3, episodes=500)
    state = copy.deepcopy(sched.state_dict())
    restored = LearningProgress(LearningProgressConfig(), num_tasks=4, num_slots=4, seed=99)
    restored.load_state_dict(state)

    def continue_run(s):
        rng = np.random.default_rng(5)
        chosen = []
        for _ in range(300):
            task = s.next_task(0)
            s.record(task, bool(rng.random() < 0.5))
            chosen.append(task)
        return chosen, s.probabilities()

    (a, pa), (b, pb) = continue_run(sched), continue_run(restored)
    assert a == b and np.array_equal(pa, pb)


def test_a_checkpoint_from_before_the_noise_estimate_loads():
    sched = LearningProgress(LearningProgressConfig(), num_tasks=2, num_slots=2, seed=0)
    old = {
        "rng": sched.rng.bit_generator.state,
        "episodes": np.array([30, 0]),
        "fast": np.array([0.6, 0.0]),
        "slow": np.array([0.5, 0.0]),
        "seen": np.array([True, False]),
    }
    sched.load_state_dict(old)
    assert sched.outcomes.tolist() == [30, 0] and sched.probabilities().sum() == pytest.approx(1.0)


def test_reproducible_for_a_seed_and_probabilities_keep_the_floor():
    a, _, sa = simulate([steady(1.0), steady(0.0), steady(0.5), improving], seed=7, episodes=800)
    b, _, sb = simulate([steady(1.0), steady(0.0), steady(0.5), improving], seed=7, episodes=800)
    assert np.array_equal(a, b) and np.array_equal(sa.episodes, sb.episodes)
    assert np.allclose(a.sum(axis=1), 1.0) and (a >= sa.cfg.epsilon / 4 - 1e-12).all()


@pytest.mark.parametrize(
    "bad",
    [
        dict(slow_rate=0.05, fast_rate=0.01),
        dict(slow_rate=0.0),
        dict(fast_rate=1.5),
        dict(noise_threshold=-1.0),
        dict(epsilon=1.2),
    ],
)
def test_bad_settings_are_config_errors(bad):
    with pytest.raises(ConfigError):
        LearningProgressConfig(**bad).validate()
