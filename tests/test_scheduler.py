import numpy as np

from mtrl.registry import get
from mtrl.training.scheduler import RoundRobin, Uniform


def test_round_robin_with_one_slot_per_task_pins_each_task_to_one_slot():
    sched = RoundRobin(None, num_tasks=5, num_slots=5, seed=0)
    assert sched.initial_tasks().tolist() == [0, 1, 2, 3, 4]
    for _ in range(3):
        assert [sched.next_task(s) for s in range(5)] == [0, 1, 2, 3, 4]


def test_round_robin_with_fewer_slots_cycles_through_all_tasks():
    sched = RoundRobin(None, num_tasks=4, num_slots=2, seed=0)
    first = sched.initial_tasks().tolist()
    seen = first + [sched.next_task(s) for s in range(2)]
    assert sorted(seen) == [0, 1, 2, 3]


def test_uniform_is_reproducible_and_covers_tasks():
    a = [Uniform(None, 4, 1, seed=3).next_task(0) for _ in range(1)]
    s1, s2 = Uniform(None, 4, 1, seed=3), Uniform(None, 4, 1, seed=3)
    seq1 = [s1.next_task(0) for _ in range(200)]
    assert seq1 == [s2.next_task(0) for _ in range(200)]
    counts = np.bincount(seq1, minlength=4)
    assert counts.min() > 30 and a[0] == seq1[0]


def test_schedulers_are_registered():
    assert get("scheduler", "round_robin").target is RoundRobin
    assert get("scheduler", "uniform").target is Uniform
