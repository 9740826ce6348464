"""sac.task_weighting (mtrl/learner/task_weighting.py, wired by mtrl/learner/loss_terms.py): each
method against a transcription of its reference code (Cranial-XIX/FAMO: famo.py, and its MT10
agents mtrl_files/famo.py and mtrl_files/uw.py), their state across checkpoints and resumes."""

import copy

import pytest
import torch
from test_sac_losses import tiny_agent, tiny_batch
from torch.nn import functional as F

from mtrl.config import SACConfig
from mtrl.learner.sac import SAC
from mtrl.learner.task_weighting import TaskWeighting, task_means

from conftest import TOY_FAST, assert_resumes_exactly


class FAMOReference:
    """The FAMO weighting of Liu et al. 2023 as its reference code (Cranial-XIX/FAMO,
    famo.py) computes it, transcribed: min_losses = 0, Adam on w with weight decay gamma."""

    def __init__(self, n_tasks, w_lr=0.025, gamma=0.001):
        self.w = torch.zeros(n_tasks, requires_grad=True)
        self.w_opt = torch.optim.Adam([self.w], lr=w_lr, weight_decay=gamma)
        self.min_losses = torch.zeros(n_tasks)

    def get_weighted_loss(self, losses):
        self.prev_loss = losses
        z = torch.softmax(self.w, -1)
        D = losses - self.min_losses + 1e-8
        c = (z / D).sum().detach()
        return (D.log() * z / c).sum()

    def update(self, curr_loss):
        delta = (self.prev_loss - self.min_losses + 1e-8).log() - (curr_loss - self.min_losses + 1e-8).log()
        with torch.enable_grad():
            d = torch.autograd.grad(torch.softmax(self.w, -1), self.w, grad_outputs=delta.detach())[0]
        self.w_opt.zero_grad()
        self.w.grad = d
        self.w_opt.step()


