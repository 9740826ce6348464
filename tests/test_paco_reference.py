"""PaCo's extreme-task masking and reset against a transcription of its reference code
(TToTMooN/paco-mtrl, paco/algorithms/paco_mtsac.py, with metaworld_mt10_paco_conf.py's settings):
the total loss it thresholds, the random convex combination it resets a task's w to, log alpha
kept in [-10, 0]; the configs that turn it on, and a resumed run."""

import pytest
import torch
from test_architectures import ACT, T, batch, make_agent
from torch.nn import functional as F

from mtrl.config import SACConfig, load_config
from mtrl.learner.sac import SAC
from mtrl.learner.task_weighting import task_means

from conftest import TOY_FAST, assert_resumes_exactly

REFERENCE = {"task_loss_mask": "total", "task_reset": "convex", "log_alpha_min": -10.0, "log_alpha_max": 0.0}


def paco_sac(**cfg) -> SAC:
    torch.manual_seed(4)
    return SAC(make_agent("paco"), T, ACT, SACConfig(**cfg))


def reference_task_loss(sac: SAC, b, critic_per_sample: torch.Tensor) -> torch.Tensor:
    """(T,) the per-task loss paco_mtsac.py thresholds, for transitions that are each the first
    step of one of ALF's 2-step minibatches whose second step has the same state: train_step
    (_predict_action, _actor_train_step, _alpha_train_step with _get_log_alpha's clamp_min at
    min_log_alpha = -10), calc_loss (actor + critic + alpha), the TD loss padded with zero at the
    last step (ALF's TDLoss: tensor_extend_zero), then _convert_loss_into_task_loss (the mean
    over time, then over each task's samples)."""
    agent, task = sac.agent, b.task
    action, log_pi = agent.actor.sample(agent.actor_features(b.obs, task), task)
    critics = agent.critic(agent.encoder(b.obs, task), action, task)  # (replicas, B)
    q_value = critics.min(dim=0)[0]
    dqda = torch.autograd.grad(q_value.sum(), action)[0]
    actor_loss = 0.5 * F.mse_loss((dqda + action).detach(), action, reduction="none").sum(-1)
    log_alpha = torch.clamp_min(sac.log_alpha[task], -10.0)
    actor = actor_loss + torch.exp(log_alpha).detach() * log_pi
    alpha = log_alpha * (-log_pi - sac.target_entropy).detach()
    loss = torch.stack([actor + critic_per_sample + alpha, actor + 0.0 + alpha])  # [T=2, B]
    loss = torch.mean(loss, dim=0).unsqueeze(-1)
    task_loss = torch.zeros((T, 1), dtype=torch.float).scatter_add_(0, task.unsqueeze(1), loss)
    return (task_loss / torch.bincount(task, minlength=T).unsqueeze(1).float()).squeeze(1).detach()


def test_paco_masks_each_task_on_the_references_total_loss():
    log_alpha = torch.tensor([-11.0, -2.0, 0.0])  # the first below PaCo's floor
    b = batch(seed=3)._replace(reward=torch.linspace(-20, 20, 15))  # tasks with different TD losses
    probe = paco_sac(task_loss_threshold=1.0, **REFERENCE)
    with torch.no_grad():
        probe.log_alpha.copy_(log_alpha)
    alpha = probe.alphas()[b.task]
    torch.manual_seed(3)
    critic = probe.critic_terms(b, alpha)[0].detach()  # draws the target's actions, as the update does first
    reference = reference_task_loss(probe, b, critic)
    torch.manual_seed(3)
    probe.critic_terms(b, alpha)
    ours = task_means(probe.total_terms(b, alpha, critic), b.task, T)[0]
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)
    threshold = float(reference.median())  # strictly above it: the worst task
    critic_means = task_means(critic, b.task, T)[0]
    assert not torch.equal(reference > threshold, critic_means > threshold)  # the two losses disagree here
    for mask, expected in (("total", reference > threshold), ("critic", critic_means > threshold)):
        sac = paco_sac(task_loss_threshold=threshold, **{**REFERENCE, "task_loss_mask": mask})
        with torch.no_grad():
            sac.log_alpha.copy_(log_alpha)
        torch.manual_seed(3)
        sac.update(b)
        assert sac.last_masked.tolist() == expected.tolist(), mask


