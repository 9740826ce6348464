"""Divergence guards of the SAC update: non-finite steps are skipped, exploding tasks are
masked and their task-specific parameters reset (PaCo), healthy batches are untouched."""

import copy
import math

import pytest
import torch

from mtrl.agents.mhsac import MHSACConfig, make_mhsac
from mtrl.agents.mtsac import MTSACConfig, make_mtsac
from mtrl.config import ConflictConfig, SACConfig
from mtrl.learner import conflict as conflict_module
from mtrl.learner import sac as sac_module
from mtrl.learner.agent import Agent, EnvSpec
from mtrl.learner.replay import Batch
from mtrl.learner.sac import SAC, temperature_loss
from mtrl.networks.care_encoder import CAREEncoder, TaskEmbedding
from mtrl.networks.ensemble import TanhGaussianActor, TwinQ

T, OBS, ACT, PER_TASK = 4, 3, 2, 6
SPEC = EnvSpec(OBS, ACT, tuple(f"task{i}" for i in range(T)), ("",) * T, "toy")
MAKERS = {"mtsac": (make_mtsac, MTSACConfig), "mhsac": (make_mhsac, MHSACConfig)}


def make_sac(kind="mtsac", num_tasks=T, conflict="none", **cfg):
    torch.manual_seed(0)
    make, config = MAKERS[kind]
    spec = EnvSpec(OBS, ACT, SPEC.task_names[:num_tasks], ("",) * num_tasks, "toy")
    agent = make(config(hidden_sizes=[16, 16]), spec)
    return SAC(agent, num_tasks, ACT, SACConfig(**cfg), ConflictConfig(method=conflict))


def make_batch(num_tasks=T, seed=1):
    g = torch.Generator().manual_seed(seed)
    n = PER_TASK * num_tasks
    return Batch(
        torch.randn(n, OBS, generator=g),
        torch.rand(n, ACT, generator=g) * 2 - 1,
        torch.randn(n, generator=g),
        torch.randn(n, OBS, generator=g),
        (torch.rand(n, generator=g) < 0.2).float(),
        torch.arange(num_tasks).repeat_interleave(PER_TASK),
    )


def with_task_value(batch, field, t, value):
    """The batch with ``field`` of task t's samples set to ``value``."""
    x = getattr(batch, field).clone()
    x[batch.task == t] = value
    return batch._replace(**{field: x})


def params(sac):
    """Every trained or tracked tensor: online, target, temperatures."""
    named = {f"agent.{k}": v for k, v in sac.agent.named_parameters()}
    named.update({f"target.{k}": v for k, v in sac.target.named_parameters()})
    named["log_alpha"] = sac.log_alpha
    return named


def snapshot(sac):
    return {k: v.detach().clone() for k, v in params(sac).items()}


def opt_states(sac):
    return {
        name: copy.deepcopy(getattr(sac, name).state_dict()["state"])
        for name in ("critic_opt", "actor_opt", "alpha_opt")
    }


def assert_states_equal(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].keys() == b[key].keys(), key
        for i in a[key]:
            for name, value in a[key][i].items():
                assert torch.equal(value, b[key][i][name]), (key, i, name)


def one_hot_rows(weight, t):
    """Task t's one-hot row(s) of a first-layer weight (members, in, out)."""
    return weight[:, OBS + t]


def head_slice(tensor, t, width):
    return tensor[..., t * width : (t + 1) * width]


# --- (a) a NaN for one task: masked, the others still learn -----------------------------


@pytest.mark.parametrize("kind", ["mtsac", "mhsac"])
@pytest.mark.parametrize("field", ["reward", "obs", "next_obs"])
def test_nan_in_one_task_is_masked_and_the_other_tasks_still_learn(kind, field):
    sac = make_sac(kind)
    before = snapshot(sac)
    metrics = sac.update(with_task_value(make_batch(), field, 1, float("nan")))
    assert sac.last_masked.tolist() == [False, True, False, False]
    assert metrics["divergence/masked_tasks"].item() == 1 and metrics["divergence/skipped_steps"].item() == 0
    assert all(bool(torch.isfinite(v).all()) for v in params(sac).values())
    assert all(bool(torch.isfinite(v).all()) for v in metrics.values())
    after = params(sac)
    for part in ("actor", "critic"):
        net = getattr(sac.agent, part).net
        first = net.hidden[0].weight
        b = before[f"agent.{part}.net.hidden.0.weight"]
        for t in (0, 2, 3):  # the healthy tasks' one-hot rows moved: the update was not skipped
            assert not torch.equal(one_hot_rows(first, t), one_hot_rows(b, t)), (part, t)
        assert not torch.equal(after[f"agent.{part}.net.hidden.1.weight"], before[f"agent.{part}.net.hidden.1.weight"])
        if kind == "mhsac":
            width = net.out_dim
            for t in (0, 2, 3):
                assert not torch.equal(
                    head_slice(net.head.weight, t, width), head_slice(before[f"agent.{part}.net.head.weight"], t, width)
                )
    for t in (0, 2, 3):
        assert sac.log_alpha[t] != before["log_alpha"][t]


