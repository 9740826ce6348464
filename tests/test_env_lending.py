"""EnvLender: slots borrow envs of their episode's task; no env serves two slots at once,
and envs are built only for the peak number of slots running a task together."""

import numpy as np

from mtrl.envs.env_lending import EnvLender


def test_envs_are_built_for_peak_concurrent_use_and_reused():
    lender = EnvLender(3, make=lambda task: [object()])
    lender.relend([0, 1, 2], [0, 0, 1])
    assert lender.made == 3
    lender.relend([0, 1, 2], [1, 1, 0])  # task 1 needs one more; task 0 reuses one of its two
    assert lender.made == 4
    lender.relend([0, 1, 2], [0, 0, 0])  # task 0 needs a third
    assert lender.made == 5
    lender.give_back([2])
    lender.relend([2], [0])  # the env just given back is lent again
    assert lender.made == 5


def test_no_env_is_lent_to_two_slots_at_once():
    lender = EnvLender(4, make=lambda task: [object(), object()])  # handles come in batches too
    rng = np.random.default_rng(0)
    for _ in range(300):
        slots = rng.choice(4, rng.integers(1, 5), replace=False).tolist()
        lender.relend(slots, rng.integers(0, 3, len(slots)).tolist())
        lent = [entry[1] for entry in lender._lent if entry is not None]
        assert len({id(h) for h in lent}) == len(lent)
    assert lender.made <= 3 * 4 + 3  # each task's peak use (<= 4 slots) rounded up to a batch of 2
