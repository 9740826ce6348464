"""Gradient conflict between tasks: measure it, and optionally resolve it (PCGrad, CAGrad).

Per-task gradients of a loss with respect to the *shared* parameters come from one
backward pass per task through the same graph (``torch.autograd.grad`` with
``retain_graph``), never from N separate updates. From the (tasks, params) matrix G:

- cosine similarity   cos_ij = g_i . g_j / (|g_i| |g_j|)
- conflicting pairs   fraction of pairs i < j with cos_ij < 0
- magnitude similarity  2 |g_i| |g_j| / (|g_i|^2 + |g_j|^2)   (1 = equal norms)

Aggregators return one update direction on the scale of the mean task gradient:
- PCGrad (Yu et al., 2020): each g_i is projected off every g_j it conflicts with, in a
  random order; the projected gradients are averaged.
- CAGrad (Liu et al., 2021): d = (g0 + c |g0| / |g_w| g_w) / (1 + c^2), g0 the mean
  gradient and w on the simplex minimising g_w . g0 + c |g0| |g_w|; c = 0 gives g0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

METHODS = ("none", "pcgrad", "cagrad")


@dataclass
class ConflictConfig:
    """Gradient-conflict monitoring and mitigation."""

    monitor_every: int = 1000  # updates between measurements; 0 turns the monitor off
    method: str = "none"  # none | pcgrad | cagrad, applied to the shared parameters' update
    cagrad_c: float = 0.5


def per_task_gradients(per_sample_loss: torch.Tensor, task: torch.Tensor, num_tasks: int, params: list[torch.Tensor]) -> torch.Tensor:
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
    num_tasks = grads.shape[0]
    projected = grads.clone()
    for i in range(num_tasks):
        order = torch.randperm(num_tasks, generator=generator).tolist()
        for j in order:
            if j == i:
                continue
            dot = projected[i] @ grads[j]
            if dot < 0:
                projected[i] -= dot / grads[j].dot(grads[j]).clamp(min=1e-24) * grads[j]
    return projected.mean(0)


def cagrad(grads: torch.Tensor, c: float = 0.5, iterations: int = 50) -> torch.Tensor:
    """CAGrad: the mean gradient, bent towards the worst-off task within a ball of radius
    c |g0|; solves for the simplex weights by exponentiated gradient on the T x T Gram."""
    num_tasks = grads.shape[0]
    g0 = grads.mean(0)
    if c == 0 or num_tasks == 1:
        return g0
    gram = grads @ grads.T
    g0_norm = (gram.mean() + 1e-12).sqrt()  # |g0|, since gram.mean() = |mean g|^2
    b = gram.mean(1)  # G g0 per task
    w = torch.full((num_tasks,), 1.0 / num_tasks, device=grads.device, dtype=grads.dtype)
    for _ in range(iterations):
        gw_norm = (w @ gram @ w + 1e-12).sqrt()
        grad_w = b + c * g0_norm * (gram @ w) / gw_norm
        w = w * torch.exp(-grad_w / (grad_w.abs().max() + 1e-12))
        w = w / w.sum()
    gw = w @ grads
    d = g0 + (c * g0_norm / (gw.norm() + 1e-12)) * gw
    return d / (1 + c**2)


def aggregate(grads: torch.Tensor, method: str, cagrad_c: float = 0.5, generator: torch.Generator | None = None) -> torch.Tensor:
    if method == "pcgrad":
        return pcgrad(grads, generator)
    if method == "cagrad":
        return cagrad(grads, cagrad_c)
    raise ValueError(f"unknown conflict method '{method}', expected one of {METHODS}")
