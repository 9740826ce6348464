"""Soft Modularization, MOORE, PaCo and BRC: each one's defining property, checked against a
slow reference written from the paper / reference code, and their place in the agent
(shared parameters, task-specific blocks, the SAC update)."""

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from mtrl.config import ConflictConfig, SACConfig
from mtrl.errors import ConfigError
from mtrl.learner.agent import EnvSpec
from mtrl.learner.categorical import project
from mtrl.learner.replay import Batch
from mtrl.learner.reward_scale import ReturnScale, returns_to_go
from mtrl.learner.sac import SAC
from mtrl.networks.bronet import BroNet
from mtrl.networks.moore_experts import MOORENet, orthonormalize
from mtrl.networks.paco_layers import PaCoNet
from mtrl.networks.soft_modularization import SoftModularNet
from mtrl.registry import get

T, OBS, ACT = 3, 6, 2
SMALL = {
    "softmod": {"base_hidden": [16, 16], "num_layers": 3, "num_modules": 3, "module_hidden": 8, "routing_hidden": 8},
    "moore": {"num_experts": 3, "expert_hidden": [16], "expert_dim": 8},
    "paco": {"hidden_sizes": [16, 16], "num_sets": 4},
    "brc": {"critic_width": 16, "critic_depth": 2, "actor_width": 8, "actor_depth": 1, "bins": 11},
    "softshare": {"hidden_sizes": [16, 16], "strength": 0.1},
}


def make_agent(name: str, **overrides):
    entry = get("agent", name)
    cfg = entry.config_cls(**{**SMALL[name], **overrides})
    cfg.validate()  # what loading a config does
    spec = EnvSpec(OBS, ACT, tuple(f"t{i}" for i in range(T)), ("d",) * T, "test")
    return entry.target(cfg, spec)