def test_masking_works_with_gradient_aggregation_and_task_weights():
    sac = make_sac("mhsac", conflict="pcgrad", task_weights=True)
    metrics = sac.update(with_task_value(make_batch(), "reward", 3, float("inf")))
    assert sac.last_masked.tolist() == [False, False, False, True] and metrics["divergence/skipped_steps"].item() == 0
    assert all(bool(torch.isfinite(v).all()) for v in params(sac).values())


def test_a_masked_or_absent_task_is_left_out_of_the_aggregation(monkeypatch):
    """Its zero gradient row would shrink the aggregated step by (T - k) / T."""
    seen = []
    aggregate = conflict_module.aggregate  # called by the update's conflict.aggregated_backward
    monkeypatch.setattr(
        conflict_module, "aggregate", lambda grads, *a, **k: seen.append(grads) or aggregate(grads, *a, **k)
    )
    sac = make_sac("mhsac", conflict="pcgrad")
    sac.update(with_task_value(make_batch(), "reward", 3, float("inf")))  # task 3 masked
    assert [g.shape[0] for g in seen] == [T - 1, T - 1] and all(bool((g.norm(dim=1) > 0).all()) for g in seen)
    seen.clear()
    batch = make_batch()
    present = batch.task != 2
    sac.update(Batch(*(x[present] if x is not None else None for x in batch)))  # task 2 absent
    assert [g.shape[0] for g in seen] == [T - 1, T - 1]


# --- (b) non-finite gradients or losses: the step is skipped -----------------------------


@pytest.mark.parametrize("max_grad_norm", [1.0, None])
def test_non_finite_gradient_skips_the_step_and_leaves_adam_untouched(max_grad_norm):
    sac = make_sac(max_grad_norm=max_grad_norm)
    sac.update(make_batch(seed=2))  # Adam has state now
    before, states = snapshot(sac), opt_states(sac)
    critic_weight = sac.agent.critic.net.hidden[1].weight
    handle = critic_weight.register_hook(lambda g: torch.full_like(g, float("nan")))  # finite loss, NaN gradient
    metrics = sac.update(make_batch())
    handle.remove()
    assert metrics["divergence/skipped_steps"].item() == 1 and metrics["divergence/masked_tasks"].item() == 0
    after, new_states = snapshot(sac), opt_states(sac)
    for name, p in sac.agent.critic.named_parameters():
        assert torch.equal(p, before[f"agent.critic.{name}"]), name
        assert p.grad is None
    assert_states_equal({"critic_opt": states["critic_opt"]}, {"critic_opt": new_states["critic_opt"]})
    # the actor and temperature steps were not affected
    assert not torch.equal(after["agent.actor.net.hidden.1.weight"], before["agent.actor.net.hidden.1.weight"])
    assert not torch.equal(after["log_alpha"], before["log_alpha"])


def test_all_three_steps_skipped_when_every_loss_is_nan(monkeypatch):
    sac = make_sac()
    sac.update(make_batch(seed=2))
    before, states = snapshot(sac), opt_states(sac)
    actor_terms = sac.actor_terms
    monkeypatch.setattr(sac, "actor_terms", lambda *a: (actor_terms(*a)[0] * float("nan"), actor_terms(*a)[1]))
    monkeypatch.setattr(sac_module, "temperature_loss", lambda *a, **k: temperature_loss(*a, **k) * float("nan"))
    sac.agent.critic.net.head.weight.register_hook(lambda g: g * float("inf"))
    metrics = sac.update(make_batch())
    assert metrics["divergence/skipped_steps"].item() == 3
    after = snapshot(sac)
    for k, v in before.items():
        if not k.startswith("target."):  # the soft update still moves the targets towards the (unchanged) online nets
            assert torch.equal(after[k], v), k
    assert_states_equal(states, opt_states(sac))


