"""Gradient aggregators (conflict.method) at MT10-sized shared parameters: time per call, and
CAGrad's accuracy against a brute-force solution of its dual.

    python benchmarks/aggregators.py [--tasks 4 10 50] [--params 300000] [--sets 30] [--repeats 7]

Times are medians over ``--repeats`` calls of (T, P) float32 gradients -> (P,) direction, Gram
matrix included, on one thread. Compared: mtrl's solvers before this change ("old": CAGrad by
exponentiated gradient with a fixed step, 50 iterations; PCGrad on the (T, P) rows), torchjd's
aggregators on the (T, P) matrix (CAGrad: cvxpy + Clarabel; Nash-MTL: cvxpy + ECOS, a fresh
one per call), and mtrl.learner.conflict.aggregate now. Needs ``pip install "torchjd[cagrad,nash-mtl]"``
and scipy besides the ``conflict`` extra.

Accuracy: CAGrad's dual min_{w in simplex} F(w) = g_w . g0 + c |g0| |g_w| on the float64 Gram
matrix, solved by brute force: every support set's closed-form stationary point, the best
feasible one kept (T <= 12), else SLSQP (scipy) from the centre, every vertex and random starts.
The reference is checked against the KKT conditions (kkt_violation). Errors: dual objective
|F(w) - F*| / |F*|; direction |d - d*| / |d*| with d = g0 + c |g0| g_w / |g_w| (each
implementation's own rescaling removed). PCGrad: same random orders (global seed) for all.

Random gradient sets: g_i = a_i s + n_i with a shared direction s, a_i ~ U(-0.5, 1.5), noise n_i,
per-task norms spread log-uniformly over e^{+-1.5}; every 4th set also has g_1 = -k g_0 + small
noise, k ~ U(0.5, 3) (a strongly conflicting pair).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import time
import warnings

import numpy as np
import torch

from mtrl.learner.conflict import aggregate, cagrad_dual, nash_mtl_alpha

OTHER_METHODS = ("upgrad", "nash_mtl", "imtl_g", "aligned_mtl")


def old_cagrad(grads: torch.Tensor, c: float = 0.5, iterations: int = 50) -> tuple[torch.Tensor, torch.Tensor]:
    """mtrl's CAGrad before this change (verbatim), returning (direction, simplex weights)."""
    num_tasks = grads.shape[0]
    g0 = grads.mean(0)
    gram = grads @ grads.T
    g0_norm = (gram.mean() + 1e-12).sqrt()
    b = gram.mean(1)
    w = torch.full((num_tasks,), 1.0 / num_tasks, device=grads.device, dtype=grads.dtype)
    for _ in range(iterations):
        gw_norm = (w @ gram @ w + 1e-12).sqrt()
        grad_w = b + c * g0_norm * (gram @ w) / gw_norm
        w = w * torch.exp(-grad_w / (grad_w.abs().max() + 1e-12))
        w = w / w.sum()
    gw = w @ grads
    d = g0 + (c * g0_norm / (gw.norm() + 1e-12)) * gw
    return d / (1 + c**2), w


def old_pcgrad(grads: torch.Tensor) -> torch.Tensor:
    """mtrl's PCGrad before this change (verbatim), on the (T, P) rows."""
    num_tasks = grads.shape[0]
    projected = grads.clone()
    for i in range(num_tasks):
        order = torch.randperm(num_tasks).tolist()
        for j in order:
            if j == i:
                continue
            dot = projected[i] @ grads[j]
            if dot < 0:
                projected[i] -= dot / grads[j].dot(grads[j]).clamp(min=1e-24) * grads[j]
    return projected.mean(0)


def dual_objective(w: np.ndarray, gram: np.ndarray, c: float) -> float:
    return float(w @ gram.mean(1) + c * math.sqrt(gram.mean()) * math.sqrt(max(w @ gram @ w, 0.0)))


def kkt_violation(w: np.ndarray, gram: np.ndarray, c: float) -> float:
    """Largest violation of the simplex KKT conditions, relative to the gradient's size."""
    gw = gram @ w
    grad = gram.mean(1) + c * math.sqrt(gram.mean()) * gw / math.sqrt(w @ gw)
    lam = grad @ w
    on = w > 1e-9
    scale = np.abs(grad).max()
    return float(max(np.abs(grad[on] - lam).max(initial=0), (lam - grad[~on]).max(initial=0)) / scale)


