"""Per-task gradient statistics and the aggregators (PCGrad, CAGrad, Nash-MTL, torchjd's)."""

import itertools
import math
import sys

import numpy as np
import pytest
import torch

from mtrl.builders import make_agent, make_spec, make_suite
from mtrl.checkpoint import latest_checkpoint, load_checkpoint
from mtrl.config import TORCHJD_METHODS
from mtrl.errors import ConfigError
from mtrl.learner.conflict import (
    METHODS,
    aggregate,
    cagrad,
    cagrad_dual,
    conflict_stats,
    nash_mtl_alpha,
    pcgrad,
    per_task_gradients,
)
from mtrl.learner.replay import MultiTaskReplay
from mtrl.learner.sac import SAC
from mtrl.training.logger import read_metrics
from mtrl.training.trainer import train

from conftest import TOY_FAST, make_config


def test_pcgrad_on_hand_made_vectors_equals_the_formula():
    g = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])
    # g1 . g2 = -1 < 0: g1' = g1 - (-1 / 2) g2 = (0.5, 0.5); g2' = g2 - (-1 / 1) g1 = (0, 1)
    assert torch.allclose(pcgrad(g), torch.tensor([0.25, 0.75]))
    # no conflict: plain mean
    g = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    assert torch.allclose(pcgrad(g), torch.tensor([1.0, 0.5]))


def direct_pcgrad(g: torch.Tensor, order_gen: torch.Generator) -> torch.Tensor:
    """PCGrad on the (T, P) rows, straight from the paper."""
    expected = []
    for i in range(g.shape[0]):
        gi = g[i].clone()
        for j in torch.randperm(g.shape[0], generator=order_gen).tolist():
            if j != i and gi @ g[j] < 0:
                gi = gi - (gi @ g[j]) / (g[j] @ g[j]) * g[j]
        expected.append(gi)
    return torch.stack(expected).mean(0)


def test_pcgrad_three_tasks_against_a_direct_implementation():
    gen = torch.Generator().manual_seed(0)
    g = torch.randn(3, 5, generator=gen)
    result = pcgrad(g, torch.Generator().manual_seed(1))
    assert torch.allclose(result, direct_pcgrad(g, torch.Generator().manual_seed(1)), atol=1e-6)


def test_cagrad_is_the_mean_at_c_zero_and_helps_the_worst_task_otherwise():
    g = torch.tensor([[1.0, 0.0], [-0.9, 0.3], [0.2, 1.0]])
    assert torch.allclose(cagrad(g, c=0.0), g.mean(0))
    d = cagrad(g, c=0.5)
    assert (g @ d).min() > (g @ g.mean(0)).min()  # the worst task's first-order gain improves


C = 0.5


def random_gradient_sets(n: int = 100, seed: int = 0) -> list[torch.Tensor]:
    """T in 2..10 tasks, a shared component with random signs, norms spread over e^{+-1.5};
    every 4th set has a strongly conflicting pair g_1 = -k g_0 + small noise."""
    rng = np.random.default_rng(seed)
    sets = []
    for k in range(n):
        t, p = int(rng.integers(2, 11)), 64
        g = rng.uniform(-0.5, 1.5, (t, 1)) * rng.normal(size=p) + rng.normal(size=(t, p))
        g *= np.exp(rng.uniform(-1.5, 1.5, (t, 1)))
        if k % 4 == 3:
            g[1] = -rng.uniform(0.5, 3.0) * g[0] + 0.3 * np.linalg.norm(g[0]) / math.sqrt(p) * rng.normal(size=p)
        sets.append(torch.from_numpy(g))
    return sets


def dual_objective(w: np.ndarray, gram: np.ndarray) -> float:
    """CAGrad's F(w) = g_w . g0 + c |g0| |g_w|."""
    return float(w @ gram.mean(1) + C * math.sqrt(gram.mean()) * math.sqrt(max(w @ gram @ w, 0.0)))


