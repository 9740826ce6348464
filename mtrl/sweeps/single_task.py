"""``mtrl single-task CONFIG --seeds N``: the single-task baselines of a multi-task config,
one run per task and seed, as an ``mtrl sweep`` (Ray; resumable by rerunning the command).

Each task gets the multi-task run's per-task budget: ``train.total_steps``,
``train.warmup_steps``, ``train.eval_every``, ``train.log_every`` and
``train.checkpoint_every`` divided by the number of tasks, on one environment slot with the
same ``train.batch_per_task``, so it makes as many updates as the multi-task run, each on as
many of its own task's samples. The suite says how to keep one task
(``Suite.single_task_overrides``: Meta-World MT1 on the task, the toy suite's goal angle).
Compare with ``mtrl report --transfer MT_RUNS --single SWEEP_DIR``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from mtrl.builders import make_suite
from mtrl.config import load_config
from mtrl.errors import ConfigError
from mtrl.sweeps.runner import SweepResult, run_sweep

PER_TASK_KEYS = ("total_steps", "warmup_steps", "eval_every", "log_every", "checkpoint_every")


def single_task_overrides(config: str, overrides: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    """({task: the suite's overrides for it}, the per-task budget overrides every trial gets)."""
    cfg = load_config(config, overrides)
    suite = make_suite(cfg)
    tasks = suite.task_names
    if len(tasks) < 2:
        raise ConfigError(f"'{config}' trains {len(tasks)} task; single-task baselines are for multi-task configs")
    points = {task: suite.single_task_overrides(task) for task in tasks}
    budget = {f"train.{k}": getattr(cfg.train, k) // len(tasks) for k in PER_TASK_KEYS} | {"train.num_slots": 1}
    kept = [o for o in overrides if o.partition("=")[0].strip() not in budget]  # the split replaces them
    return points, [*kept, *(f"{k}={v}" for k, v in budget.items())]


def run_single_task(
    config: str,
    seeds: int,
    overrides: list[str],
    out: str | Path | None = None,
    address: str | None = None,
    cpus_per_trial: int = 1,
    gpus_per_trial: float = 0.0,
    echo: Callable[[str], None] = print,
    storage: str | None = None,
) -> SweepResult:
    points, common = single_task_overrides(config, overrides)
    if out is None:
        out = Path("sweeps") / f"{load_config(config).run.name}-single-task-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    return run_sweep(
        config,
        common,
        seeds,
        out,
        address,
        cpus_per_trial,
        gpus_per_trial,
        echo,
        points=points,
        command=["mtrl", "single-task", config, "--seeds", str(seeds), *overrides],
        storage=storage,
    )
