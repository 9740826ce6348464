"""SAC's update in parts: the levers composed by mtrl/learner/loss_terms.py, the agents' optional
parts declared in mtrl/learner/hooks.py, reward scaling inside the learner (and checkpoints that
kept it outside), and the one per-task mean."""

import numpy as np
import pytest
import torch

from mtrl.agents.brc import BRCConfig, make_brc
from mtrl.agents.care import CAREConfig, make_care
from mtrl.agents.mtsac import MTSACConfig, make_mtsac
from mtrl.agents.softshare import SoftShareConfig, make_softshare
from mtrl.checkpoint import list_checkpoints, load_checkpoint, write_checkpoint_file
from mtrl.config import SACConfig
from mtrl.learner.agent import EnvSpec, OneHotTaskEncoder
from mtrl.learner.hooks import AttentionEncoder, Penalized, is_categorical, penalized
from mtrl.learner.loss_terms import UpdateTerms
from mtrl.learner.replay import Batch
from mtrl.learner.sac import SAC
from mtrl.learner.task_weighting import task_means
from mtrl.training.logger import read_metrics, without_timing
from mtrl.training.trainer import train

from conftest import TOY_FAST, make_config

T, OBS, ACT, PER_TASK = 3, 4, 2, 5
SPEC = EnvSpec(OBS, ACT, tuple(f"task{i}" for i in range(T)), ("",) * T, "toy")


def batch(seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    n = T * PER_TASK
    return Batch(
        torch.randn(n, OBS, generator=g),
        torch.rand(n, ACT, generator=g) * 2 - 1,
        torch.randn(n, generator=g) * 5,
        torch.randn(n, OBS, generator=g),
        torch.zeros(n),
        torch.arange(T).repeat_interleave(PER_TASK),
    )


def mtsac(**cfg) -> SAC:
    torch.manual_seed(0)
    return SAC(make_mtsac(MTSACConfig(hidden_sizes=[16]), SPEC), T, ACT, SACConfig(**cfg), num_slots=2)


def test_the_agents_optional_parts_are_recognised_by_their_protocols():
    softshare = make_softshare(SoftShareConfig(hidden_sizes=[8]), SPEC)
    assert penalized(softshare.critic) and all(isinstance(m, Penalized) for m in penalized(softshare.actor))
    assert penalized(make_mtsac(MTSACConfig(hidden_sizes=[8]), SPEC).critic) == []
    brc = make_brc(BRCConfig(critic_width=8, critic_depth=1, actor_width=8, actor_depth=1), SPEC)
    assert is_categorical(brc.critic) and not is_categorical(softshare.critic)
    care = make_care(CAREConfig(hidden_sizes=[8], num_encoders=2, task_embedding="one_hot"), SPEC)
    assert isinstance(care.encoder, AttentionEncoder) and not isinstance(OneHotTaskEncoder(OBS, T), AttentionEncoder)


def test_task_means_average_each_tasks_rows_of_any_shape():
    values, task = torch.randn(7, 3, 2), torch.tensor([2, 0, 2, 2, 0, 1, 2])
    means, counts = task_means(values, task, 4)
    expected = torch.stack([values[task == t].mean(0) if (task == t).any() else torch.zeros(3, 2) for t in range(4)])
    assert torch.allclose(means, expected) and counts.tolist() == [2, 1, 4, 0]


def test_the_loss_drops_masked_samples_weighs_the_rest_and_adds_the_penalty():
    sac = SAC(make_softshare(SoftShareConfig(hidden_sizes=[8], strength=0.1), SPEC), T, ACT, SACConfig())
    task = torch.arange(T).repeat_interleave(2)
    per_sample = torch.tensor([1.0, 2.0, float("nan"), float("inf"), 3.0, 5.0])  # task 1 masked
    keep, weight = task != 1, torch.tensor([0.5, 0.5, 9.0, 9.0, 2.0, 2.0])
    terms = UpdateTerms(torch.tensor([False, True, False]), keep, weight, None)
    weighted, loss = sac.terms.critic(per_sample, terms)
    penalty = sum(m.penalty() for m in sac.penalized["critic"])
    assert float(penalty.detach()) > 0
    assert torch.equal(weighted, torch.tensor([0.5, 1.0, 0.0, 0.0, 6.0, 10.0]))
    assert torch.isclose(loss, (0.5 + 1.0 + 6.0 + 10.0) / 4 + penalty)
    _, actor_loss, logs = sac.terms.actor(per_sample, terms, sac.agent, torch.zeros(6, OBS), task)
    assert torch.isclose(actor_loss, (1.0 + 2.0 + 3.0 + 5.0) / 4 + sum(m.penalty() for m in sac.penalized["actor"]))
    assert logs == {}  # no teachers: no distillation term


def test_sac_divides_each_batch_by_its_tasks_reward_divisors():
    scaled, plain = mtsac(reward_scaling="returns"), mtsac()
    for step in range(4):  # slot 0 (task 2) ends an episode at a time limit, slot 1 (task 0) terminates
        scaled.observe_rewards(
            np.array([2, 0]), np.array([3.0 * step, -7.0]), np.array([False, step == 3]), np.array([step == 3, False])
        )
    divisors = scaled.reward_divisors()
    assert divisors.shape == (T,) and min(divisors[0], divisors[2]) > divisors[1]  # task 1 saw no episode end
    b = batch()
    torch.manual_seed(1)
    got = scaled.update(b)
    torch.manual_seed(1)
    expected = plain.update(b._replace(reward=b.reward / torch.as_tensor(divisors)[b.task]))
    assert all(torch.equal(got[k], expected[k]) for k in expected if "skipped" not in k)
    assert all(torch.equal(p, q) for p, q in zip(scaled.agent.parameters(), plain.agent.parameters()))
    restored = mtsac(reward_scaling="returns")
    restored.load_state_dict(scaled.state_dict())
    assert np.array_equal(restored.reward_divisors(), scaled.reward_divisors())


def test_a_checkpoint_with_the_reward_scale_beside_sac_resumes_exactly(tmp_path):
    """Before SAC owned it, the reward scale was saved in the training state's top level."""

    def config(run_dir, **kw):
        return make_config(
            TOY_FAST,
            agent={"name": "mtsac", "hidden_sizes": [32]},
            sac={"reward_scaling": "returns"},
            train={
                "total_steps": 1600,
                "warmup_steps": 400,
                "batch_per_task": 16,
                "buffer_per_task": 5000,
                "eval_every": 800,
                "eval_episodes": 2,
                "final_eval_episodes": 2,
                "log_every": 200,
                "checkpoint_every": 800,
                "save_replay": True,
            },
            device="cpu",
            seed=4,
            run={"dir": str(run_dir)},
            **kw,
        )

    train(config(tmp_path / "whole"))

    class Stop(Exception):
        pass

    def stop(path):
        raise Stop

    with pytest.raises(Stop):
        train(config(tmp_path / "cut"), on_checkpoint=stop)
    (path,) = list_checkpoints(tmp_path / "cut")
    state = load_checkpoint(path)
    state["reward_scale"] = state["sac"].pop("reward_scale")  # the old layout
    assert np.abs(state["reward_scale"]["min"]).max() + state["reward_scale"]["max"].max() > 0  # episodes have ended
    write_checkpoint_file(path, state, "in the old layout")
    train(config(tmp_path / "cut", resume=True))

    def comparable(run_dir):
        return without_timing(read_metrics(run_dir))

    assert comparable(tmp_path / "cut") == comparable(tmp_path / "whole")