def test_paco_reset_is_the_references_random_convex_combination_of_the_healthy_tasks():
    sac = paco_sac(task_reset="convex")
    sac.update(batch(seed=1))  # Adam has state now
    before = {k: v.clone() for k, v in sac.agent.state_dict().items()}
    log_alpha, opt_state = sac.log_alpha.detach().clone(), str(sac.actor_opt.state_dict()["state"])
    masked = torch.tensor([False, True, False])
    torch.manual_seed(7)
    sac.reset_tasks(masked)
    torch.manual_seed(7)  # after_update with reset_task_method="interpolate", transcribed:
    extreme_task_set, normal_task_set = torch.arange(T)[masked], torch.arange(T)[~masked]
    interpolate_weight = torch.rand((extreme_task_set.shape[0], normal_task_set.shape[0]))
    interpolate_weight = F.normalize(interpolate_weight, p=1, dim=-1)
    after, target = sac.agent.state_dict(), dict(sac.target.named_parameters())
    for name in ("actor.net.w", "critic.net.w"):  # one draw for all: the reference has one task encoder
        for member, w in enumerate(before[name]):  # w: (T, K); the reference's fc._weight is (K, T)
            new_weight = w.T.clone()
            new_weight[:, masked] = new_weight[:, ~masked] @ interpolate_weight.T
            torch.testing.assert_close(after[name][member], new_weight.T, rtol=1e-6, atol=1e-7)
    assert torch.equal(target["critic.net.w"][:, 1], after["critic.net.w"][:, 1])  # the target's w takes the new one
    assert all(torch.equal(v, before[k]) for k, v in after.items() if not k.endswith(".w"))  # the sets
    assert torch.equal(sac.log_alpha, log_alpha) and str(sac.actor_opt.state_dict()["state"]) == opt_state


@pytest.mark.parametrize("target_entropy, bound", [(-50.0, -10.0), (50.0, 0.0)])
def test_log_alpha_stays_within_the_references_bounds(target_entropy, bound):
    """_get_log_alpha: the losses read clamp_min(log alpha, -10), with no gradient below it, so
    a log alpha under -10 stays there; after_update: log alpha <- min(log alpha, 0). A fast
    temperature drives the others to one bound."""
    sac = paco_sac(**REFERENCE, alpha_lr=0.5, target_entropy=target_entropy)
    with torch.no_grad():
        sac.log_alpha.copy_(torch.tensor([-12.0, -3.0, 0.5]))
    assert torch.allclose(sac.alphas(), torch.tensor([-10.0, -3.0, 0.5]).exp())
    sac.update(batch(seed=0))
    assert sac.log_alpha[0] == -12.0 and sac.log_alpha[2] <= 0.0  # no gradient below the floor; clipped above
    for seed in range(1, 40):
        sac.update(batch(seed=seed))
        assert (sac.effective_log_alpha() >= -10.0).all() and (sac.log_alpha <= 0.0).all()
    assert torch.equal(sac.effective_log_alpha().detach(), torch.tensor([-10.0, bound, bound]))


def test_paco_configs_mask_as_the_reference_and_no_other_agent_masks_by_default():
    def masking(name: str) -> tuple:
        s = load_config(name).sac
        return s.task_loss_threshold, s.task_loss_mask, s.task_reset, s.log_alpha_min, s.log_alpha_max

    for name in ("toy-paco", "mt10-paco", "mt50-paco"):
        assert masking(name) == (3e3, "total", "convex", -10.0, 0.0), name
    studies = [f"study-mt10-{a}" for a in ("mtsac", "care", "softmod", "moore", "paco", "brc", "softshare")]
    for name in ["screen-mt10-mtsac", *studies]:  # as their committed rows ran
        assert masking(name) == (3e3, "critic", "mean", None, None), name
    for name in ("toy-mtsac", "mt10-1m-mtsac", "mt10-1m-care", "mt10-care"):
        assert masking(name)[0] is None, name


def test_a_resumed_paco_run_with_the_references_masking_logs_what_an_uninterrupted_one_does(tmp_path):
    records = assert_resumes_exactly(
        tmp_path,
        TOY_FAST,
        agent={"name": "paco", "hidden_sizes": [32, 32], "num_sets": 2},
        sac={"task_loss_threshold": 5.0, **REFERENCE},  # low enough to mask and reset on the toy suite
        train={"divergence_patience": 100_000},
    )
    assert sum(r.get("divergence/masked_tasks", 0.0) for r in records) > 0
