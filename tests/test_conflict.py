"""Per-task gradient statistics, PCGrad and CAGrad."""

import numpy as np
import pytest
import torch

from mtrl.checkpoint import latest_checkpoint, load_checkpoint
from mtrl.conflict import cagrad, conflict_stats, pcgrad, per_task_gradients
from mtrl.logger import read_metrics
from mtrl.replay import MultiTaskReplay
from mtrl.sac import SAC
from mtrl.trainer import make_agent, make_spec, make_suite, train

from conftest import TOY_FAST, make_config


def test_pcgrad_on_hand_made_vectors_equals_the_formula():
    g = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])
    # g1 . g2 = -1 < 0: g1' = g1 - (-1 / 2) g2 = (0.5, 0.5); g2' = g2 - (-1 / 1) g1 = (0, 1)
    assert torch.allclose(pcgrad(g), torch.tensor([0.25, 0.75]))
    # no conflict: plain mean
    g = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    assert torch.allclose(pcgrad(g), torch.tensor([1.0, 0.5]))


def test_pcgrad_three_tasks_against_a_direct_implementation():
    gen = torch.Generator().manual_seed(0)
    g = torch.randn(3, 5, generator=gen)
    order_gen = torch.Generator().manual_seed(1)
    result = pcgrad(g, order_gen)
    order_gen = torch.Generator().manual_seed(1)
    expected = []
    for i in range(3):
        gi = g[i].clone()
        for j in torch.randperm(3, generator=order_gen).tolist():
            if j != i and gi @ g[j] < 0:
                gi = gi - (gi @ g[j]) / (g[j] @ g[j]) * g[j]
        expected.append(gi)
    assert torch.allclose(result, torch.stack(expected).mean(0), atol=1e-6)


def test_cagrad_is_the_mean_at_c_zero_and_helps_the_worst_task_otherwise():
    g = torch.tensor([[1.0, 0.0], [-0.9, 0.3], [0.2, 1.0]])
    assert torch.allclose(cagrad(g, c=0.0), g.mean(0))
    d = cagrad(g, c=0.5)
    assert (g @ d).min() > (g @ g.mean(0)).min()  # the worst task's first-order gain improves


def test_stats_cosine_conflicts_and_magnitude_similarity():
    g = torch.tensor([[1.0, 0.0], [-2.0, 0.0], [0.0, 3.0]])
    s = conflict_stats(g)
    assert torch.allclose(s.cosine, torch.tensor([[1.0, -1.0, 0.0], [-1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))
    assert s.conflicting_fraction == pytest.approx(1 / 3)
    assert s.magnitude_similarity[0, 1].item() == pytest.approx(2 * 1 * 2 / (1 + 4))
    assert s.norms.tolist() == [1.0, 2.0, 3.0]


def test_per_task_gradients_sum_to_the_batch_gradient():
    w = torch.tensor([1.0, -2.0], requires_grad=True)
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 0.0]])
    task = torch.tensor([0, 0, 1, 1])
    per_sample = (x @ w) ** 2
    rows = per_task_gradients(per_sample, task, 2, [w])
    (full,) = torch.autograd.grad(per_sample.mean(), [w])
    assert torch.allclose(rows.mean(0), full)  # equal counts: batch mean = mean of task means


def test_monitor_on_the_toy_suite_opposite_tasks_conflict_identical_tasks_agree(run_dir):
    # east, west, and east again; the task is hidden so identical tasks are the same problem
    cfg = make_config(TOY_FAST, run={"dir": str(run_dir)}, env={"num_tasks": 3, "goal_angles": [0, 180, 0]},
                      agent={"task_visible": False},
                      train={"total_steps": 3000, "eval_every": 0, "save_replay": True},
                      conflict={"monitor_every": 200})
    train(cfg)
    logged = [r for r in read_metrics(run_dir) if "conflict/critic/conflicting_fraction" in r]
    assert logged and "conflict/actor/grad_norm/reach-west" in logged[-1]
    # measure on a large batch, where sampling noise is small
    state = load_checkpoint(latest_checkpoint(run_dir))
    suite = make_suite(cfg)
    spec = make_spec(suite, suite.make_env(3, 0))
    agent = make_agent(cfg, spec, torch.device("cpu"))
    sac = SAC(agent, 3, 2, cfg.sac)
    sac.load_state_dict(state["sac"])
    replay = MultiTaskReplay(3, cfg.train.buffer_per_task, 2, 2)
    replay.load_state_dict(state["replay"])
    torch.manual_seed(0)
    cosine = sac.measure_conflicts(replay.sample(2000))["critic"].cosine
    assert cosine[0, 1] < 0 and cosine[1, 2] < 0  # east vs west
    assert cosine[0, 2] > 0.9  # east vs east


def test_pcgrad_with_learning_progress_and_the_monitor_still_solves_the_toy_suite(run_dir):
    cfg = make_config(TOY_FAST, run={"dir": str(run_dir)}, scheduler={"name": "learning_progress"},
                      conflict={"method": "pcgrad", "monitor_every": 500})
    result = train(cfg)
    assert result.final_eval.success_mean >= 0.9, result.final_eval.to_json()
    last = [r for r in read_metrics(run_dir) if "scheduler/probability/reach-east" in r][-1]
    probs = [last[f"scheduler/probability/{t}"] for t in ("reach-east", "reach-north", "reach-west", "reach-south")]
    assert np.isclose(sum(probs), 1.0)
    assert sum(last[f"scheduler/episodes/{t}"] for t in ("reach-east", "reach-north", "reach-west", "reach-south")) > 0