def _per_sample(losses: torch.Tensor, n: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample terms whose per-task means are ``losses``."""
    task = torch.arange(len(losses)).repeat_interleave(n)
    return losses[task] * (1 + 0.1 * torch.tensor([-1.0, 1.0]).repeat(len(task) // 2)), task


def test_famo_next_batch_weights_and_logits_follow_the_reference_code():
    """sac.famo_update=next_batch (mtrl before issue 22): the generic famo.py's update, fed the
    next update's losses."""
    torch.manual_seed(0)
    ours, ref = TaskWeighting("famo", 3, famo_decay=1e-3, famo_update="next_batch"), FAMOReference(3)
    for step in range(6):
        losses = torch.rand(3) * 5 + 0.1
        per_sample, task = _per_sample(losses)
        if step:  # the reference updates w with this step's losses before weighting them
            ref.update(losses)
        param = losses.clone().requires_grad_(True)
        ref.get_weighted_loss(param).backward()  # d loss / d L_t: the weight FAMO puts on L_t
        w = ours.weights(per_sample, task)
        assert torch.allclose(w, param.grad * 3, atol=1e-5), step  # ours have mean 1
        assert torch.allclose(ours.logits.detach(), ref.w.detach(), atol=1e-6)
    assert not torch.allclose(ours.logits, torch.zeros(3))  # it moved


def test_uncertainty_weights_tend_to_inverse_losses():
    losses = torch.tensor([0.5, 2.0, 8.0])
    weighting = TaskWeighting("uncertainty", 3, lr=0.05)
    per_sample, task = _per_sample(losses)
    for _ in range(3000):
        w = weighting.weights(per_sample, task)
    expected = (1 / losses) / (1 / losses).mean()  # exp(-s) -> 1 / L at the optimum of 1/2 (e^-s L + s)
    assert torch.allclose(w, expected, rtol=0.02), (w, expected)
    assert torch.allclose(weighting.logits.detach(), losses.log(), atol=0.02)


def test_inverse_size_makes_every_task_count_the_same_and_none_is_one():
    task = torch.tensor([0] * 6 + [1] * 2 + [2] * 0 + [3] * 4)
    per_sample = torch.rand(len(task))
    w = TaskWeighting("inverse_size", 4).weights(per_sample, task)
    counts = torch.bincount(task, minlength=4)
    assert w[2] == 0 and torch.allclose((w * counts).sum(), torch.tensor(float(len(task))))
    assert torch.allclose(w[0] * 6, w[1] * 2) and torch.allclose(w[1] * 2, w[3] * 4)  # equal total weight per task
    weighted_mean = (per_sample * w[task]).mean()
    means = torch.stack([per_sample[task == t].mean() for t in (0, 1, 3)])
    assert torch.allclose(weighted_mean, means.mean())
    assert torch.equal(TaskWeighting("none", 4).weights(per_sample, task), torch.tensor([1.0, 1.0, 0.0, 1.0]))


@pytest.mark.parametrize("kind", ["inverse_size", "uncertainty", "famo"])
def test_task_weighting_weights_the_critic_loss_and_survives_a_checkpoint(kind):
    torch.manual_seed(1)
    sac = SAC(tiny_agent(3), 3, 1, SACConfig(task_weighting=kind))
    batch = tiny_batch([0] * 6 + [1] * 2 + [2] * 4)
    for _ in range(3):
        sac.update(batch)
    w = sac.weighting.last
    assert w.shape == (3,) and torch.allclose(w[batch.task].mean(), torch.tensor(1.0), atol=1e-5)
    state = sac.state_dict()
    other = SAC(tiny_agent(3), 3, 1, SACConfig(task_weighting=kind))
    other.load_state_dict(state)
    assert torch.equal(other.weighting.logits, sac.weighting.logits)
    if kind == "uncertainty":  # the actor's own log-variances travel too
        own, restored = sac.terms.actor_weighting, other.terms.actor_weighting
        assert not torch.equal(own.logits, torch.zeros(3)) and torch.equal(restored.logits, own.logits)
        assert restored.opt.state_dict()["state"][0]["step"] == own.opt.state_dict()["state"][0]["step"]


def update_seen_terms(sac: SAC, batch) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """(the critic's and the actor's per-sample terms of ``sac.update(batch)``, its metrics): the
    terms recomputed beforehand from the same random draws, which needs ``sac.critic_lr=0`` (the
    critic then stays as it was through the update)."""
    alpha = sac.alphas()[batch.task]
    torch.manual_seed(5)
    critic_terms = sac.critic_terms(batch, alpha)[0].detach()
    actor_terms = sac.actor_terms(batch.obs, batch.task, alpha)[0].detach()
    torch.manual_seed(5)
    return critic_terms, actor_terms, sac.update(batch)


@pytest.mark.parametrize(
    "kind, on_actor, weighted",
    [
        ("inverse_size", True, True),
        ("inverse_size", False, False),
        ("inverse_size", None, True),
        ("famo", None, False),  # the reference's MT10 agent: update_actor_and_alpha takes the plain mean
        ("famo", True, True),
    ],
)
def test_task_weighting_actor_decides_whether_the_critics_weights_scale_the_actor_terms(kind, on_actor, weighted):
    batch = tiny_batch([0] * 6 + [1] * 2)  # unbalanced: inverse_size weights 8/12 and 8/4
    cfg = SACConfig(task_weighting=kind, task_weighting_actor=on_actor, critic_lr=0.0, max_grad_norm=None)
    sac = SAC(tiny_agent(), 2, 1, cfg)
    critic_terms, actor_terms, metrics = update_seen_terms(sac, batch)
    w = sac.weighting.last[batch.task]
    if kind == "inverse_size":
        assert torch.allclose(w, torch.tensor([8 / 12, 8 / 4])[batch.task])
    assert metrics["loss/critic"].item() == pytest.approx((critic_terms * w).mean().item(), rel=1e-5)
    expected = (actor_terms * w).mean() if weighted else actor_terms.mean()
    assert metrics["loss/actor"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert abs((actor_terms * w).mean() - actor_terms.mean()) > 1e-3  # the two cases differ
    assert sac.terms.actor_weighting is None


@pytest.mark.parametrize("kind", ["inverse_size", "uncertainty", "famo"])
def test_a_task_with_a_non_finite_loss_does_not_poison_the_weighting(kind):
    weighting = TaskWeighting(kind, 3)
    for step in range(4):
        losses = torch.tensor([1.0, float("nan") if step == 2 else 2.0, 3.0])
        per_sample, task = _per_sample(losses)
        w = weighting.weights(per_sample, task)
        assert torch.isfinite(w).all() and torch.isfinite(weighting.logits).all()
        if step == 2:
            assert w[1] == 0 and torch.allclose((w[task]).mean(), torch.tensor(1.0))


# ------------------------------------------------- the MT10 agents of Cranial-XIX/FAMO (mtrl_files/)


def balanced_batch(seed: int, num_tasks: int = 3, per_task: int = 4):
    """tiny_batch's shapes with ``per_task`` samples of each task and rewards drawn from ``seed``."""
    batch = tiny_batch([t for t in range(num_tasks) for _ in range(per_task)])
    return batch._replace(reward=torch.randn(len(batch.task), generator=torch.Generator().manual_seed(seed)) * 3)


class FAMOMT10Reference:
    """FAMO in the FAMO repository's MT10 agent (mtrl_files/famo.py, ``Agent.update_critic``),
    transcribed: logits ``critic_weights``, Adam(lr=w_lr, weight_decay=gamma) (its run.sh: gamma
    0.01, w_lr 0.025); the critic's loss sum_t z_t log(L_t + 1e-8) c, c = sum_t z_t / (L_t + 1e-8);
    after the critic's step the same batch's losses L'_t again (``current_Q1_``, the same
    ``target_Q``) and a logit step along softmax's vector-Jacobian product with
    log(L + 1e-8) - log(L' + 1e-8)."""

    def __init__(self, n_tasks, w_lr=0.025, gamma=0.01):
        self.critic_weights = torch.tensor([0.0] * n_tasks, requires_grad=True)
        self.critic_weights_opt = torch.optim.Adam([self.critic_weights], lr=w_lr, weight_decay=gamma)

    def loss_weights(self, task_loss):
        """d real_backprop_loss / d L_t: the weight the critic's step puts on each task's loss."""
        task_loss = task_loss.clone().requires_grad_(True)
        weights = F.softmax(self.critic_weights, -1)
        c = (weights / (task_loss + 1e-8)).sum().detach()
        torch.sum(weights * (task_loss + 1e-8).log() * c).backward()
        return task_loss.grad

    def update(self, task_loss, task_loss_):
        self.critic_weights_opt.zero_grad()
        with torch.enable_grad():
            delta = (task_loss + 1e-8).log() - (task_loss_ + 1e-8).log()
            d = torch.autograd.grad(
                F.softmax(self.critic_weights, -1), self.critic_weights, grad_outputs=delta.detach()
            )[0]
        self.critic_weights.grad = d
        self.critic_weights_opt.step()


def test_famo_learns_from_its_update_batch_across_the_critic_step_as_the_reference_mt10_agent():
    sac = SAC(tiny_agent(3), 3, 1, SACConfig(task_weighting="famo"))  # defaults: same_batch, decay 0.01
    reference = FAMOMT10Reference(3)
    for seed in range(5):
        batch = balanced_batch(seed)
        alpha = sac.alphas()[batch.task]
        target = sac._critic_target(batch, alpha)
        first_pass = sac.critic_terms(batch, alpha, target)
        before = task_means(first_pass[0], batch.task, 3)[0]
        expected = reference.loss_weights(before)
        terms = sac.terms.prepare(sac.log_alpha, first_pass[0], batch.task)
        assert torch.allclose(sac.weighting.last, expected / expected.mean(), rtol=1e-5), seed  # ours: mean 1
        sac.update_critic(batch, alpha, terms, target=target)
        reference.update(before, task_means(sac.critic_terms(batch, alpha, target)[0], batch.task, 3)[0])
        assert torch.allclose(sac.weighting.logits, reference.critic_weights, atol=1e-6), seed
    assert not torch.allclose(sac.weighting.logits, torch.zeros(3))  # it moved


class UWMT10Reference:
    """One log-sigma vector of the FAMO repository's uncertainty-weighting MT10 agent
    (mtrl_files/uw.py: ``critic_logsigma`` with the critic's per-task losses, ``actor_logsigma``
    with the actor's), transcribed: Adam(lr=w_lr) on s (uw_state_sac.yaml: w_lr 0.01); the
    network's loss sum_t 1/2 (exp(-s_t) L_t + s_t), backpropagated into the network and s together."""

    def __init__(self, n_tasks, w_lr=0.01):
        self.logsigma = torch.tensor([0.0] * n_tasks, requires_grad=True)
        self.optimizer = torch.optim.Adam([self.logsigma], lr=w_lr)

    def step(self, task_loss):
        """The weight the network's step puts on each L_t; then s's step."""
        task_loss = task_loss.clone().requires_grad_(True)
        self.optimizer.zero_grad()
        all_loss = (0.5 * (torch.exp(-self.logsigma) * task_loss + self.logsigma)).sum()
        all_loss.backward()
        self.optimizer.step()
        return task_loss.grad


def test_uncertainty_log_variances_follow_the_reference_also_for_negative_losses():
    """The actor's per-task losses are mostly negative: the reference's s then falls until Adam's
    second moment overflows, and stays there (finite); ours follows it step for step."""
    torch.manual_seed(0)
    ours, reference = TaskWeighting("uncertainty", 3, lr=0.025), UWMT10Reference(3, w_lr=0.025)
    steps = [torch.rand(3) * 60 - 50 for _ in range(50)] + [torch.tensor([-100.0, -50.0, 2.0])] * 1500
    for losses in steps:
        w = ours.weights(*_per_sample(losses))
        expected = reference.step(losses)
        assert torch.allclose(w, expected / expected.mean(), rtol=1e-5)
        assert torch.allclose(ours.logits, reference.logsigma, rtol=1e-6, atol=1e-6)
    assert ours.logits[0] < -40 and w[2] < 1e-15  # frozen where the reference's Adam overflowed
    assert all(torch.isfinite(v).all() for v in ours.state_dict()["opt"]["state"][0].values())  # checkpointable
    restored = TaskWeighting("uncertainty", 3, lr=0.025)
    restored.load_state_dict(copy.deepcopy(ours.state_dict()))  # as a checkpoint file would: no shared tensors
    losses = torch.tensor([-100.0, -50.0, 2.0])
    assert torch.equal(restored.weights(*_per_sample(losses)), ours.weights(*_per_sample(losses)))
    assert torch.equal(restored.logits, ours.logits) and restored.frozen.tolist() == [True, True, False]


def test_uncertainty_fits_the_actor_its_own_log_variances_as_the_reference_mt10_agent():
    """sac.task_weighting_actor=null: the critic's log-sigma weighs the critic's terms, a second one,
    fitted on the actor's per-task losses, the actor's (mtrl_files/uw.py update_actor_and_alpha)."""
    batch = balanced_batch(0, num_tasks=2)
    sac = SAC(tiny_agent(), 2, 1, SACConfig(task_weighting="uncertainty", critic_lr=0.0, max_grad_norm=None))
    critic_ref, actor_ref = UWMT10Reference(2), UWMT10Reference(2)
    with torch.no_grad():
        for weighting, ref, s in (
            (sac.weighting, critic_ref, [0.4, -0.2]),
            (sac.terms.actor_weighting, actor_ref, [-0.5, 0.5]),
        ):
            weighting.logits.copy_(torch.tensor(s))
            ref.logsigma.copy_(torch.tensor(s))
    critic_terms, actor_terms, metrics = update_seen_terms(sac, batch)
    for terms, ref, weighting, key in (
        (critic_terms, critic_ref, sac.weighting, "loss/critic"),
        (actor_terms, actor_ref, sac.terms.actor_weighting, "loss/actor"),
    ):
        expected = ref.step(task_means(terms, batch.task, 2)[0])
        w = (expected / expected.mean())[batch.task]
        assert metrics[key].item() == pytest.approx((terms * w).mean().item(), rel=1e-5), key
        assert torch.allclose(weighting.logits, ref.logsigma, atol=1e-6), key


@pytest.mark.parametrize("kind", ["famo", "uncertainty"])
def test_a_resumed_run_with_task_weighting_logs_what_an_uninterrupted_one_does(kind, tmp_path):
    records = assert_resumes_exactly(tmp_path, TOY_FAST, sac={"task_weighting": kind})
    assert any("task_weight_actor/reach-east" in r for r in records) == (kind == "uncertainty")