def batch(n_per_task=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = n_per_task * T
    return Batch(
        torch.randn(n, OBS, generator=g),
        torch.rand(n, ACT, generator=g) * 2 - 1,
        torch.randn(n, generator=g),
        torch.randn(n, OBS, generator=g),
        torch.zeros(n),
        torch.arange(T).repeat_interleave(n_per_task),
    )


# ---------------------------------------------------------------- MOORE


def gram_schmidt_reference(x: torch.Tensor) -> torch.Tensor:
    """MOORE's OrthogonalLayer1D (AhmedMagdyHendawy/MOORE, moore/utils/mixture_layers.py),
    transcribed: x (k, B, d), a loop over experts."""
    x1 = x.transpose(0, 1)
    basis = (x1[:, 0, :] / torch.norm(x1[:, 0, :], dim=1, keepdim=True)).unsqueeze(1)
    for i in range(1, x1.shape[1]):
        v = x1[:, i, :].unsqueeze(1)
        w = v - torch.bmm(torch.bmm(v, basis.transpose(2, 1)), basis)
        basis = torch.cat([basis, w / torch.norm(w, dim=2, keepdim=True)], dim=1)
    return basis.transpose(0, 1)


def test_moore_orthonormalize_is_gram_schmidt_and_orthonormal_per_sample():
    torch.manual_seed(0)
    u = torch.randn(4, 9, 7, dtype=torch.float64)
    v = orthonormalize(u)
    assert torch.allclose(v, gram_schmidt_reference(u), atol=1e-10)
    gram = torch.einsum("kbd,jbd->bkj", v, v)
    assert torch.allclose(gram, torch.eye(4, dtype=torch.float64).expand(9, 4, 4), atol=1e-10)


def test_moore_representation_orthonormal_experts_mixed_by_task_weights_then_task_head():
    torch.manual_seed(1)
    net = MOORENet(
        members=2, in_dim=OBS, out_dim=1, num_tasks=T, num_experts=3, expert_hidden=[16], expert_dim=8, head_hidden=[]
    )
    x, task = torch.randn(6, OBS), torch.tensor([0, 1, 2, 2, 1, 0])
    r, v = net.representation(x, task)
    gram = torch.einsum("mkbd,mjbd->mbkj", v, v)
    assert torch.allclose(gram, torch.eye(3).expand_as(gram), atol=1e-5)
    u = net.experts(x).view(2, 3, 6, 8)
    for m in range(2):  # member by member, sample by sample, against the slow reference
        ref_v = gram_schmidt_reference(u[m])
        for b in range(6):
            ref_r = torch.tanh(sum(net.task_weights[m, task[b], i] * ref_v[i, b] for i in range(3)))
            assert torch.allclose(r[m, b], ref_r, atol=1e-5)
            head_w = net.head.head.weight[m].view(8, T, 1)[:, task[b]]
            head_b = net.head.head.bias[m].view(T, 1)[task[b]]
            assert torch.allclose(net(x, task)[m, b], ref_r @ head_w + head_b, atol=1e-5)


def test_moore_refuses_more_experts_than_dimensions():
    with pytest.raises(ConfigError, match="agent.expert_dim=2 is below agent.num_experts=3"):
        make_agent("moore", expert_dim=2)


# ---------------------------------------------------------------- Soft Modularization


def soft_module_reference(net: SoftModularNet, x: torch.Tensor, task: torch.Tensor, m: int) -> torch.Tensor:
    """The reference ModularGatedCascadeCondNet.forward (RchalYang/Soft-Module,
    torchrl/networks/nets.py) transcribed with loops over modules, for member m."""

    def lin(layer, h, member):
        return h @ layer.weight[member] + layer.bias[member]

    n, L = net.num_modules, net.num_layers
    h = x
    for layer in net.base.hidden:
        h = F.relu(lin(layer, h, m))
    out = lin(net.base.head, h, m)
    emb = lin(net.task_embedding, F.one_hot(task, T).float(), m) * out
    out = F.relu(out)
    emb = F.relu(emb)
    for layer in net.routing.hidden:
        emb = F.relu(lin(layer, emb, m))
    emb = lin(net.routing.head, emb, m)
    weights = [F.softmax(lin(net.route_first, F.relu(emb), m).view(-1, n, n), dim=-1)]
    flat = [weights[0].view(-1, n * n)]
    for cond_fc, fc in zip(net.route_cond[:-1], net.route_next):
        cond = F.relu(lin(cond_fc, torch.cat(flat, -1), m) * emb)
        weights.append(F.softmax(lin(fc, cond, m).view(-1, n, n), dim=-1))
        flat.append(weights[-1].view(-1, n * n))
    cond = F.relu(lin(net.route_cond[-1], torch.cat(flat, -1), m) * emb)
    last_weight = F.softmax(lin(net.route_last, cond, m), dim=-1)
    modules = net.module_layers
    outs = torch.stack([lin(modules[0], out, m * n + j) for j in range(n)], -2)
    for i in range(L - 1):
        new = []
        for j in range(n):
            module_input = F.relu((outs * weights[i][..., j, :].unsqueeze(-1)).sum(-2))
            new.append(lin(modules[i + 1], module_input, m * n + j))
        outs = torch.stack(new, -2)
    out = F.relu((outs * last_weight.unsqueeze(-1)).sum(-2))
    return lin(net.last, out, m)


@pytest.mark.parametrize("layers,modules", [(2, 2), (4, 3)])
def test_soft_modularization_matches_the_reference_forward_and_routes_by_distributions(layers, modules):
    torch.manual_seed(2)
    net = SoftModularNet(
        members=2,
        in_dim=OBS,
        out_dim=3,
        num_tasks=T,
        base_hidden=[16, 16],
        num_layers=layers,
        num_modules=modules,
        module_hidden=8,
        routing_hidden=8,
        num_routing_layers=2,
    )
    for layer in [net.route_first, *net.route_next, net.route_last, net.last]:  # away from the near-uniform start
        torch.nn.init.normal_(layer.weight)
    x, task = torch.randn(7, OBS), torch.tensor([0, 1, 2, 0, 1, 2, 0])
    out = net(x, task)
    for m in range(2):
        assert torch.allclose(out[m], soft_module_reference(net, x, task, m), atol=1e-5)
    probs, last, _ = net.routing_weights(x, task)
    assert len(probs) == layers - 1 and last.shape == (2, 7, modules)
    for p in [*probs, last]:
        assert (p >= 0).all() and torch.allclose(p.sum(-1), torch.ones(p.shape[:-1]), atol=1e-6)
    # the same state routes differently for different tasks
    same = x[:1].expand(T, -1)
    p0 = net.routing_weights(same, torch.arange(T))[0][0]
    assert (p0[:, 0] - p0[:, 1]).abs().max() > 1e-3


# ---------------------------------------------------------------- PaCo


def test_paco_task_parameters_are_phi_w_and_the_network_is_that_plain_mlp():
    torch.manual_seed(3)
    net = PaCoNet(members=2, in_dim=OBS, hidden=[16, 16], out_dim=3, num_tasks=T, num_sets=4)
    with torch.no_grad():  # sets start identical (reference init); make them differ for the check
        for layer in net.layers:
            layer.sets.weight.normal_()
            layer.sets.bias.normal_()
    x, task = torch.randn(6, OBS), torch.tensor([2, 0, 1, 1, 0, 2])
    out = net(x, task)
    for t in range(T):
        params = net.task_parameters(t)
        for m in range(2):
            # theta_t = Phi w_t, layer by layer, from the raw parameter sets
            for layer, (weight, _bias) in zip(net.layers, params):
                sets = layer.sets.weight.view(2, 4, *layer.sets.weight.shape[1:])[m]
                assert torch.allclose(weight[m], sum(net.w[m, t, k] * sets[k] for k in range(4)), atol=1e-5)
            h = x[task == t]
            for i, (weight, bias) in enumerate(params):
                h = h @ weight[m] + bias[m]
                if i < len(params) - 1:
                    h = F.relu(h)
            assert torch.allclose(out[m, task == t], h, atol=1e-4)


def test_paco_starts_with_identical_sets_and_its_task_vectors_are_what_the_reset_touches():
    torch.manual_seed(4)
    agent = make_agent("paco")
    sets = agent.critic.net.layers[0].sets.weight.view(2, 4, -1)
    assert torch.equal(sets[:, :1].expand_as(sets), sets)
    names = {b.name for b in agent.task_specific_blocks()}
    assert names == {"actor.net.w", "critic.net.w"}
    shared = {id(p) for p in agent.shared_parameters("critic")}
    assert id(agent.critic.net.w) not in shared and id(agent.critic.net.layers[0].sets.weight) in shared
    sac = SAC(agent, T, ACT, SACConfig())
    before = {k: v.clone() for k, v in agent.state_dict().items()}
    sac.reset_tasks(torch.tensor([False, True, False]))
    w = agent.critic.net.w.detach()
    assert torch.allclose(w[:, 1], (before["critic.net.w"][:, 0] + before["critic.net.w"][:, 2]) / 2)
    assert torch.equal(w[:, [0, 2]], before["critic.net.w"][:, [0, 2]])
    for k, v in agent.state_dict().items():  # the shared sets are untouched
        if not k.endswith(".w"):
            assert torch.equal(v, before[k]), k


# ---------------------------------------------------------------- BRC


def c51_projection_reference(atoms, probs, support):
    """Bellemare et al. 2017, Algorithm 1, one sample and one atom at a time."""
    v_min, v_max, n = float(support[0]), float(support[-1]), len(support)
    dz = (v_max - v_min) / (n - 1)
    out = np.zeros((atoms.shape[0], n))
    for b in range(atoms.shape[0]):
        for j in range(n):
            tz = min(max(float(atoms[b, j]), v_min), v_max)
            pos = (tz - v_min) / dz
            lo, hi = math.floor(pos), math.ceil(pos)
            if lo == hi:
                out[b, lo] += probs[b, j]
            else:
                out[b, lo] += probs[b, j] * (hi - pos)
                out[b, hi] += probs[b, j] * (pos - lo)
    return out


def test_categorical_projection_preserves_mass_and_mean_and_matches_c51():
    torch.manual_seed(5)
    support = torch.linspace(-10, 10, 21, dtype=torch.float64)
    probs = torch.softmax(torch.randn(8, 21, dtype=torch.float64), -1)
    inside = torch.empty(8, 21, dtype=torch.float64).uniform_(-10, 10)
    inside[0, :3] = support[4:7]  # atoms exactly on bins
    projected = project(inside, probs, support)
    assert torch.allclose(projected.sum(-1), torch.ones(8, dtype=torch.float64))
    assert torch.allclose(projected @ support, (probs * inside).sum(-1))
    wide = inside * 3  # beyond the support: clipped to its ends, mass still 1
    assert np.allclose(
        project(wide, probs, support).numpy(), c51_projection_reference(wide.numpy(), probs.numpy(), support.numpy())
    )
    assert np.allclose(projected.numpy(), c51_projection_reference(inside.numpy(), probs.numpy(), support.numpy()))


def test_brc_critic_loss_is_cross_entropy_to_the_projected_soft_bellman_target():
    torch.manual_seed(6)
    agent = make_agent("brc")
    sac = SAC(agent, T, ACT, SACConfig(gamma=0.9))
    b = batch()
    alpha = sac.log_alpha.detach().exp()[b.task]
    torch.manual_seed(7)
    per_sample, q = sac.critic_terms(b, alpha)
    # the same, by hand: the target members' mean distribution, atoms r + gamma (z - alpha log pi')
    torch.manual_seed(7)
    feats = agent.encoder(b.obs, b.task)
    logits = agent.critic.logits(feats, b.action, b.task)
    with torch.no_grad():
        next_a, next_lp = agent.actor.sample(agent.actor_features(b.next_obs, b.task), b.task)
        tc = sac.target["critic"]
        p = torch.softmax(tc.logits(sac.target["encoder"](b.next_obs, b.task), next_a, b.task), -1).mean(0)
        atoms = b.reward[:, None] + 0.9 * (tc.support[None] - alpha[:, None] * next_lp[:, None])
        target = torch.as_tensor(
            c51_projection_reference(atoms.numpy(), p.numpy(), tc.support.numpy()), dtype=torch.float32
        )
    ce = -(target[None] * torch.log_softmax(logits, -1)).sum(-1).sum(0)
    assert torch.allclose(per_sample, ce, atol=1e-5)
    assert torch.allclose(q[0], torch.softmax(logits, -1).mean(0) @ tc.support, atol=1e-5)
    assert torch.allclose(agent.critic(feats, b.action, b.task), q, atol=1e-5)


def brc_temperature_loss_reference(log_temp: torch.Tensor, log_probs: torch.Tensor, target_entropy: float):
    """naumix/BiggerRegularizedCategorical, jaxrl/agent/update.py: ``update_temperature``'s
    ``temperature * (entropy - target_entropy).mean()``, with ``update_actor``'s
    ``entropy = -log_probs.mean()`` and ``temperature = exp(log_temp)`` (networks.py Temperature)."""
    entropy = -log_probs.mean()
    return torch.exp(log_temp) * (entropy - target_entropy)


def test_brc_shared_temperature_is_one_alpha_trained_by_the_reference_loss():
    sac = SAC(make_agent("brc"), T, ACT, SACConfig(temperature="shared", alpha_beta1=0.5, initial_alpha=0.1))
    assert sac.log_alpha.shape == (1,) and torch.equal(sac.task_log_alpha(), sac.log_alpha.expand(T))
    assert sac.alpha_opt.param_groups[0]["betas"] == (0.5, 0.999)  # brc_learner.py: optax.adam(b1=0.5)
    torch.manual_seed(11)
    task, log_prob = torch.arange(T).repeat(4), torch.randn(4 * T) - 1.0
    for keep in (None, task != 1):  # PaCo's mask: the kept samples' entropy
        log_temp = sac.log_alpha.detach()[0].double().requires_grad_()
        kept = log_prob if keep is None else log_prob[keep]
        reference = brc_temperature_loss_reference(log_temp, kept.double(), sac.target_entropy)
        reference.backward()
        loss = sac.update_alpha(task, log_prob, keep)["loss/alpha"]
        assert loss.item() == pytest.approx(reference.item(), rel=1e-6)
        assert sac.log_alpha.grad.item() == pytest.approx(log_temp.grad.item(), rel=1e-5)  # alpha (H - H*)
    before = sac.log_alpha.detach().clone()
    sac.reset_tasks(torch.tensor([False, True, False]))  # a masked task does not reset the shared alpha
    assert torch.equal(sac.log_alpha.detach(), before)


@pytest.mark.parametrize("config", ["mt10-brc", "mt50-brc"])  # toy-brc keeps mtrl's (its comment says why)
def test_brc_configs_have_the_reference_temperature_and_no_clipping(config):
    from mtrl.config import load_config

    sac = load_config(config).sac
    assert (sac.temperature, sac.alpha_beta1, sac.max_grad_norm) == ("shared", 0.5, None)


def test_brc_actor_heads_and_log_std_floor_are_the_reference_codes():
    """jaxrl/networks.py NormalTanhPolicy: means from a Dense of orthogonal init with gain sqrt 2
    (default_init()), log-stds from one of gain 1 (log_std_scale), squashed into [-10, 2] as
    log_std_min + (log_std_max - log_std_min) * 0.5 * (1 + tanh)."""
    torch.manual_seed(10)
    agent = make_agent("brc")
    head = agent.actor.net.head.weight[0]  # (width, 2|A|): the means' columns, then the log-stds'
    means, log_stds = head[:, :ACT], head[:, ACT:]
    assert torch.allclose(means.T @ means, 2 * torch.eye(ACT), atol=1e-5)
    assert torch.allclose(log_stds.T @ log_stds, torch.eye(ACT), atol=1e-5)
    joint = make_agent("brc", actor_head_init="joint").actor.net.head.weight[0]  # mtrl's first: one, gain 1
    assert torch.allclose(joint.T @ joint, torch.eye(2 * ACT), atol=1e-5)
    x, task = torch.randn(6, agent.encoder.out_dim), torch.zeros(6, dtype=torch.long)
    out = agent.actor.net(x)[0]
    mean, log_std = agent.actor(x, task)
    assert torch.equal(mean, out[:, :ACT])
    assert torch.allclose(log_std, -10.0 + (2.0 - -10.0) * 0.5 * (1 + torch.tanh(out[:, ACT:])))


def test_bronet_blocks_are_residual_with_layer_norm():
    torch.manual_seed(8)
    net = BroNet(members=2, in_dim=5, width=16, depth=1, out_dim=3)
    x = torch.randn(4, 5)
    h = F.relu(F.layer_norm(x @ net.stem.weight[0] + net.stem.bias[0], (16,)))
    d1, n1, d2, n2 = net.blocks[0]
    res = F.layer_norm(F.relu(F.layer_norm(h @ d1.weight[0] + d1.bias[0], (16,))) @ d2.weight[0] + d2.bias[0], (16,))
    assert torch.allclose(net(x)[0], (h + res) @ net.head.weight[0] + net.head.bias[0], atol=1e-5)


def test_brc_task_embedding_is_normalised_and_trained_by_the_critic_only():
    agent = make_agent("brc")
    feats = agent.encoder(torch.zeros(3, OBS), torch.arange(3))
    assert torch.allclose(feats[:, OBS:].norm(dim=-1), torch.ones(3), atol=1e-6)
    assert agent.actor_encoder_parameters() == []
    assert [b.name for b in agent.task_specific_blocks()] == ["encoder.embedding.table"]


def test_returns_to_go_and_the_reward_divisor_follow_brc():
    r = np.array([1.0, -2.0, 3.0])
    assert np.allclose(returns_to_go(r, 0.5, bootstrap=False), [1 - 1 + 0.75, -2 + 1.5, 3])
    tail = r.mean() / 0.5
    assert np.allclose(returns_to_go(r, 0.5, bootstrap=True)[-1], 3 + 0.5 * tail)
    scale = ReturnScale(2, 2, 0.5, 10.0)
    for step in range(3):  # slot 0: task 1 ends by a time limit; slot 1: task 0 terminates
        scale.observe(
            np.array([1, 0]), np.array([r[step], 4.0]), np.array([False, step == 2]), np.array([step == 2, False])
        )
    g1 = max(returns_to_go(r, 0.5, True).max(), abs(returns_to_go(r, 0.5, True).min()))
    g0 = returns_to_go(np.array([4.0, 4.0, 4.0]), 0.5, False).max()
    alpha = torch.tensor([0.2, 0.1], dtype=torch.float64)
    expected = (torch.tensor([g0, g1], dtype=torch.float64) + alpha * 4.0 / (2 * 0.5)) / 10.0
    assert torch.allclose(scale.divisors(alpha, -4.0), expected)


# ---------------------------------------------------------------- all four in the agent


@pytest.mark.parametrize("name", [n for n in SMALL if n != "softshare"])
def test_each_architecture_updates_with_a_conflict_method_and_measures_conflicts(name):
    torch.manual_seed(9)
    agent = make_agent(name)
    b = batch()
    assert agent.act(b.obs.numpy(), b.task.numpy()).shape == (len(b.task), ACT)
    sac = SAC(agent, T, ACT, SACConfig(), conflict=ConflictConfig(method="pcgrad"))
    before = [p.detach().clone() for p in agent.parameters()]
    metrics = sac.update(b)
    assert all(bool(torch.isfinite(v).all()) for v in metrics.values())
    moved = [not torch.equal(a, p) for a, p in zip(before, agent.parameters()) if p.requires_grad]
    assert sum(moved) >= len(moved) - 1  # everything trainable moves (PaCo's identical sets too)
    stats = sac.measure_conflicts(b)
    assert stats["critic"].cosine.shape == (T, T)


@pytest.mark.parametrize("name", ["softmod", "moore", "paco", "softshare"])
def test_task_specific_blocks_are_what_one_task_alone_moves(name):
    """A loss on one task's samples gives zero gradient to the other tasks' blocks."""
    torch.manual_seed(10)
    agent = make_agent(name)
    b = batch()
    only = b.task == 1
    agent.critic(agent.encoder(b.obs[only], b.task[only]), b.action[only], b.task[only]).sum().backward()
    params = dict(agent.named_parameters())
    blocks = [blk for blk in agent.task_specific_blocks() if blk.name.startswith("critic")]
    assert blocks
    for blk in blocks:
        grad = blk.view(params[blk.name].grad, T)
        other = grad.index_select(blk.dim, torch.tensor([0, 2]))
        assert other.abs().max() == 0 and grad.index_select(blk.dim, torch.tensor([1])).abs().max() > 0, blk.name


@pytest.mark.parametrize(
    "path", sorted((__import__("pathlib").Path(__file__).parents[1] / "configs").glob("*.yaml")), ids=lambda p: p.stem
)
def test_every_shipped_config_loads_and_its_agent_builds(path):
    """Every file in configs/ validates, and its agent builds for its suite's sizes (paper-scale
    networks included but BRC's 4096-wide critics; CARE with one-hot task inputs, as no suite
    is built here)."""
    from mtrl.config import load_config

    cfg = load_config(str(path))
    if cfg.agent.name == "care":
        cfg.agent.task_embedding = "one_hot"
    if cfg.agent.name == "brc" and cfg.agent.critic_width > 512:  # 4096-wide orthogonal inits: a minute here
        cfg.agent.critic_width = 512
    tasks = {"MT10": 10, "MT50": 50}.get(getattr(cfg.env, "benchmark", None), getattr(cfg.env, "num_tasks", 4) or 4)
    spec = EnvSpec(39, 4, tuple(f"t{i}" for i in range(tasks)), ("d",) * tasks, "test")
    agent = get("agent", cfg.agent.name).target(cfg.agent, spec)
    out = agent.act(np.zeros((2, 39), np.float32), np.array([0, tasks - 1]))
    assert out.shape == (2, 4) and np.all(np.abs(out) <= 1)


# ---------------------------------------------------------------- soft parameter sharing


def test_soft_sharing_runs_each_sample_through_its_own_tasks_network():
    from mtrl.learner.soft_sharing import PerTaskMLP

    torch.manual_seed(11)
    net = PerTaskMLP(2, 5, [8], 3, 4, strength=0.1)
    x, task = torch.randn(9, 5), torch.tensor([3, 0, 0, 2, 3, 3, 1, 0, 2])
    out = net(x, task)
    for m in range(2):
        for b in range(9):
            i = m * 4 + task[b]
            h = torch.relu(x[b] @ net.layers[0].weight[i] + net.layers[0].bias[i, 0])
            assert torch.allclose(out[m, b], h @ net.layers[1].weight[i] + net.layers[1].bias[i, 0], atol=1e-6)


@pytest.mark.parametrize("strength", [0.0, 1.0])
def test_the_soft_sharing_penalty_pulls_task_parameters_together(strength):
    """SAC updates with the penalty shrink the tasks' spread around their mean parameters;
    without it the spread does not shrink that way."""
    torch.manual_seed(12)
    agent = make_agent("softshare", strength=strength)

    def spread() -> float:
        w = agent.critic.net.layers[0].weight.detach().view(2, T, *agent.critic.net.layers[0].weight.shape[1:])
        return float(((w - w.mean(1, keepdim=True)) ** 2).sum())

    expected_penalty = strength * sum(
        float(((p.view(2, T, *p.shape[1:]) - p.view(2, T, *p.shape[1:]).mean(1, keepdim=True)) ** 2).sum())
        for layer in agent.critic.net.layers
        for p in (layer.weight.detach(), layer.bias.detach())
    )
    assert math.isclose(float(agent.critic.net.penalty().detach()), expected_penalty, rel_tol=1e-5)

    def relative_spread_by_loop() -> float:  # the logged diagnostic, one task's parameters at a time
        apart = size = 0.0
        for layer in agent.critic.net.layers:
            for p in (layer.weight.detach(), layer.bias.detach()):
                for m in range(2):
                    tasks = [p[m * T + t] for t in range(T)]
                    mean = sum(tasks) / T
                    apart += sum(float(((x - mean) ** 2).sum()) for x in tasks)
                    size += sum(float((x**2).sum()) for x in tasks)
        return (apart / size) ** 0.5

    sac = SAC(agent, T, ACT, SACConfig(critic_lr=1e-2, actor_lr=1e-2))
    before, relative_before = spread(), agent.critic.net.relative_spread()
    assert math.isclose(relative_before, relative_spread_by_loop(), rel_tol=1e-5)
    assert relative_before > 0.7  # independent initialisations: about sqrt((T-1)/T) = 0.82
    for _ in range(30):
        sac.update(batch())
    assert math.isclose(agent.critic.net.relative_spread(), relative_spread_by_loop(), rel_tol=1e-5)
    if strength:
        assert spread() < 0.5 * before
        assert agent.critic.net.relative_spread() < 0.75 * relative_before
    else:
        assert spread() > 0.9 * before
    assert sac.measure_conflicts(batch()) == {}  # nothing is shared: no conflicts to measure


def test_return_scale_survives_a_checkpoint_mid_episode():
    scale = ReturnScale(2, 2, 0.9, 10.0)
    scale.observe(np.array([0, 1]), np.array([1.0, 2.0]), np.array([False, True]), np.array([False, False]))
    scale.observe(np.array([0, 0]), np.array([3.0, 4.0]), np.array([False, False]), np.array([False, False]))
    other = ReturnScale(2, 2, 0.9, 10.0)
    other.load_state_dict(scale.state_dict())
    alpha = torch.tensor([0.5, 0.5])
    assert torch.equal(other.divisors(alpha, -2.0), scale.divisors(alpha, -2.0))
    for s in (scale, other):  # both finish slot 0's running episode [1, 3] the same way
        s.observe(np.array([0, 0]), np.array([5.0, 0.0]), np.array([True, False]), np.array([False, False]))
    assert torch.equal(other.divisors(alpha, -2.0), scale.divisors(alpha, -2.0))
    assert scale.returns_max[0] == pytest.approx(1 + 0.9 * 3 + 0.81 * 5)


def test_network_constructors_take_names_only():
    """Networks with many settings are called with names (issue 24): no positional slip can
    swap two of SoftModularNet's eleven integers."""
    import inspect

    from mtrl.networks.bronet import BroNet
    from mtrl.networks.care_encoder import CAREEncoder, TaskEmbedding
    from mtrl.networks.ensemble import EnsembleLinear, EnsembleMLP, TanhGaussianActor, TwinQ
    from mtrl.networks.moore_experts import MOORENet
    from mtrl.networks.paco_layers import CompositionalLinear, PaCoNet

    for build in (
        BroNet,
        CAREEncoder,
        TaskEmbedding,
        MOORENet,
        EnsembleLinear,
        EnsembleMLP,
        TanhGaussianActor.mlp,
        TwinQ.mlp,
        CompositionalLinear,
        PaCoNet,
        SoftModularNet,
    ):
        params = [p for p in inspect.signature(build).parameters.values() if p.name != "self"]
        assert params and all(p.kind is p.KEYWORD_ONLY for p in params), build
