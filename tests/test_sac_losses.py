"""The SAC losses against hand computations, and the update's wiring."""

import math

import pytest
import torch

from mtrl.config import SACConfig
from mtrl.learner.agent import Agent, OneHotTaskEncoder
from mtrl.learner.replay import Batch
from mtrl.learner.sac import SAC, actor_loss, critic_loss, critic_target, temperature_loss
from mtrl.networks.ensemble import TanhGaussianActor, TwinQ, squashed_log_prob


def test_critic_target_hand_computed():
    reward = torch.tensor([1.0, 1.0])
    terminated = torch.tensor([0.0, 1.0])
    next_q = torch.tensor([[2.0, 5.0], [3.0, 4.0]])  # (critics, batch): minima 2 and 4
    next_log_prob = torch.tensor([-1.0, -1.0])
    alpha = torch.tensor([0.5, 0.5])
    y = critic_target(reward, terminated, next_q, next_log_prob, alpha, gamma=0.9)
    # 1 + 0.9 * (2 + 0.5) = 3.25 ; terminated: just the reward
    assert y.tolist() == pytest.approx([3.25, 1.0])


def test_truncation_is_bootstrapped_termination_is_not():
    next_q = torch.full((2, 2), 10.0)
    y = critic_target(torch.zeros(2), torch.tensor([0.0, 1.0]), next_q, torch.zeros(2), torch.zeros(2), 0.99)
    assert y[0].item() == pytest.approx(9.9)  # a time-limit step keeps the bootstrap
    assert y[1].item() == 0.0


def test_critic_actor_temperature_losses_hand_computed():
    q = torch.tensor([[1.0, 2.0], [3.0, 0.0]])
    target = torch.tensor([2.0, 2.0])
    # critic 1: ((1-2)^2 + 0)/2 = 0.5 ; critic 2: (1 + 4)/2 = 2.5
    assert critic_loss(q, target).item() == pytest.approx(3.0)
    log_prob = torch.tensor([-1.0, -3.0])
    alpha = torch.tensor([0.1, 0.2])
    # mean(0.1*-1 - 1, 0.2*-3 - 0) = mean(-1.1, -0.6) = -0.85
    assert actor_loss(q, log_prob, alpha).item() == pytest.approx(-0.85)
    log_alpha = torch.tensor([math.log(0.1), math.log(0.2)])
    expected = -(math.log(0.1) * (-1 + 2) + math.log(0.2) * (-3 + 2)) / 2
    assert temperature_loss(log_alpha, log_prob, target_entropy=2.0).item() == pytest.approx(expected)


def test_squashed_log_prob_matches_torch_distributions():
    mean, log_std = torch.tensor([[0.3, -1.2]]), torch.tensor([[-0.5, 0.4]])
    u = torch.tensor([[1.1, -0.2]])
    base = torch.distributions.Normal(mean, log_std.exp())
    dist = torch.distributions.TransformedDistribution(base, [torch.distributions.TanhTransform()])
    expected = dist.log_prob(torch.tanh(u)).sum(-1)
    assert squashed_log_prob(u, mean, log_std).item() == pytest.approx(expected.item(), rel=1e-4)


def tiny_agent(num_tasks=2, obs_dim=2, act_dim=1):
    torch.manual_seed(0)
    enc = OneHotTaskEncoder(obs_dim, num_tasks)
    return Agent(
        enc,
        TanhGaussianActor.mlp(in_dim=enc.out_dim, act_dim=act_dim, hidden=[8]),
        TwinQ.mlp(in_dim=enc.out_dim, act_dim=act_dim, hidden=[8]),
    )


