import numpy as np
import torch

from mtrl.learner.replay import MultiTaskReplay


def fill(replay, tasks, n, obs_dim=39, act_dim=4):
    for _ in range(n):
        k = len(tasks)
        obs = np.asarray(tasks, np.float32)[:, None].repeat(obs_dim, 1)  # obs encodes its task
        replay.add(np.asarray(tasks), obs, np.zeros((k, act_dim)), np.zeros(k), obs, np.zeros(k, bool))


def test_batch_is_balanced_across_tasks_and_grouped():
    replay = MultiTaskReplay(num_tasks=3, capacity_per_task=100, obs_dim=39, act_dim=4)
    fill(replay, [0, 0, 0, 1], 20)  # task 0 gets 3x the data of task 1, task 2 none
    batch = replay.sample(per_task=32)
    assert batch.obs.shape == (64, 39)
    counts = torch.bincount(batch.task, minlength=3).tolist()
    assert counts == [32, 32, 0]
    # each sample's stored observation belongs to the task it is labelled with
    assert torch.equal(batch.obs[:, 0].long(), batch.task)


def test_dtypes_and_bytes_per_transition_for_metaworld_sizes():
    replay = MultiTaskReplay(num_tasks=10, capacity_per_task=8, obs_dim=39, act_dim=4)
    fill(replay, list(range(10)), 2)
    batch = replay.sample(4)
    assert batch.obs.dtype == batch.next_obs.dtype == batch.action.dtype == torch.float32
    assert batch.reward.dtype == batch.terminated.dtype == torch.float32
    assert batch.task.dtype == torch.int64
    # raw obs + next obs + action + reward + flag; the task is the partition, not stored
    assert replay.bytes_per_transition == 39 * 4 * 2 + 4 * 4 + 4 + 1
    assert replay.bytes_per_transition <= 350


def test_ring_buffer_wraps_and_slots_sharing_a_task_do_not_overwrite_each_other():
    replay = MultiTaskReplay(num_tasks=2, capacity_per_task=5, obs_dim=1, act_dim=1)
    for step in range(4):  # two slots of task 1 per call: 8 writes into 5 places
        replay.add(
            np.array([1, 1]),
            np.array([[step * 2], [step * 2 + 1]]),
            np.zeros((2, 1)),
            np.zeros(2),
            np.zeros((2, 1)),
            np.zeros(2, bool),
        )
    assert replay.size.tolist() == [0, 5]
    # the newest 5 of the values 0..7 survive
    assert sorted(replay.obs[1, :, 0].tolist()) == [3.0, 4.0, 5.0, 6.0, 7.0]
    assert len(replay) == 5


def test_per_task_counts_follow_a_given_allocation():
    replay = MultiTaskReplay(num_tasks=3, capacity_per_task=50, obs_dim=39, act_dim=4)
    fill(replay, [0, 1, 2], 10)
    batch = replay.sample(np.array([3, 0, 5]))
    assert torch.bincount(batch.task, minlength=3).tolist() == [3, 0, 5]


def test_accelerator_write_path_stores_the_same_as_the_cpu_path():
    """The packed single-copy write used on CUDA, run on the CPU, against the numpy-view path."""
    rng = np.random.default_rng(0)
    host, packed = MultiTaskReplay(3, 8, 5, 2), MultiTaskReplay(3, 8, 5, 2)
    packed._host = None  # take the accelerator path
    for _ in range(11):  # wraps the ring buffers
        task = rng.integers(0, 3, 4)
        args = (
            task,
            rng.normal(size=(4, 5)),
            rng.uniform(-1, 1, (4, 2)),
            rng.normal(size=4),
            rng.normal(size=(4, 5)),
            rng.random(4) < 0.5,
        )
        host.add(*args)
        packed.add(*args)
    for key, value in host.state_dict().items():
        other = packed.state_dict()[key]
        assert torch.equal(value, other) if isinstance(value, torch.Tensor) else np.array_equal(value, other), key
    assert host.terminated.any() and host.reward.abs().sum() > 0
