"""Gradient conflict between tasks: measure it, and optionally resolve it.

Per-task gradients of a loss with respect to the *shared* parameters come from one
backward pass per task through the same graph (``torch.autograd.grad`` with
``retain_graph``), never from N separate updates. From the (tasks, params) matrix G:

- cosine similarity   cos_ij = g_i . g_j / (|g_i| |g_j|)
- conflicting pairs   fraction of pairs i < j with cos_ij < 0
- magnitude similarity  2 |g_i| |g_j| / (|g_i|^2 + |g_j|^2)   (1 = equal norms)

Aggregators (``conflict.method``) turn G into one update direction. Every one of them works
on the T x T Gram matrix G G^T (one (T, P) matmul), finds task weights w, and returns
``w @ G``, on the scale of the mean task gradient: identical task gradients g give g back.

- ``none``: the mean gradient g0.
- ``pcgrad`` (Yu et al., 2020): each g_i is projected off every g_j it conflicts with, in a
  random order; the projected gradients are averaged. Ours, on the Gram matrix.
- ``cagrad`` (Liu et al., 2021): w on the simplex minimising F(w) = g_w . g0 + c |g0| |g_w|
  (g_w = sum_i w_i g_i), then d = (g0 + c |g0| / |g_w| g_w) / (1 + c); c = 0 gives g0. The
  /(1 + c) is the reference code's ``rescale=2``: agreeing tasks get exactly g0. Its default
  ``rescale=1`` divides by 1 + c^2 (1.2x our step at c = 0.5) and torchjd's CAGrad does not
  rescale (1.5x); under Adam a constant factor only matters through eps and gradient clipping.
  Ours: an interior-point (log-barrier Newton) solve of the T-dim dual, finished exactly on
  the active face and checked against the KKT conditions (``cagrad_dual``).
- ``nash_mtl`` (Navon et al., 2022): alpha > 0 with alpha_i (G G^T alpha)_i = 1, solved exactly
  (``nash_mtl_alpha``); alpha scales as 1 / |g|, so it is divided by its sum (a weighted mean).
  Stateless: no warm start, no ``update_weights_every``, no ``max_norm``.
- ``upgrad`` (Quinton & Rey, 2024), ``imtl_g`` (Liu et al., 2021), ``aligned_mtl`` (Senushkin et
  al., 2023): torchjd's weightings, imported lazily (``pip install 'mtrl[conflict]'``); they
  already return the mean scale.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from mtrl.config import CONFLICT_METHODS as METHODS
from mtrl.config import require_conflict_packages as require


def per_task_gradients(
    per_sample_loss: torch.Tensor, task: torch.Tensor, num_tasks: int, params: list[torch.Tensor]
) -> torch.Tensor:
    """(num_tasks, P) gradients of each task's mean loss w.r.t. ``params`` (flattened).
    Tasks absent from the batch get zero rows. The graph is kept for a later backward."""
    rows = []
    for t in range(num_tasks):
        mask = task == t
        if not bool(mask.any()):
            rows.append(torch.zeros(sum(p.numel() for p in params), device=per_sample_loss.device))
            continue
        grads = torch.autograd.grad(per_sample_loss[mask].mean(), params, retain_graph=True, allow_unused=True)
        rows.append(torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(grads, params)]))
    return torch.stack(rows)


def aggregated_backward(
    loss: torch.Tensor,
    per_sample_loss: torch.Tensor,
    task: torch.Tensor,
    num_tasks: int,
    shared: list[torch.Tensor],
    method: str,
    cagrad_c: float = 0.5,
    keep: torch.Tensor | None = None,
) -> None:
    """``loss.backward()``, then the ``shared`` parameters' gradients replaced by ``method``'s
    aggregation of the per-task gradients of ``per_sample_loss`` (the task-specific
    parameters, such as per-task heads, keep their plain gradient). Only the tasks with
    samples (``keep``: the unmasked ones) are aggregated: an absent or masked task's zero row
    would shrink a mean-scaled direction by (T - k) / T."""
    grads = per_task_gradients(per_sample_loss, task, num_tasks, shared)
    loss.backward()
    present = torch.bincount(task if keep is None else task[keep], minlength=num_tasks) > 0
    direction = aggregate(grads[present], method, cagrad_c)
    offset = 0
    for p in shared:
        p.grad = direction[offset : offset + p.numel()].view_as(p).clone()
        offset += p.numel()


@dataclass
class ConflictStats:
    cosine: torch.Tensor  # (T, T)
    magnitude_similarity: torch.Tensor  # (T, T)
    norms: torch.Tensor  # (T,)

    @property
    def conflicting_fraction(self) -> float:
        t = self.cosine.shape[0]
        upper = torch.triu(torch.ones(t, t, dtype=torch.bool, device=self.cosine.device), 1)
        return float((self.cosine[upper] < 0).float().mean()) if t > 1 else 0.0

    def metrics(self, prefix: str, task_names: list[str]) -> dict[str, float]:
        t = len(task_names)
        upper = torch.triu(torch.ones(t, t, dtype=torch.bool, device=self.cosine.device), 1)
        out = {
            f"{prefix}/conflicting_fraction": self.conflicting_fraction,
            f"{prefix}/cosine_mean": float(self.cosine[upper].mean()) if t > 1 else 1.0,
            f"{prefix}/magnitude_similarity_mean": float(self.magnitude_similarity[upper].mean()) if t > 1 else 1.0,
        }
        for i, name in enumerate(task_names):
            out[f"{prefix}/grad_norm/{name}"] = float(self.norms[i])
            for j in range(i + 1, t):
                out[f"{prefix}/cosine/{name}|{task_names[j]}"] = float(self.cosine[i, j])
        return out


def conflict_stats(grads: torch.Tensor) -> ConflictStats:
    """Cosine matrix, magnitude similarity and norms of per-task gradients (T, P)."""
    norms = grads.norm(dim=1)
    safe = norms.clamp(min=1e-12)
    cosine = (grads @ grads.T) / (safe[:, None] * safe[None, :])
    magnitude = 2 * norms[:, None] * norms[None, :] / (norms[:, None] ** 2 + norms[None, :] ** 2).clamp(min=1e-24)
    return ConflictStats(cosine, magnitude, norms)


def pcgrad(grads: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """PCGrad: project each task gradient off the ones it conflicts with, then average."""
    return aggregate(grads, "pcgrad", generator=generator)


def cagrad(grads: torch.Tensor, c: float = 0.5) -> torch.Tensor:
    """CAGrad: the mean gradient g0, bent towards the worst-off task within a ball of radius
    c |g0|, divided by 1 + c (see the module docstring)."""
    return aggregate(grads, "cagrad", cagrad_c=c)


def aggregate(
    grads: torch.Tensor, method: str, cagrad_c: float = 0.5, generator: torch.Generator | None = None
) -> torch.Tensor:
    """One update direction (P,) from per-task gradients (T, P), on the mean gradient's scale.
    ``generator`` orders PCGrad's projections (the global RNG when None)."""
    if method not in METHODS:
        raise ValueError(f"unknown conflict method '{method}', expected one of {METHODS}")
    if method == "none":
        return grads.mean(0)
    require(method)
    with torch.no_grad():
        weights = aggregation_weights(grads @ grads.T, method, cagrad_c, generator)
        return weights.to(device=grads.device, dtype=grads.dtype) @ grads