def test_every_task_non_finite_skips_the_whole_update():
    sac = make_sac()
    sac.update(make_batch(seed=2))
    before, states = snapshot(sac), opt_states(sac)
    batch = make_batch()
    metrics = sac.update(batch._replace(obs=torch.full_like(batch.obs, float("inf"))))
    assert metrics["divergence/skipped_steps"].item() == 3 and metrics["divergence/masked_tasks"].item() == T
    assert sac.last_masked.all()
    after = snapshot(sac)
    assert all(torch.equal(after[k], v) for k, v in before.items())  # targets and temperatures too: no reset
    assert_states_equal(states, opt_states(sac))


# --- (c) an exploding task: masked, its task-specific parameters reset ---------------------


def mean_of_others(view, t, dim):
    others = [i for i in range(view.shape[dim]) if i != t]
    return view.index_select(dim, torch.tensor(others)).mean(dim)


@pytest.mark.parametrize("kind", ["mtsac", "mhsac"])
def test_exploding_task_is_masked_and_its_parameters_reset(kind):
    sac = make_sac(kind, task_loss_threshold=3e3)  # mtrl's mask (the critic's loss) and reset (the mean)
    sac.update(make_batch(seed=2))  # Adam has state now
    before = snapshot(sac)
    metrics = sac.update(with_task_value(make_batch(), "reward", 2, 1e6))
    assert sac.last_masked.tolist() == [False, False, True, False]
    assert metrics["divergence/masked_tasks"].item() == 1 and metrics["divergence/skipped_steps"].item() == 0
    assert not torch.equal(sac.agent.critic.net.hidden[1].weight, before["agent.critic.net.hidden.1.weight"])
    target = dict(sac.target.named_parameters())
    opt_of = {"actor": sac.actor_opt, "critic": sac.critic_opt}
    for part in ("actor", "critic"):
        net = getattr(sac.agent, part).net
        w = net.hidden[0].weight.detach()  # (members, in, out); task t reads row OBS + t
        rows = w[:, OBS : OBS + T]
        torch.testing.assert_close(rows[:, 2], mean_of_others(rows, 2, 1), rtol=1e-6, atol=1e-7)
        state = opt_of[part].state[net.hidden[0].weight]
        for key in ("exp_avg", "exp_avg_sq"):
            assert (state[key][:, OBS + 2] == 0).all() and (state[key][:, OBS] != 0).any()
        if part == "critic":
            assert torch.equal(target["critic.net.hidden.0.weight"][:, OBS + 2], w[:, OBS + 2])
        if kind == "mhsac":
            width = net.out_dim
            for name in ("weight", "bias"):
                p = getattr(net.head, name).detach()
                heads = p.unflatten(2, (T, width))
                torch.testing.assert_close(heads[:, :, 2], mean_of_others(heads, 2, 2), rtol=1e-6, atol=1e-7)
                state = opt_of[part].state[getattr(net.head, name)]
                assert (head_slice(state["exp_avg"], 2, width) == 0).all()
                assert (head_slice(state["exp_avg"], 0, width) != 0).any()
                if part == "critic":
                    assert torch.equal(head_slice(target[f"critic.net.head.{name}"], 2, width), head_slice(p, 2, width))
    log_alpha = sac.log_alpha.detach()
    assert log_alpha[2].item() == pytest.approx(log_alpha[[0, 1, 3]].mean().item(), abs=1e-7)
    alpha_state = sac.alpha_opt.state[sac.log_alpha]
    assert alpha_state["exp_avg"][2] == 0 and alpha_state["exp_avg_sq"][2] == 0 and alpha_state["exp_avg"][0] != 0


def test_threshold_none_masks_only_non_finite_tasks():
    batch = with_task_value(make_batch(), "reward", 2, 1e6)
    assert make_sac(task_loss_threshold=None).update(batch)["divergence/masked_tasks"].item() == 0
    sac = make_sac(task_loss_threshold=None)
    sac.update(with_task_value(batch, "reward", 0, float("nan")))
    assert sac.last_masked.tolist() == [True, False, False, False]