def brute_force_enumeration(gram: np.ndarray, c: float) -> np.ndarray:
    """Every support set S: the stationary point of F on S's affine hull (b + c|g0| G w/|g_w| = l 1,
    solved in closed form); keep the feasible one with the lowest F. Exact, 2^T - 1 solves."""
    t = len(gram)
    b = gram.mean(1)
    c_abs = c * math.sqrt(gram.mean())
    best, best_w = math.inf, None
    for k in range(1, t + 1):
        for support in itertools.combinations(range(t), k):
            s = list(support)
            try:
                sol = np.linalg.solve(gram[np.ix_(s, s)], np.stack([np.ones(k), b[s]], 1))
            except np.linalg.LinAlgError:
                continue
            u, z = sol[:, 0], sol[:, 1]
            a, beta, gamma = u.sum(), z.sum(), b[s] @ z
            disc = beta**2 - a * (gamma - c_abs**2)
            if a <= 0 or disc <= 0:
                continue
            ws = ((beta + math.sqrt(disc)) / a * u - z) / math.sqrt(disc)
            if ws.min() < -1e-12:
                continue
            w = np.zeros(t)
            w[s] = np.clip(ws, 0, None)
            w /= w.sum()
            f = dual_objective(w, gram, c)
            if f < best:
                best, best_w = f, w
    return best_w


def brute_force_slsqp(gram: np.ndarray, c: float, rng: np.random.Generator, random_starts: int = 10) -> np.ndarray:
    from scipy.optimize import minimize

    t = len(gram)
    b = gram.mean(1)
    c_abs = c * math.sqrt(gram.mean())

    def fun(w):
        gw = gram @ w
        s = math.sqrt(max(w @ gw, 1e-300))
        return w @ b + c_abs * s, b + c_abs * gw / s

    starts = [np.full(t, 1.0 / t)] + list(0.9 * np.eye(t) + 0.1 / t) + list(rng.dirichlet(np.ones(t), random_starts))
    best, best_w = math.inf, None
    for start in starts:
        res = minimize(
            fun,
            start,
            jac=True,
            method="SLSQP",
            bounds=[(0, 1)] * t,
            constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1, "jac": lambda w: np.ones(t)}],
            options={"ftol": 1e-15, "maxiter": 2000},
        )
        w = np.clip(res.x, 0, None)
        w /= w.sum()
        f = dual_objective(w, gram, c)
        if f < best:
            best, best_w = f, w
    return best_w


def random_gradients(t: int, p: int, gen: torch.Generator, conflicting: bool) -> torch.Tensor:
    shared = torch.randn(p, generator=gen)
    a = torch.rand(t, 1, generator=gen) * 2 - 0.5
    g = a * shared + torch.randn(t, p, generator=gen)
    g = g * torch.exp(torch.rand(t, 1, generator=gen) * 3 - 1.5)
    if conflicting:
        k = 0.5 + 2.5 * float(torch.rand(1, generator=gen))
        g[1] = -k * g[0] + 0.3 * g[0].norm() / math.sqrt(p) * torch.randn(p, generator=gen)
    return g


def direction(gram: np.ndarray, w: np.ndarray, c: float) -> np.ndarray:
    """Unscaled CAGrad direction g0 + c|g0| g_w/|g_w|, as weights on the task gradients."""
    t = len(gram)
    return np.full(t, 1.0 / t) + c * math.sqrt(gram.mean()) / math.sqrt(w @ gram @ w) * w


