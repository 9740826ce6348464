"""n-step returns in the replay (sac.n_step) against a brute-force computation over whole
episodes: terminations, time-limit truncations, task changes between episodes, several
slots sharing a task, and a checkpoint in the middle of the stream."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtrl.learner.replay import MultiTaskReplay
from mtrl.learner.sac import critic_target

OBS, ACT, TASKS, SLOTS, GAMMA = 3, 2, 3, 4, 0.9


def random_stream(steps: int, seed: int) -> list[dict]:
    """Per vector step, each slot's transition; a slot's task changes only when its episode
    ends, by termination or truncation (mutually exclusive, as gymnasium's time limit)."""
    rng = np.random.default_rng(seed)
    tasks = np.array([0, 0, 1, 2])  # two slots share task 0
    stream = []
    for _ in range(steps):
        ends = rng.random(SLOTS)
        terminated, truncated = ends < 0.08, (ends >= 0.08) & (ends < 0.16)
        stream.append(
            dict(
                task=tasks.copy(),
                obs=rng.normal(size=(SLOTS, OBS)).astype(np.float32),
                action=rng.uniform(-1, 1, (SLOTS, ACT)).astype(np.float32),
                reward=rng.normal(size=SLOTS).astype(np.float32),
                next_obs=rng.normal(size=(SLOTS, OBS)).astype(np.float32),
                terminated=terminated,
                truncated=truncated,
            )
        )
        done = terminated | truncated
        tasks = np.where(done, rng.integers(0, TASKS, SLOTS), tasks)
    return stream


def brute_force(stream: list[dict], n: int) -> dict[bytes, tuple]:
    """Every n-step transition that must be stored by the end of the stream, keyed by its
    first observation: for each slot, each episode, each start j, the window j..j+n-1 cut at
    the episode's end; an unfinished episode's last n-1 starts are still waiting."""
    expected = {}
    for s in range(SLOTS):
        episode: list[int] = []
        for t, step in enumerate(stream):
            episode.append(t)
            ended = step["terminated"][s] or step["truncated"][s]
            if not ended and t < len(stream) - 1:
                continue
            length = len(episode)
            for j in range(length):
                last = min(j + n, length) - 1
                if not ended and j + n > length:
                    break  # still waiting in the queue
                steps = [stream[episode[i]] for i in range(j, last + 1)]
                ret = sum(GAMMA**i * float(x["reward"][s]) for i, x in enumerate(steps))
                first = stream[episode[j]]
                term = bool(stream[episode[last]]["terminated"][s]) and last == length - 1
                expected[first["obs"][s].tobytes()] = (
                    int(first["task"][s]),
                    first["action"][s],
                    ret,
                    stream[episode[last]]["next_obs"][s],
                    term,
                    GAMMA ** (last - j + 1),
                )
            episode = []
    return expected


def stored(replay: MultiTaskReplay) -> dict[bytes, tuple]:
    out = {}
    for task in range(TASKS):
        for i in range(int(replay.size[task])):
            discount = float(replay.discount[task, i]) if replay.n_step > 1 else GAMMA
            out[replay.obs[task, i].numpy().tobytes()] = (
                task,
                replay.action[task, i].numpy(),
                float(replay.reward[task, i]),
                replay.next_obs[task, i].numpy(),
                bool(replay.terminated[task, i]),
                discount,
            )
    return out


def feed(replay: MultiTaskReplay, stream: list[dict]) -> None:
    for step in stream:
        replay.add(
            step["task"],
            step["obs"],
            step["action"],
            step["reward"],
            step["next_obs"],
            step["terminated"],
            step["truncated"],
        )


def assert_same(got: dict, expected: dict) -> None:
    assert got.keys() == expected.keys()
    for key, want in expected.items():
        have = got[key]
        assert have[0] == want[0]  # task: no return crosses a task boundary
        np.testing.assert_array_equal(have[1], want[1])
        assert have[2] == pytest.approx(want[2], rel=1e-5, abs=1e-5)
        np.testing.assert_array_equal(have[3], want[3])
        assert have[4] == want[4]
        assert have[5] == pytest.approx(want[5], rel=1e-6)


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_nstep_transitions_equal_brute_force(n):
    stream = random_stream(300, seed=n)
    replay = MultiTaskReplay(TASKS, 10_000, OBS, ACT, n_step=n, gamma=GAMMA, num_slots=SLOTS)
    feed(replay, stream)
    expected = brute_force(stream, n)
    assert any(v[4] for v in expected.values()) and any(v[5] > GAMMA**n + 1e-9 for v in expected.values()) == (
        n > 1
    )  # windows cut short
    assert_same(stored(replay), expected)


def test_checkpoint_in_the_middle_keeps_the_waiting_steps():
    stream, n = random_stream(200, seed=7), 3
    whole = MultiTaskReplay(TASKS, 10_000, OBS, ACT, n_step=n, gamma=GAMMA, num_slots=SLOTS)
    feed(whole, stream)
    first = MultiTaskReplay(TASKS, 10_000, OBS, ACT, n_step=n, gamma=GAMMA, num_slots=SLOTS)
    feed(first, stream[:101])
    assert first.pending.length.any()  # something is waiting at the checkpoint
    resumed = MultiTaskReplay(TASKS, 10_000, OBS, ACT, n_step=n, gamma=GAMMA, num_slots=SLOTS)
    resumed.load_state_dict(first.state_dict())
    feed(resumed, stream[101:])
    assert_same(stored(resumed), stored(whole))


def test_flush_bootstraps_dropped_episodes_from_their_last_state():
    stream, n = random_stream(40, seed=3), 4
    for step in stream:  # no episode ends: everything but the last n-1 steps per slot is stored
        step["terminated"][:] = False
        step["truncated"][:] = False
        step["task"][:] = [0, 0, 1, 2]
    replay = MultiTaskReplay(TASKS, 10_000, OBS, ACT, n_step=n, gamma=GAMMA, num_slots=SLOTS)
    feed(replay, stream)
    assert len(replay) == SLOTS * (len(stream) - n + 1)
    replay.flush(np.arange(SLOTS))
    stream[-1]["truncated"][:] = True  # a flush is a truncation at the last stored state
    assert_same(stored(replay), brute_force(stream, n))


def test_sampled_discount_enters_the_target():
    replay = MultiTaskReplay(TASKS, 100, OBS, ACT, n_step=3, gamma=GAMMA, num_slots=SLOTS)
    feed(replay, random_stream(50, seed=1))
    batch = replay.sample(8)
    assert batch.discount is not None
    assert {round(float(d), 5) for d in batch.discount} <= {round(GAMMA**k, 5) for k in (1, 2, 3)}
    next_q, logp, alpha = (
        torch.randn(2, len(batch.task)),
        torch.randn(len(batch.task)),
        torch.full((len(batch.task),), 0.1),
    )
    y = critic_target(batch.reward, batch.terminated, next_q, logp, alpha, batch.discount)
    by_hand = batch.reward + batch.discount * (1 - batch.terminated) * (next_q.min(0).values - alpha * logp)
    torch.testing.assert_close(y, by_hand)


def test_one_step_replay_has_no_discount_field():
    replay = MultiTaskReplay(TASKS, 100, OBS, ACT)
    step = random_stream(1, seed=0)[0]
    replay.add(step["task"], step["obs"], step["action"], step["reward"], step["next_obs"], step["terminated"])
    assert replay.sample(2).discount is None and "discount" not in replay.state_dict()


def test_a_resumed_n_step_run_logs_what_an_uninterrupted_one_does(tmp_path):
    """The waiting steps travel in the checkpoint (with the replay), so stopping and resuming
    changes nothing: the toy env restores its episodes, every random stream is restored."""
    from conftest import TOY_FAST, assert_resumes_exactly

    assert len(assert_resumes_exactly(tmp_path, TOY_FAST, sac={"n_step": 3})) == 6


def test_an_n_step_run_without_warm_up_waits_for_its_first_transitions(tmp_path):
    """With n-step returns the replay is empty for the first n - 1 steps of every slot: learning
    starts once it holds one, not at a warm-up shorter than that (which crashed the first update)."""
    from mtrl.training.logger import read_metrics
    from mtrl.training.trainer import train

    from conftest import TOY_FAST, make_config

    cfg = make_config(
        TOY_FAST,
        train={"total_steps": 40, "warmup_steps": 0, "log_every": 20, "eval_every": 0, "final_eval_episodes": 1},
        sac={"n_step": 3},
        run={"dir": str(tmp_path / "run")},
    )
    train(cfg)
    assert read_metrics(tmp_path / "run")[-1]["step"] == 40


def test_an_n_step_run_resumed_without_its_replay_waits_for_its_first_transitions(tmp_path):
    """A resume without the replay empties it and the waiting steps: the refill before the first
    update also lasts n steps of every slot, even when one batch per task is shorter."""
    from mtrl.training.logger import read_metrics
    from mtrl.training.trainer import train

    from conftest import TOY_FAST, make_config

    train_cfg = {"total_steps": 40, "warmup_steps": 0, "batch_per_task": 1, "log_every": 20, "eval_every": 0}
    train_cfg |= {"checkpoint_every": 20, "final_eval_episodes": 1}
    run = {"dir": str(tmp_path / "run")}
    train(make_config(TOY_FAST, train=train_cfg, sac={"n_step": 3}, run=run))
    train(make_config(TOY_FAST, train=train_cfg | {"total_steps": 80}, sac={"n_step": 3}, run=run, resume=True))
    assert read_metrics(tmp_path / "run")[-1]["step"] == 80