def brute_force_cagrad(gram: np.ndarray) -> np.ndarray:
    """Exhaustive search over the support S of w. On S's affine hull, a minimiser of F has
    b_S + c|g0| G_SS w_S / s = l 1 (b = G 1 / T, s = |g_w|), so w_S = s / (c|g0|) G_SS^-1 (l 1 - b_S),
    and 1.w = 1, w.G.w = s^2 leave l the larger root of a quadratic. The optimum is the feasible
    candidate with the lowest F (its face's relative interior holds it)."""
    t = len(gram)
    b, radius = gram.mean(1), C * math.sqrt(gram.mean())
    best, best_w = math.inf, None
    for k in range(1, t + 1):
        for support in itertools.combinations(range(t), k):
            s = list(support)
            inv_ones, inv_b = np.linalg.solve(gram[np.ix_(s, s)], np.stack([np.ones(k), b[s]], 1)).T
            qa, qb, qc = inv_ones.sum(), inv_b.sum(), b[s] @ inv_b - radius**2  # qa l^2 - 2 qb l + qc = 0
            disc = qb**2 - qa * qc
            if disc <= 0:
                continue
            lam = (qb + math.sqrt(disc)) / qa
            w_s = (lam * inv_ones - inv_b) / (lam * qa - qb)
            if w_s.min() < 0:
                continue
            w = np.zeros(t)
            w[s] = w_s
            if dual_objective(w, gram) < best:
                best, best_w = dual_objective(w, gram), w
    return best_w


@pytest.fixture(scope="module")
def cagrad_references():
    """(gradients, Gram matrix, brute-force w*) for 100 random sets; the references are checked
    against the KKT conditions and against 2000 random points of the simplex."""
    rng = np.random.default_rng(1)
    refs = []
    for g in random_gradient_sets():
        gram = (g @ g.T).numpy()
        w = brute_force_cagrad(gram)
        gw = gram @ w
        grad = gram.mean(1) + C * math.sqrt(gram.mean()) * gw / math.sqrt(w @ gw)
        lam, tol = grad @ w, 1e-8 * np.abs(grad).max()
        assert np.all(np.abs(grad[w > 0] - lam) <= tol) and np.all(grad[w == 0] >= lam - tol)
        samples = rng.dirichlet(np.full(len(w), 0.5), 2000)
        assert dual_objective(w, gram) <= min(dual_objective(v, gram) for v in samples) + 1e-12
        refs.append((g, gram, w))
    return refs


def cagrad_accuracy(refs, solve) -> tuple[list[float], list[float]]:
    """Relative errors of the dual objective and of the unscaled direction g0 + c|g0| g_w/|g_w|;
    ``solve(g)`` returns (simplex weights w, unscaled direction)."""
    dual, direction = [], []
    for g, gram, w_ref in refs:
        f_ref = dual_objective(w_ref, gram)
        g0 = g.mean(0)
        gw = torch.from_numpy(w_ref) @ g
        d_ref = g0 + C * g0.norm() / gw.norm() * gw
        w, d = solve(g)
        dual.append(abs(dual_objective(np.asarray(w, dtype=np.float64), gram) - f_ref) / abs(f_ref))
        direction.append(float((d - d_ref).norm() / d_ref.norm()))
    return dual, direction


def test_cagrad_agrees_with_brute_force_on_100_random_gradient_sets(cagrad_references):
    def solve(g):
        return cagrad_dual((g @ g.T).numpy(), C), cagrad(g, C) * (1 + C)  # cagrad divides by 1 + c

    dual, direction = cagrad_accuracy(cagrad_references, solve)
    assert max(dual) < 0.01 and max(direction) < 0.01, (max(dual), max(direction))


def old_exponentiated_gradient_cagrad(g: torch.Tensor, iterations: int = 50):
    """mtrl's CAGrad solver before torchjd/the exact solver: fixed-step exponentiated gradient."""
    gram = g @ g.T
    g0_norm = (gram.mean() + 1e-12).sqrt()
    b = gram.mean(1)
    w = torch.full((g.shape[0],), 1.0 / g.shape[0], dtype=g.dtype)
    for _ in range(iterations):
        grad_w = b + C * g0_norm * (gram @ w) / (w @ gram @ w + 1e-12).sqrt()
        w = w * torch.exp(-grad_w / (grad_w.abs().max() + 1e-12))
        w = w / w.sum()
    gw = w @ g
    return w.numpy(), g.mean(0) + C * g0_norm / gw.norm() * gw


def test_the_accuracy_check_rejects_the_old_exponentiated_gradient_solver(cagrad_references):
    dual, direction = cagrad_accuracy(cagrad_references, old_exponentiated_gradient_cagrad)
    failed = sum(d > 0.01 or e > 0.01 for d, e in zip(dual, direction))
    assert failed >= 20, failed


def test_pcgrad_matches_the_direct_implementation_on_random_gradient_sets():
    for k, g in enumerate(random_gradient_sets(30, seed=2)):
        result = pcgrad(g, torch.Generator().manual_seed(k))
        expected = direct_pcgrad(g, torch.Generator().manual_seed(k))
        assert torch.allclose(result, expected, rtol=1e-9, atol=1e-9 * float(g.norm(dim=1).max()))