def aggregation_weights(
    gram: torch.Tensor, method: str, cagrad_c: float = 0.5, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Task weights w (float64, CPU) from the Gram matrix G G^T, such that the aggregated
    direction is ``w @ G``. Every method is invariant to the scale of G, so it is normalised to
    a unit mean diagonal first (torchjd's UPGrad treats a Gram matrix of trace < 1e-4 as zero,
    which makes it return the plain mean for small gradients)."""
    g = gram.detach().to(device="cpu", dtype=torch.float64)
    g = (g + g.T) / 2
    t = g.shape[0]
    scale = float(g.diagonal().mean())
    uniform = torch.full((t,), 1.0 / t, dtype=torch.float64)
    if method == "none" or not math.isfinite(scale) or scale <= 0.0:
        return uniform  # all-zero (or non-finite) gradients: the plain mean
    g = g / scale
    if method == "pcgrad":
        return torch.from_numpy(_pcgrad_weights(g.numpy(), generator))
    if method == "cagrad":
        return torch.from_numpy(_cagrad_weights(g.numpy(), cagrad_c))
    if method == "nash_mtl":
        alpha = nash_mtl_alpha(g.numpy())
        return torch.from_numpy(alpha / alpha.sum())
    require(method)
    from torchjd import aggregation as jd

    weighting = {"upgrad": jd.UPGradWeighting, "imtl_g": jd.IMTLGWeighting, "aligned_mtl": jd.AlignedMTLWeighting}[
        method
    ]()
    return weighting(g).to(torch.float64)


def _pcgrad_weights(gram: np.ndarray, generator: torch.Generator | None) -> np.ndarray:
    """PCGrad on the Gram matrix: row i of ``w`` holds g_i's projection as a combination of the
    task gradients, so g_i' . g_j = w_i . G_j. Same random orders as a direct implementation."""
    t = gram.shape[0]
    w = np.eye(t)
    sq_norms = np.maximum(np.diag(gram), 1e-300)
    for i in range(t):
        for j in torch.randperm(t, generator=generator).tolist():
            if j == i:
                continue
            dot = w[i] @ gram[:, j]
            if dot < 0:
                w[i, j] -= dot / sq_norms[j]
    return w.mean(0)


def _cagrad_weights(gram: np.ndarray, c: float) -> np.ndarray:
    """CAGrad's direction as task weights: (1/T + c |g0| / |g_w| w) / (1 + c)."""
    t = gram.shape[0]
    weights = np.full(t, 1.0 / t)
    g0_norm = math.sqrt(max(gram.mean(), 0.0))
    if c == 0 or g0_norm == 0:
        return weights
    w = cagrad_dual(gram, c)
    gw_norm = math.sqrt(max(w @ gram @ w, 0.0))
    # |g_w| ~ 0: 0 is in the tasks' convex hull (Pareto-stationary) and g_w / |g_w| means nothing.
    if gw_norm > 1e-4 * math.sqrt(gram.diagonal().mean()):
        weights = weights + (c * g0_norm / gw_norm) * w
    return weights / (1 + c)


def cagrad_dual(gram: np.ndarray, c: float) -> np.ndarray:
    """argmin over the simplex of F(w) = w.G.1/T + c |g0| sqrt(w.G.w), |g0|^2 = mean(G).

    Log-barrier Newton (equality-constrained) on the T-dim problem; after each centring step
    the face {i : w_i^2 t > 1} is solved in closed form and returned if it satisfies the KKT
    conditions, i.e. it is the exact optimum (else the barrier goes on, to a gap < 1e-11 of
    the mean squared task-gradient norm).
    Tasks with a zero gradient take no part (F(e_i) = 0 for them, whatever the others do)."""
    gram = np.asarray(gram, dtype=np.float64)
    t_all = gram.shape[0]
    b_all = gram.mean(1)
    c_abs = c * math.sqrt(max(gram.mean(), 0.0))
    diag = np.diag(gram)
    active = np.flatnonzero(diag > 1e-12 * max(diag.max(), 1e-300))
    if len(active) == 0:
        return np.full(t_all, 1.0 / t_all)
    w_all = np.zeros(t_all)
    if len(active) == 1:
        w_all[active] = 1.0
        return w_all
    g = gram[np.ix_(active, active)]
    b = b_all[active]
    n = len(active)
    w = np.full(n, 1.0 / n)
    kkt = np.zeros((n + 1, n + 1))
    kkt[:n, n] = kkt[n, :n] = 1.0
    rhs = np.zeros(n + 1)
    idx = np.arange(n)
    eps = 1e-14 * float(np.diag(g).mean())

    def barrier(v: np.ndarray, t: float) -> float:
        return t * (v @ b + c_abs * math.sqrt(max(v @ g @ v, 0.0) + eps)) - float(np.log(v).sum())

    scale = max(float(np.diag(g).mean()), 1e-300)  # bounds |b|, |F| and c |g0| |g_w|
    t = 1.0 / scale
    for _ in range(10):
        for _ in range(50):  # centring: Newton on t F - sum log w, subject to sum w = 1
            gw = g @ w
            s = math.sqrt(max(w @ gw, 0.0) + eps)
            grad = t * (b + c_abs * gw / s) - 1.0 / w
            kkt[:n, :n] = (t * c_abs / s) * (g - np.outer(gw, gw) / (s * s))
            kkt[idx, idx] += 1.0 / (w * w)
            rhs[:n] = -grad
            try:
                step = np.linalg.solve(kkt, rhs)[:n]
            except np.linalg.LinAlgError:
                break
            w, moved = _damped_newton_step(w, step, grad, lambda x, t=t: barrier(x, t), tol=1e-9)
            if not moved:
                break
        face = np.flatnonzero(w * w * t > 1.0)
        exact = _face_optimum(g, b, c_abs, face)
        if exact is not None:
            w_all[active] = exact
            return w_all
        if n / t < 1e-11 * scale:  # duality gap n / t
            break
        t *= 100.0
    w_all[active] = w
    return w_all


def _damped_newton_step(
    x: np.ndarray, step: np.ndarray, grad: np.ndarray, objective: Callable[[np.ndarray], float], tol: float
) -> tuple[np.ndarray, bool]:
    """One damped Newton step on a log-barrier objective: at most 99 % of the way to the
    boundary x > 0, then halved until the Armijo condition (1/4 of the decrement) holds.
    Returns the new point and False (with x unchanged) once the Newton decrement is below tol."""
    decrement = -grad @ step
    if not decrement > tol:
        return x, False
    shrinking = step < 0
    size = min(1.0, 0.99 * float(np.min(-x[shrinking] / step[shrinking]))) if shrinking.any() else 1.0
    current = objective(x)
    while size > 1e-12 and objective(x + size * step) > current - 0.25 * size * decrement:
        size *= 0.5
    return x + size * step, True


def nash_mtl_alpha(gram: np.ndarray, iterations: int = 100) -> np.ndarray:
    """Nash-MTL's weights: alpha > 0 with alpha_i (G alpha)_i = 1 for every task, the paper's
    G^T G alpha = 1 / alpha (Navon et al., 2022), i.e. the minimiser of the strictly convex
    1/2 a.G.a - sum log a_i, by damped Newton. Tasks with a zero gradient get 0. If 0 is in
    the tasks' convex hull there is no solution (alpha grows without bound) and the direction alpha @ G tends to 0."""
    gram = np.asarray(gram, dtype=np.float64)
    diag = np.diag(gram)
    active = np.flatnonzero(diag > 1e-12 * max(diag.max(), 1e-300))
    alpha_all = np.zeros(len(gram))
    if len(active) == 0:
        return np.full(len(gram), 1.0)
    g = gram[np.ix_(active, active)]
    n = len(active)
    alpha = np.full(n, 1.0 / math.sqrt(max(g.sum(), 1e-300)))  # alpha . G alpha = 1
    idx = np.arange(n)

    def potential(a: np.ndarray) -> float:
        return 0.5 * float(a @ g @ a) - float(np.log(a).sum())

    for _ in range(iterations):
        grad = g @ alpha - 1.0 / alpha
        hessian = g.copy()
        hessian[idx, idx] += 1.0 / (alpha * alpha)
        try:
            step = -np.linalg.solve(hessian, grad)
        except np.linalg.LinAlgError:
            break
        alpha, moved = _damped_newton_step(alpha, step, grad, potential, tol=1e-20)
        if not moved:
            break
    alpha_all[active] = alpha
    return alpha_all


def _face_optimum(g: np.ndarray, b: np.ndarray, c_abs: float, face: np.ndarray) -> np.ndarray | None:
    """The minimiser of F on the affine hull of the face, if it lies inside the face and
    satisfies the KKT conditions of the whole simplex; else None. On the face, stationarity
    b + c_abs G w / s = lambda 1 with s = |g_w| gives w = (s / c_abs) G^-1 (lambda 1 - b), and
    sum w = 1, w.G.w = s^2 fix lambda by a quadratic."""
    if len(face) == 0:
        return None
    sub = g[np.ix_(face, face)]
    try:
        u, z = np.linalg.solve(sub, np.stack([np.ones(len(face)), b[face]], 1)).T
    except np.linalg.LinAlgError:
        return None
    a, beta, gamma = u.sum(), z.sum(), b[face] @ z
    disc = beta * beta - a * (gamma - c_abs * c_abs)
    if not (a > 0 and disc > 0):
        return None  # F is unbounded below on the face's affine hull
    root = math.sqrt(disc)
    w_face = ((beta + root) / a * u - z) / root
    if not np.all(w_face > 0):
        return None
    w = np.zeros(len(g))
    w[face] = w_face / w_face.sum()
    gw = g @ w
    s = math.sqrt(max(w @ gw, 0.0))
    if s == 0:
        return None
    grad = b + c_abs * gw / s
    lam = grad @ w
    tol = 1e-9 * (np.abs(grad).max() + 1e-300)
    on = w > 0
    if np.all(np.abs(grad[on] - lam) <= tol) and np.all(grad[~on] >= lam - tol):
        return w
    return None