@pytest.mark.parametrize("kind", ["mtsac", "mhsac"])
def test_task_specific_blocks_are_the_slices_each_task_reads(kind):
    sac = make_sac(kind)
    agent, batch = sac.agent, make_batch()
    with torch.no_grad():
        q = agent.critic(agent.encoder(batch.obs, batch.task), batch.action, batch.task)
        mean = agent.actor(agent.encoder(batch.obs, batch.task), batch.task)[0]
        named = dict(agent.named_parameters())
        blocks = agent.task_specific_blocks()
        assert {b.name for b in blocks} == {"actor.net.hidden.0.weight", "critic.net.hidden.0.weight"} | (
            {f"{p}.net.head.{n}" for p in ("actor", "critic") for n in ("weight", "bias")} if kind == "mhsac" else set()
        )
        for block in blocks:
            block.view(named[block.name], T)[(slice(None),) * block.dim + (2,)].add_(1.0)
        q2 = agent.critic(agent.encoder(batch.obs, batch.task), batch.action, batch.task)
        mean2 = agent.actor(agent.encoder(batch.obs, batch.task), batch.task)[0]
    other, own = batch.task != 2, batch.task == 2
    assert torch.equal(q[:, other], q2[:, other]) and torch.equal(mean[other], mean2[other])
    assert not torch.equal(q[:, own], q2[:, own]) and not torch.equal(mean[own], mean2[own])


def care_sac(kind):
    torch.manual_seed(0)
    pretrained = torch.randn(T, 8)

    def encoder():
        return CAREEncoder(
            obs_dim=OBS,
            task_embedding=TaskEmbedding(kind=kind, num_tasks=T, pretrained=pretrained),
            num_encoders=2,
            encoder_hidden=[16],
            encoder_dim=8,
            context_hidden=[16],
        )

    enc = encoder()
    agent = Agent(
        enc,
        TanhGaussianActor.mlp(in_dim=enc.out_dim, act_dim=ACT, hidden=[16]),
        TwinQ.mlp(in_dim=enc.out_dim, act_dim=ACT, hidden=[16]),
        "own",
        encoder(),
    )
    return SAC(agent, T, ACT, SACConfig(task_loss_threshold=3e3))


@pytest.mark.parametrize("kind", ["pretrained", "learned"])
def test_care_reset_touches_the_temperature_and_a_learned_embedding_only(kind):
    sac = care_sac(kind)
    blocks = sac.agent.task_specific_blocks()
    tables = ["encoder.task_embedding.table", "actor_encoder.task_embedding.table"]
    assert [b.name for b in blocks] == (tables if kind == "learned" else [])
    sac.update(make_batch(seed=2))
    metrics = sac.update(with_task_value(make_batch(), "reward", 2, 1e6))
    assert sac.last_masked.tolist() == [False, False, True, False] and metrics["divergence/skipped_steps"].item() == 0
    assert all(bool(torch.isfinite(v).all()) for v in params(sac).values())
    log_alpha = sac.log_alpha.detach()
    assert log_alpha[2].item() == pytest.approx(log_alpha[[0, 1, 3]].mean().item(), abs=1e-7)
    if kind == "learned":
        named, target = dict(sac.agent.named_parameters()), dict(sac.target.named_parameters())
        for name in tables:
            table = named[name].detach()
            torch.testing.assert_close(table[2], table[[0, 1, 3]].mean(0), rtol=1e-6, atol=1e-7)
        assert torch.equal(target[tables[0]][2], named[tables[0]][2])


def test_single_task_reset_leaves_the_networks_and_restores_the_initial_temperature():
    sac = make_sac(num_tasks=1, initial_alpha=0.5)
    sac.update(make_batch(num_tasks=1, seed=2))
    before = snapshot(sac)
    metrics = sac.update(with_task_value(make_batch(num_tasks=1), "reward", 0, float("nan")))
    assert metrics["divergence/skipped_steps"].item() == 3  # the only task masked: nothing to learn from
    assert all(torch.equal(v, snapshot(sac)[k]) for k, v in before.items())
    sac.reset_tasks(torch.tensor([True]))  # a direct reset: only the temperature has a default
    after = snapshot(sac)
    assert all(torch.equal(after[k], v) for k, v in before.items() if k != "log_alpha")
    assert after["log_alpha"].item() == pytest.approx(math.log(0.5))
    assert sac.alpha_opt.state[sac.log_alpha]["exp_avg"].item() == 0


