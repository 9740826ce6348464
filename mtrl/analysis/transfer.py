"""The negative-transfer map: ``mtrl report --transfer MT_RUNS --single ST_RUNS``.

For every multi-task method among MT_RUNS (grouped as ``mtrl report`` groups them) and every
task it was evaluated on, transfer = mean over seeds of its final success on the task minus
the mean final success of the single-task runs of that task (ST_RUNS: runs on one task
each, at the same per-task budget, e.g. ``mtrl single-task``'s), with a 95 % bootstrap CI
(seeds of both sides resampled independently). Negative: the task does worse trained
together with the others. Writes transfer.md, transfer.csv, transfer.json and transfer.png.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mtrl.analysis.report import (
    bootstrap_seed,
    csv_text,
    drop_repeats,
    find_runs,
    group_runs,
    markdown_table,
    save_figure,
)
from mtrl.atomic_write import atomic_write
from mtrl.errors import ConfigError


@dataclass
class TransferReport:
    out_dir: Path
    rows: list[dict[str, Any]]  # method, task, transfer, ci, multi_task, single_task, seeds
    warnings: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


def single_task_scores(st_paths: Sequence[str | Path]) -> tuple[dict[str, list[float]], list[str]]:
    """task -> final success of each single-task run evaluated on it (one run per config and
    seed: :func:`~mtrl.analysis.report.drop_repeats`), and the notes on runs left out as repeats."""
    out: dict[str, list[float]] = {}
    runs, notes = drop_repeats([r for r in find_runs(st_paths) if r.evals])
    for run in runs:
        for task, score in zip(run.tasks, run.scores(run.evals[-1], run.tasks)):
            if not np.isnan(score):
                out.setdefault(task, []).append(float(score))
    return out, notes


def bootstrap_difference(x: np.ndarray, y: np.ndarray, reps: int, rng: np.random.Generator) -> tuple[float, float]:
    """95 % percentile CI of mean(x) - mean(y), x and y resampled independently."""
    bx = x[rng.integers(0, len(x), (reps, len(x)))].mean(1)
    by = y[rng.integers(0, len(y), (reps, len(y)))].mean(1)
    lo, hi = np.percentile(bx - by, [2.5, 97.5])
    return float(lo), float(hi)


def write_transfer_report(
    mt_paths: Sequence[str | Path], st_paths: Sequence[str | Path], out_dir: str | Path, reps: int = 2000, seed: int = 0
) -> TransferReport:
    single, notes = single_task_scores(st_paths)
    if not single:
        raise ConfigError(
            f"no single-task run with an evaluation under {', '.join(map(str, st_paths))}; "
            "train them first (mtrl single-task CONFIG --seeds N)"
        )
    mt_runs, mt_notes = drop_repeats([r for r in find_runs(mt_paths) if r.evals])
    if not mt_runs:
        raise ConfigError(f"no multi-task run with an evaluation under {', '.join(map(str, mt_paths))}")
    methods = group_runs(mt_runs)
    report = TransferReport(Path(out_dir), [], warnings=[*notes, *mt_notes])
    for m in methods:
        final = m.scores("final")
        for i, task in enumerate(m.tasks):
            if task not in single:
                report.warnings.append(f"no single-task run of '{task}': left out of the transfer of {m.label}")
                continue
            x, y = final[:, i][~np.isnan(final[:, i])], np.asarray(single[task])
            rng = np.random.default_rng(bootstrap_seed(seed, m.label, task))  # CIs independent of the other rows
            lo, hi = bootstrap_difference(x, y, reps, rng)
            report.rows.append(
                {
                    "method": m.label,
                    "task": task,
                    "transfer": float(x.mean() - y.mean()),
                    "ci": [lo, hi],
                    "multi_task": float(x.mean()),
                    "single_task": float(y.mean()),
                    "seeds": [len(x), len(y)],
                }
            )
    out = report.out_dir
    out.mkdir(parents=True, exist_ok=True)
    header = ["method", "task", "transfer", "95% CI", "multi-task", "single-task", "seeds (MT, ST)"]
    table = [
        [
            r["method"],
            r["task"],
            f"{r['transfer']:+.3f}",
            f"[{r['ci'][0]:+.3f}, {r['ci'][1]:+.3f}]",
            f"{r['multi_task']:.3f}",
            f"{r['single_task']:.3f}",
            f"{r['seeds'][0]}, {r['seeds'][1]}",
        ]
        for r in report.rows
    ]
    atomic_write(
        out / "transfer.md",
        "\n".join(["# Transfer: multi-task minus single-task final success", "", *markdown_table(header, table), ""]),
    )
    atomic_write(
        out / "transfer.csv",
        csv_text(
            [["method", "task", "transfer", "ci_low", "ci_high", "multi_task", "single_task"]]
            + [
                [r["method"], r["task"], r["transfer"], *r["ci"], r["multi_task"], r["single_task"]]
                for r in report.rows
            ]
        ),
    )
    atomic_write(out / "transfer.json", json.dumps({"reps": reps, "seed": seed, "rows": report.rows}, indent=1))
    report.files = [out / n for n in ("transfer.md", "transfer.csv", "transfer.json")]
    if report.rows:
        report.files.append(plot_transfer(report.rows, out / "transfer.png"))
    return report


def plot_transfer(rows: list[dict[str, Any]], path: Path) -> Path:
    """One horizontal bar per task and method with its CI; red where the CI is below 0."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(dict.fromkeys(r["method"] for r in rows))
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(tasks) * len(labels) + 1.2))
    height = 0.8 / len(labels)
    for j, label in enumerate(labels):
        for r in (r for r in rows if r["method"] == label):
            y = tasks.index(r["task"]) + j * height
            color = "tab:red" if r["ci"][1] < 0 else ("tab:green" if r["ci"][0] > 0 else "tab:gray")
            ax.barh(
                y,
                r["transfer"],
                height * 0.9,
                color=color,
                xerr=[[r["transfer"] - r["ci"][0]], [r["ci"][1] - r["transfer"]]],
                label=None,
            )
            ax.text(0, y, f" {label}", va="center", fontsize=7)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks([i + 0.4 - height / 2 for i in range(len(tasks))], tasks)
    ax.set_xlabel("multi-task − single-task final success (95 % CI); red: negative transfer")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return path