def nash_residual(alpha: torch.Tensor, gram: torch.Tensor) -> float:
    """max_i |p_i / mean(p) - 1| with p_i = alpha_i (G alpha)_i: 0 when alpha, up to its scale,
    solves Nash-MTL's G alpha = 1 / alpha."""
    prod = alpha * (gram @ alpha)
    return float(f"{float((prod / prod.mean() - 1).abs().max()):.2g}")


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up (imports, cvxpy's first compile)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def summary(errors: list[float]) -> dict:
    return {
        "median": float(f"{statistics.median(errors):.3g}"),
        "max": float(f"{max(errors):.3g}"),
        "over_1pct": sum(e > 0.01 for e in errors),
        "over_10pct": sum(e > 0.10 for e in errors),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, nargs="+", default=[4, 10, 50])
    parser.add_argument("--params", type=int, default=300_000)
    parser.add_argument("--sets", type=int, default=30, help="random gradient sets per task count (accuracy)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--c", type=float, default=0.5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")  # cvxpy's "not DPP" at every Nash-MTL solve
    from torchjd import aggregation as jd

    c, p = args.c, args.params
    out = {
        "benchmark": "aggregators",
        "params": p,
        "c": c,
        "threads": torch.get_num_threads(),
        "time_ms": {},
        "cagrad_accuracy": {},
        "pcgrad_max_relative_difference": {},
        "torchjd_max_relative_difference": {},
        "nash_mtl": {},
    }
    gen = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(0)
    for t in args.tasks:
        grads = random_gradients(t, p, gen, conflicting=False)
        torchjd_aggregators = {
            "cagrad": jd.CAGrad(c=c),
            "pcgrad": jd.PCGrad(),
            "upgrad": jd.UPGrad(),
            "nash_mtl": jd.NashMTL(n_tasks=t),
            "imtl_g": jd.IMTLG(),
            "aligned_mtl": jd.AlignedMTL(),
        }
        times = {
            "gram_matrix_only": median_ms(lambda: grads @ grads.T, args.repeats),
            "cagrad_old": median_ms(lambda: old_cagrad(grads, c), args.repeats),
            "pcgrad_old": median_ms(lambda: old_pcgrad(grads), args.repeats),
        }
        for name, agg in torchjd_aggregators.items():
            if name == "nash_mtl":  # stateful: a fresh one per call, as mtrl calls it
                times[f"{name}_torchjd"] = median_ms(lambda: jd.NashMTL(n_tasks=t)(grads), args.repeats)
            else:
                times[f"{name}_torchjd"] = median_ms(lambda agg=agg: agg(grads), args.repeats)
        for name in ("pcgrad", "cagrad", *OTHER_METHODS):
            times[f"{name}_mtrl"] = median_ms(lambda name=name: aggregate(grads, name, c), args.repeats)
        out["time_ms"][f"T={t}"] = {k: round(v, 2) for k, v in times.items()}

        # the wrapper against torchjd's aggregators on the full matrix (same method, same input)
        out["torchjd_max_relative_difference"][f"T={t}"] = {
            name: float(
                f"{float((aggregate(grads, name).double() - torchjd_aggregators[name](grads).double()).norm() / torchjd_aggregators[name](grads).double().norm()):.3g}"
            )
            for name in ("upgrad", "imtl_g", "aligned_mtl")
        }

        # Nash-MTL: the condition alpha_i (G alpha)_i = 1, ours vs torchjd's, at the gradients' own
        # scale (row norms ~ 1e2-1e3 here) and scaled to a mean row norm of 0.1 (RL-sized);
        # cosine between the two directions
        nash = {}
        for label, factor in (("raw", 1.0), ("norm_0.1", 0.1 / float(grads.norm(dim=1).mean()))):
            g = (grads * factor).double()
            gram = g @ g.T
            ours = torch.from_numpy(nash_mtl_alpha(gram.numpy()))
            theirs = jd.NashMTL(n_tasks=t, max_norm=0.0).weighting(g.float()).double()
            cos = float((ours @ gram @ theirs) / ((ours @ gram @ ours) * (theirs @ gram @ theirs)).sqrt())
            nash[label] = {
                "residual_mtrl": nash_residual(ours, gram),
                "residual_torchjd": nash_residual(theirs, gram),
                "direction_cosine": round(cos, 6),
            }
        out["nash_mtl"][f"T={t}"] = nash

        # PCGrad: old vs now vs torchjd (/T), with the same global seed, hence the same orders
        worst = {"old": 0.0, "torchjd": 0.0}
        for k in range(5):
            g = random_gradients(t, p, gen, conflicting=k % 2 == 1)
            torch.manual_seed(k)
            now = aggregate(g, "pcgrad")
            torch.manual_seed(k)
            old = old_pcgrad(g)
            torch.manual_seed(k)
            theirs = jd.PCGrad()(g) / t
            worst["old"] = max(worst["old"], float((old - now).norm() / old.norm()))
            worst["torchjd"] = max(worst["torchjd"], float((theirs - now).norm() / theirs.norm()))
        out["pcgrad_max_relative_difference"][f"T={t}"] = {k: float(f"{v:.3g}") for k, v in worst.items()}

        # CAGrad accuracy against brute force
        errors = {name: {"dual": [], "direction": []} for name in ("old", "torchjd", "mtrl")}
        reference_kkt = []
        sets = args.sets if t <= 12 else max(3, args.sets // 3)
        for k in range(sets):
            g = random_gradients(t, p, gen, conflicting=k % 4 == 3)
            gram = (g.double() @ g.double().T).numpy()
            gram = gram / gram.diagonal().mean()
            ref = brute_force_enumeration(gram, c) if t <= 12 else brute_force_slsqp(gram, c, rng)
            reference_kkt.append(kkt_violation(ref, gram, c))
            f_ref = dual_objective(ref, gram, c)
            d_old, w_old = old_cagrad(g, c)
            jd_weights = jd.CAGradWeighting(c=c)(torch.from_numpy(gram)).numpy()
            w_jd = (jd_weights - 1 / t) / (jd_weights.sum() - 1)  # weights = 1/T + lambda w, sum w = 1
            d_ref_vector = torch.from_numpy(direction(gram, ref, c)) @ g.double()
            for name, w, d in (
                ("old", w_old.double().numpy(), d_old * (1 + c**2)),
                ("torchjd", w_jd, jd.CAGrad(c=c)(g)),
                ("mtrl", cagrad_dual(gram, c), aggregate(g, "cagrad", c) * (1 + c)),
            ):
                errors[name]["dual"].append(abs(dual_objective(w, gram, c) - f_ref) / abs(f_ref))
                errors[name]["direction"].append(float((d.double() - d_ref_vector).norm() / d_ref_vector.norm()))
        out["cagrad_accuracy"][f"T={t}"] = {
            "sets": sets,
            "reference": "enumeration" if t <= 12 else "SLSQP multi-start",
            "reference_max_kkt_violation": float(f"{max(reference_kkt):.2g}"),
            **{name: {kind: summary(v) for kind, v in e.items()} for name, e in errors.items()},
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