def tiny_batch(tasks):
    n = len(tasks)
    g = torch.Generator().manual_seed(1)
    return Batch(
        torch.randn(n, 2, generator=g),
        torch.rand(n, 1, generator=g) * 2 - 1,
        torch.randn(n, generator=g),
        torch.randn(n, 2, generator=g),
        torch.tensor([0.0, 1.0] * (n // 2)),
        torch.tensor(tasks),
    )


def test_update_critic_loss_uses_target_networks_min_and_per_task_alpha():
    agent = tiny_agent()
    sac = SAC(agent, num_tasks=2, act_dim=1, cfg=SACConfig(gamma=0.9, initial_alpha=0.3, max_grad_norm=None))
    with torch.no_grad():
        sac.log_alpha.copy_(torch.log(torch.tensor([0.3, 0.7])))
    batch = tiny_batch([0, 0, 1, 1])
    obs, action, reward, next_obs, term, task = batch[:6]
    torch.manual_seed(5)
    with torch.no_grad():
        enc = agent.encoder(next_obs, task)
        next_a, next_lp = agent.actor.sample(enc, task)
        next_q = sac.target["critic"](sac.target["encoder"](next_obs, task), next_a, task)
        alpha = torch.tensor([0.3, 0.3, 0.7, 0.7])
        y = reward + 0.9 * (1 - term) * (torch.minimum(next_q[0], next_q[1]) - alpha * next_lp)
        q = agent.critic(agent.encoder(obs, task), action, task)
        expected = ((q[0] - y) ** 2).mean() + ((q[1] - y) ** 2).mean()
    torch.manual_seed(5)
    metrics = sac.update(batch)
    assert metrics["loss/critic"].item() == pytest.approx(expected.item(), rel=1e-5)
    # the per-task critic losses and Q means the trainer logs, each over its task's samples
    per_sample = (q[0] - y) ** 2 + (q[1] - y) ** 2
    torch.testing.assert_close(
        metrics["per_task/critic_loss"], torch.stack([per_sample[:2].mean(), per_sample[2:].mean()])
    )
    torch.testing.assert_close(metrics["per_task/q_mean"], q.mean(0).view(2, 2).mean(1))


def test_temperatures_of_different_tasks_move_independently():
    agent = tiny_agent(num_tasks=3)
    sac = SAC(agent, num_tasks=3, act_dim=1, cfg=SACConfig())
    before = sac.log_alpha.detach().clone()
    sac.update(tiny_batch([0, 0, 0, 0]))  # only task 0 in the batch
    after = sac.log_alpha.detach()
    assert after[0] != before[0]
    assert torch.equal(after[1:], before[1:])
    # opposite entropy errors push the two temperatures in opposite directions
    log_alpha = torch.zeros(2, requires_grad=True)
    task = torch.tensor([0, 0, 1, 1])
    log_prob = torch.tensor([3.0, 3.0, -3.0, -3.0])  # task 0: too little entropy; task 1: too much
    temperature_loss(log_alpha[task], log_prob, target_entropy=-1.0).backward()
    assert log_alpha.grad[0] < 0 < log_alpha.grad[1]  # gradient descent raises alpha_0, lowers alpha_1


def test_task_weights_follow_meta_world_plus_and_weight_the_critic_loss():
    from mtrl.learner.sac import task_loss_weights

    log_alpha = torch.log(torch.tensor([0.3, 0.7]))
    w = task_loss_weights(log_alpha)
    # Meta-World+ MT-SAC: softmax(-log alpha) * T, i.e. proportional to 1/alpha, mean 1
    expected = (1 / torch.tensor([0.3, 0.7])) / (1 / torch.tensor([0.3, 0.7])).sum() * 2
    assert torch.allclose(w, expected) and w.mean().item() == pytest.approx(1.0)
    batch = tiny_batch([0, 0, 1, 1])
    losses = {}
    for weighted in (False, True):
        agent = tiny_agent()
        torch.manual_seed(0)
        agent.load_state_dict(tiny_agent().state_dict())  # same start for both
        sac = SAC(agent, 2, 1, SACConfig(max_grad_norm=None, task_weights=weighted))
        with torch.no_grad():
            sac.log_alpha.copy_(log_alpha)
        torch.manual_seed(5)
        critic_terms = sac.critic_terms(batch, log_alpha.exp()[batch.task])[0].detach()
        torch.manual_seed(5)
        losses[weighted] = sac.update(batch)["loss/critic"].item()
    assert losses[False] == pytest.approx(critic_terms.mean().item(), rel=1e-5)
    assert losses[True] == pytest.approx((critic_terms * w[batch.task]).mean().item(), rel=1e-5)


def test_encoder_tau_moves_the_target_encoder_at_its_own_rate():
    from mtrl.agents.care import CAREConfig, make_care
    from mtrl.envs.toy import ToyConfig, ToySuite
    from mtrl.learner.agent import EnvSpec

    suite = ToySuite(ToyConfig())
    spec = EnvSpec(2, 2, tuple(suite.task_names), tuple(suite.descriptions.values()), "toy", str(suite.embedding_file))
    agent = make_care(CAREConfig(hidden_sizes=[8], num_encoders=2), spec)
    sac = SAC(agent, 4, 2, SACConfig(tau=0.01, encoder_tau=0.05))
    with torch.no_grad():
        for p in agent.parameters():
            p.add_(1.0)
    before = {k: [p.clone() for p in sac.target[k].parameters()] for k in ("encoder", "critic")}
    sac.soft_update()
    for key, tau in (("encoder", 0.05), ("critic", 0.01)):
        moved = [(p - b).abs().max().item() for p, b in zip(sac.target[key].parameters(), before[key])]
        assert all(m == pytest.approx(tau, rel=1e-3) for m in moved), key