def test_nash_mtl_weights_satisfy_the_bargaining_condition():
    for g in random_gradient_sets(30, seed=3):
        gram = (g @ g.T).numpy()
        alpha = nash_mtl_alpha(gram)
        assert np.all(alpha > 0) and np.allclose(alpha * (gram @ alpha), 1.0, atol=1e-8)


def needs(method: str) -> None:
    for module in TORCHJD_METHODS.get(method, ((),))[0]:
        pytest.importorskip(module, reason="the conflict extra is not installed")


@pytest.mark.parametrize("method", METHODS)
def test_every_method_returns_the_mean_gradient_scale(method):
    needs(method)
    g = torch.tensor([0.3, -1.0, 2.0, 0.5, 0.0])
    out = aggregate(g.repeat(4, 1), method, C, torch.Generator().manual_seed(0))
    assert out.shape == (5,) and out.dtype == torch.float32
    assert torch.allclose(out, g, atol=1e-5)  # identical tasks: the common gradient
    grads = random_gradient_sets(1, seed=4)[0].float()
    out = aggregate(grads, method, C, torch.Generator().manual_seed(0))
    assert out.shape == (64,) and torch.isfinite(out).all()
    # scale-equivariant down to tiny gradients (no absolute tolerance inside)
    small = aggregate(grads * 1e-4, method, C, torch.Generator().manual_seed(0))
    assert torch.allclose(small * 1e4, out, rtol=1e-3, atol=1e-4 * float(out.abs().max()))


@pytest.mark.parametrize("method", METHODS)
def test_every_method_drives_a_sac_update(method):
    needs(method)
    cfg = make_config(TOY_FAST, conflict={"method": method})
    suite = make_suite(cfg)
    spec = make_spec(suite, suite.make_env(4, 0))
    torch.manual_seed(0)
    sac = SAC(make_agent(cfg, spec, torch.device("cpu")), 4, spec.act_dim, cfg.sac, cfg.conflict)
    replay = MultiTaskReplay(4, 100, spec.obs_dim, spec.act_dim)
    rng = np.random.default_rng(0)
    for _ in range(20):
        replay.add(
            np.arange(4),
            rng.normal(size=(4, spec.obs_dim)),
            rng.uniform(-1, 1, (4, spec.act_dim)),
            rng.normal(size=4),
            rng.normal(size=(4, spec.obs_dim)),
            np.zeros(4, bool),
        )
    before = [p.detach().clone() for p in sac.shared["critic"]]
    metrics = sac.update(replay.sample(16))
    assert all(torch.isfinite(v).all() for v in metrics.values())
    assert any(not torch.equal(b, p) for b, p in zip(before, sac.shared["critic"]))


@pytest.mark.parametrize(
    "method, missing",
    [("upgrad", "quadprog"), ("upgrad", "torchjd"), ("imtl_g", "torchjd"), ("aligned_mtl", "torchjd")],
)
def test_a_missing_optional_dependency_is_a_one_line_config_error(monkeypatch, method, missing):
    monkeypatch.setitem(sys.modules, missing, None)  # makes `import missing` raise ImportError
    with pytest.raises(ConfigError) as error:
        aggregate(torch.randn(3, 4), method)
    message = str(error.value)
    assert "\n" not in message and missing in message and "[conflict]" in message and "pip install" in message, message


def test_our_own_methods_need_no_optional_dependency(monkeypatch):
    for module in ("torchjd", "quadprog", "qpsolvers", "cvxpy", "scipy"):
        monkeypatch.setitem(sys.modules, module, None)
    for method in set(METHODS) - set(TORCHJD_METHODS):
        assert aggregate(torch.randn(3, 4), method).shape == (4,)


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
    cfg = make_config(
        TOY_FAST,
        run={"dir": str(run_dir)},
        env={"num_tasks": 3, "goal_angles": [0, 180, 0]},
        agent={"task_visible": False},
        train={"total_steps": 3000, "eval_every": 0, "save_replay": True},
        conflict={"monitor_every": 200},
    )
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
    cfg = make_config(
        TOY_FAST,
        run={"dir": str(run_dir)},
        scheduler={"name": "learning_progress"},
        conflict={"method": "pcgrad", "monitor_every": 500},
    )
    result = train(cfg)
    assert result.final_eval.success_mean >= 0.9, result.final_eval.to_json()
    last = [r for r in read_metrics(run_dir) if "scheduler/probability/reach-east" in r][-1]
    probs = [last[f"scheduler/probability/{t}"] for t in ("reach-east", "reach-north", "reach-west", "reach-south")]
    assert np.isclose(sum(probs), 1.0)
    assert sum(last[f"scheduler/episodes/{t}"] for t in ("reach-east", "reach-north", "reach-west", "reach-south")) > 0
