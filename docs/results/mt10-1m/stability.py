"""Learning that is kept (issue 22): per run of the 1M study, which tasks were learned and then
lost, and the critic's scale at the end. Run from the repository root:

    python docs/results/mt10-1m/stability.py [METHOD_FOLDER ...]

Default: every method folder under docs/results/mt10-1m. A task counts as *lost* when some
evaluation before the last reached >= 0.5 success and the final evaluation (Meta-World's
protocol, 50 episodes) is at least 0.4 below that best. Printed per run: the evaluation means
(10 episodes per task, every 100k steps), the final mean, the largest drop of the mean between
consecutive evaluations, the lost tasks, and, over the last 50k steps, the critic loss, the
largest per-task Q mean and critic loss, and the temperatures' range."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

from mtrl.training.logger import read_metrics

ROOT = Path("docs/results/mt10-1m")
LEARNED, LOST_BY = 0.5, 0.4


def late(records: list[dict], prefix: str, from_step: int) -> dict[str, float]:
    """Mean over the records from ``from_step`` on of each key starting with ``prefix``."""
    values: dict[str, list[float]] = {}
    for r in records:
        if r["step"] >= from_step:
            for k, v in r.items():
                if k.startswith(prefix) and isinstance(v, (int, float)):
                    values.setdefault(k.removeprefix(prefix), []).append(v)
    return {k: statistics.fmean(v) for k, v in values.items()}


def summarise_run(run: Path) -> str:
    records = read_metrics(run)
    evals = [r for r in records if "eval/success_mean" in r]
    final, before = evals[-1], evals[:-1]
    tasks = sorted(k.removeprefix("eval/success/") for k in final if k.startswith("eval/success/"))
    lost = []
    for t in tasks:
        best = max((r[f"eval/success/{t}"] for r in before), default=0.0)
        if best >= LEARNED and final[f"eval/success/{t}"] <= best - LOST_BY:
            lost.append(f"{t.removesuffix('-v3')} {best:.1f}->{final[f'eval/success/{t}']:.2f}")
    means = [r["eval/success_mean"] for r in evals]
    drop = max((a - b for a, b in zip(means, means[1:])), default=0.0)
    start = max(r["step"] for r in records) - 50_000
    q, loss = late(records, "per_task/q_mean/", start), late(records, "per_task/critic_loss/", start)
    alpha = late(records, "alpha/", start)
    critic = late(records, "loss/", start).get("critic", float("nan"))
    top_q = max(q, key=q.get) if q else None
    top_loss = max(loss, key=loss.get) if loss else None
    return (
        f"{run}: evals {' '.join(f'{m:.2f}' for m in means[:-1])} | final {means[-1]:.3f} | "
        f"largest drop {drop:.2f} | lost {len(lost)}: {', '.join(lost) or '-'}\n"
        f"    last 50k: critic loss {critic:.1f}; largest Q {top_q} {q.get(top_q, float('nan')):.0f}; "
        f"largest task loss {top_loss} {loss.get(top_loss, float('nan')):.1f}; "
        f"alpha {min(alpha.values(), default=float('nan')):.3f}-{max(alpha.values(), default=float('nan')):.3f}"
    )


def main(folders: list[str]) -> None:
    methods = [Path(f) for f in folders] or sorted(p for p in ROOT.iterdir() if p.is_dir() and p.name != "report")
    for method in methods:
        for run in sorted(p.parent for p in method.glob("*/metrics.jsonl")):
            print(summarise_run(run))


if __name__ == "__main__":
    main(sys.argv[1:])