# --- (d) a healthy batch: the guards change nothing -------------------------------------


def reference_update(sac, batch):
    """The update before the divergence guards (plain mean losses, always step)."""

    def step(opt, params, loss):
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if sac.cfg.max_grad_norm is not None and params:
            torch.nn.utils.clip_grad_norm_(params, sac.cfg.max_grad_norm)
        opt.step()

    task = batch.task
    alpha = sac.log_alpha.detach().exp()[task]
    step(sac.critic_opt, sac.critic_params, sac.critic_terms(batch, alpha)[0].mean())
    actor_per_sample, log_prob = sac.actor_terms(batch.obs, task, alpha)
    step(sac.actor_opt, sac.actor_params, actor_per_sample.mean())
    step(sac.alpha_opt, [], temperature_loss(sac.log_alpha[task], log_prob, sac.target_entropy))
    sac.soft_update()


@pytest.mark.parametrize("kind", ["mtsac", "mhsac"])
@pytest.mark.parametrize("max_grad_norm", [1.0, None])
def test_healthy_batches_update_exactly_as_without_the_guards(kind, max_grad_norm):
    results = []
    for threshold, guarded in ((3e3, True), (None, True), (3e3, False)):
        sac = make_sac(kind, max_grad_norm=max_grad_norm, task_loss_threshold=threshold)
        torch.manual_seed(5)
        for seed in range(3):
            if guarded:
                metrics = sac.update(make_batch(seed=seed))
                assert (
                    metrics["divergence/skipped_steps"].item() == 0 and metrics["divergence/masked_tasks"].item() == 0
                )
                assert not sac.last_masked.any() and sac.last_masked.shape == (T,)
            else:
                reference_update(sac, make_batch(seed=seed))
        results.append(snapshot(sac))
    for other in results[1:]:
        assert all(torch.equal(results[0][k], other[k]) for k in results[0])


@pytest.mark.parametrize("weight_decay", [0.0, 1e-2])
def test_a_reset_slice_moves_as_a_fresh_adam_would(weight_decay):
    """After reset_tasks, a task's head slice and its temperature follow exactly the steps a new
    Adam started at the reset would take on the same gradients (bias correction from k = 1)."""
    sac = make_sac("mhsac", weight_decay=weight_decay)
    for seed in range(3):
        sac.update(make_batch(seed=seed))
    sac.reset_tasks(torch.tensor([False, True, False, False]))
    block = next(b for b in sac.task_blocks if b.name.startswith("critic") and b.name.endswith("weight"))
    head = dict(sac.agent.named_parameters())[block.name]
    start = {
        "head": block.view(head, T).select(block.dim, 1).detach().clone(),
        "alpha": sac.log_alpha[1:2].detach().clone(),
    }
    grads = {"head": [], "alpha": []}
    hooks = [
        sac.critic_opt.register_step_pre_hook(
            lambda *_: grads["head"].append(block.view(head.grad, T).select(block.dim, 1).clone())
        ),
        sac.alpha_opt.register_step_pre_hook(lambda *_: grads["alpha"].append(sac.log_alpha.grad[1:2].clone())),
    ]
    for seed in range(3, 9):
        sac.update(make_batch(seed=seed))
    for hook in hooks:
        hook.remove()
    fresh = {
        "head": (start["head"], sac.cfg.critic_lr, torch.optim.AdamW if weight_decay else torch.optim.Adam),
        "alpha": (start["alpha"], sac.cfg.alpha_lr, torch.optim.Adam),
    }
    for part, (value, lr, optimizer) in fresh.items():
        x = value.clone().requires_grad_(True)
        opt = optimizer([x], lr=lr, **({"weight_decay": weight_decay} if optimizer is torch.optim.AdamW else {}))
        for g in grads[part]:
            x.grad = g
            opt.step()
        ours = block.view(head, T).select(block.dim, 1) if part == "head" else sac.log_alpha[1:2]
        torch.testing.assert_close(ours.detach(), x.detach(), rtol=1e-5, atol=1e-7)
    assert len(grads["head"]) == 6 and "log_alpha" in sac.state_dict()["reset_at"]
