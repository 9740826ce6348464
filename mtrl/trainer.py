"""The training loop, top to bottom: collect a vector step, store it, update, log,
evaluate, checkpoint. Everything it uses is built by :func:`build` from the config."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtrl import registry
from mtrl.agent import Agent, EnvSpec
from mtrl.checkpoint import (
    global_rng_state,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    set_global_rng_state,
)
from mtrl.config import Config, ConfigError, save_config
from mtrl.evaluation import EvalResult, EvaluationSchedule, crossed
from mtrl.introspection import attention_by_task, representation_metrics
from mtrl.logger import Logger
from mtrl.progress import TrainingProgress, status
from mtrl.replay import MultiTaskReplay
from mtrl.sac import SAC, task_loss_weights
from mtrl.scheduler import Scheduler
from mtrl.seeding import run_seeds
from mtrl.suite import MultiTaskVecEnv, Suite


@dataclass
class TrainResult:
    run_dir: Path
    env_steps: int
    final_eval: EvalResult | None


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda but no CUDA device is available; use device=cpu or device=auto")
    return torch.device(name)


def make_suite(cfg: Config) -> Suite:
    return registry.get("suite", cfg.env.suite).target(cfg.env, seed=cfg.seed)


def make_spec(suite: Suite, env: MultiTaskVecEnv) -> EnvSpec:
    names = tuple(suite.task_names)
    descriptions = tuple(suite.descriptions[n] for n in names)
    shipped = str(suite.embedding_file) if suite.embedding_file else None
    return EnvSpec(env.obs_dim, env.act_dim, names, descriptions, getattr(suite.cfg, "suite", ""), shipped)


def make_agent(cfg: Config, spec: EnvSpec, device: torch.device) -> Agent:
    return registry.get("agent", cfg.agent.name).target(cfg.agent, spec).to(device)


def make_policy(agent: Agent):
    """The deterministic evaluation policy of an agent."""
    return lambda obs, task: agent.act(obs, task, deterministic=True)


def run_directory(cfg: Config) -> Path:
    """The run's folder; refuses to reuse a folder that holds a run unless resuming."""
    if cfg.run.dir:
        run_dir = Path(cfg.run.dir)
    elif cfg.resume:
        raise ConfigError("resume=true needs run.dir=<the run directory to continue>")
    else:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = Path("runs") / f"{cfg.run.name}-seed{cfg.seed}-{stamp}"
    holds_run = (run_dir / "config.yaml").exists() or (run_dir / "checkpoints").exists()
    if cfg.resume and latest_checkpoint(run_dir) is None:
        raise ConfigError(f"run.dir '{run_dir}' has no checkpoint to resume from; drop resume=true to start it")
    if not cfg.resume and holds_run:
        raise ConfigError(f"run.dir '{run_dir}' already holds a run; pass resume=true to continue it or choose another run.dir")
    return run_dir


def train(cfg: Config) -> TrainResult:
    """Train ``cfg.agent`` on ``cfg.env``; returns the run directory and the final evaluation."""
    tc = cfg.train
    device = resolve_device(cfg.device)
    run_dir = run_directory(cfg)
    seeds = run_seeds(cfg.seed)  # independent streams: actions, env goals, scheduler, evaluation
    random.seed(seeds.torch)
    np.random.seed(seeds.torch % 2**32)
    torch.manual_seed(seeds.torch)
    rng = np.random.default_rng(seeds.actions)

    suite = make_suite(cfg)
    num_tasks = suite.num_tasks
    num_slots = tc.num_slots or num_tasks
    with status(f"building {num_slots} environment slots of {cfg.env.suite} ({num_tasks} tasks)...", tc.progress):
        env = suite.make_env(num_slots, seed=seeds.env)
    spec = make_spec(suite, env)
    agent = make_agent(cfg, spec, device)
    sac = SAC(agent, num_tasks, spec.act_dim, cfg.sac, cfg.conflict)
    replay = MultiTaskReplay(num_tasks, tc.buffer_per_task, spec.obs_dim, spec.act_dim, device)
    sched_entry = registry.get("scheduler", cfg.scheduler.name)
    scheduler: Scheduler = sched_entry.target(cfg.scheduler, num_tasks, num_slots, seed=seeds.scheduler)
    eval_env = suite.make_eval_env(max(tc.eval_episodes, tc.final_eval_episodes), seed=seeds.evaluation)

    env_steps = updates = evaluations = 0
    if cfg.resume:
        state = load_checkpoint(latest_checkpoint(run_dir), device)
        try:
            sac.load_state_dict(state["sac"])
        except (RuntimeError, KeyError) as e:
            raise ConfigError(f"the checkpoint in '{run_dir}' does not fit this config's agent ({str(e).splitlines()[0]})")
        if "replay" in state:
            replay.load_state_dict(state["replay"])
        scheduler.load_state_dict(state["scheduler"])
        env.set_rng_state(state["env_rng"])
        rng.bit_generator.state = state["rng"]
        set_global_rng_state(state["global_rng"])
        env_steps, updates, evaluations = state["env_steps"], state["updates"], state.get("evaluations", 0)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    logger = Logger(run_dir)
    schedule = EvaluationSchedule(eval_env, list(spec.task_names), tc, logger.log)
    schedule.evaluations = evaluations

    def evaluate_now(final: bool = False) -> EvalResult:
        agent.eval()
        result = schedule.run(make_policy(agent), env_steps, final)
        agent.train()
        return result

    def checkpoint() -> None:
        state: dict[str, Any] = {
            "sac": sac.state_dict(), "scheduler": scheduler.state_dict(), "env_rng": env.get_rng_state(),
            "rng": rng.bit_generator.state, "global_rng": global_rng_state(),
            "env_steps": env_steps, "updates": updates, "evaluations": schedule.evaluations, "task_names": list(spec.task_names),
        }
        if tc.save_replay:
            state["replay"] = replay.state_dict()
        save_checkpoint(run_dir, env_steps, state, tc.keep_checkpoints)

    def batch_counts() -> int | np.ndarray:
        """Samples per task: equal, or shares of the same total following the scheduler."""
        if tc.batch_allocation == "equal":
            return tc.batch_per_task
        return np.maximum(1, np.round(scheduler.probabilities() * tc.batch_per_task * num_tasks)).astype(np.int64)

    def log_conflicts(stats: dict) -> None:
        record: dict[str, float] = {}
        for part, part_stats in stats.items():
            record.update(part_stats.metrics(f"conflict/{part}", list(spec.task_names)))
            logger.log_heatmap(f"conflict/{part}/cosine", part_stats.cosine.cpu().numpy(), env_steps, -1.0, 1.0)
        logger.log(env_steps, record)

    # Episode bookkeeping per slot, and per-task sums between two log points.
    tasks = scheduler.initial_tasks()
    obs = env.reset_slots(np.arange(num_slots), tasks)
    ep_return = np.zeros(num_slots)
    ep_success = np.zeros(num_slots, bool)
    ep_sums = {"return": np.zeros(num_tasks), "success": np.zeros(num_tasks), "count": np.zeros(num_tasks)}
    update_sums: dict[str, torch.Tensor] = {}
    update_count = 0
    # A resumed run without its replay refills one batch's worth per task before updating again.
    refill = tc.batch_per_task * num_tasks if env_steps and not len(replay) else 0
    learn_from = max(tc.warmup_steps, env_steps + refill)
    progress = TrainingProgress(tc.total_steps, env_steps, enabled=tc.progress)
    t_log, steps_at_log = time.perf_counter(), env_steps

    def log_training() -> None:
        """Losses, speed, temperatures, scheduler stats, episode stats, CARE attention."""
        nonlocal update_sums, update_count, ep_sums, t_log, steps_at_log
        now = time.perf_counter()
        record = {"train/steps_per_second": (env_steps - steps_at_log) / max(now - t_log, 1e-9), "train/updates": updates}
        t_log, steps_at_log = now, env_steps
        record.update({k: float(v) / update_count for k, v in update_sums.items()})
        update_sums, update_count = {}, 0
        alphas = sac.log_alpha.detach().exp().cpu().numpy()
        scheduler_stats = scheduler.stats()
        for i, name in enumerate(spec.task_names):
            record[f"alpha/{name}"] = alphas[i]
            record.update({f"scheduler/{k}/{name}": v[i] for k, v in scheduler_stats.items()})
            if ep_sums["count"][i]:
                record[f"train/episode_success/{name}"] = ep_sums["success"][i] / ep_sums["count"][i]
                record[f"train/episode_return/{name}"] = ep_sums["return"][i] / ep_sums["count"][i]
        ep_sums = {k: np.zeros(num_tasks) for k in ep_sums}
        if cfg.sac.task_weights:
            weights = task_loss_weights(sac.log_alpha).cpu().numpy()
            record.update({f"task_weight/{name}": weights[i] for i, name in enumerate(spec.task_names)})
        probe = replay.sample(tc.batch_per_task) if len(replay) else None
        attention = attention_by_task(agent, probe, num_tasks) if probe is not None else None
        if attention is not None:
            record.update(representation_metrics(agent, probe, list(spec.task_names)))
            for i, name in enumerate(spec.task_names):
                record.update({f"attention/{name}/{j}": float(w) for j, w in enumerate(attention[i])})
            logger.log_heatmap("attention/tasks_x_encoders", attention.cpu().numpy(), env_steps)
        logger.log(env_steps, record)

    with progress:
        while env_steps < tc.total_steps:
            # 1. Act: uniform random during warm-up, then the stochastic policy.
            if env_steps < tc.warmup_steps:
                action = rng.uniform(-1.0, 1.0, (num_slots, spec.act_dim)).astype(np.float32)
            else:
                action = agent.act(obs, tasks)
            step = env.step(action)
            # 2. Store: step.obs is the true next state even at a time limit (bootstrapped).
            replay.add(tasks, obs, action, step.reward, step.obs, step.terminated)
            env_steps += num_slots
            ep_return += step.reward
            ep_success |= step.success
            # 3. Finished episodes: record them, let the scheduler pick each slot's next task.
            obs = step.obs
            done = np.flatnonzero(step.terminated | step.truncated)
            if len(done):
                for s in done:
                    t = tasks[s]
                    ep_sums["return"][t] += ep_return[s]
                    ep_sums["success"][t] += ep_success[s]
                    ep_sums["count"][t] += 1
                    scheduler.record(int(t), bool(ep_success[s]))
                    tasks[s] = scheduler.next_task(int(s))
                obs = obs.copy()
                obs[done] = env.reset_slots(done, tasks[done])
                ep_return[done], ep_success[done] = 0.0, False
            # 4. Learn: one (or updates_per_step) SAC update(s) on a task-balanced batch.
            if env_steps >= learn_from:
                for _ in range(tc.updates_per_step):
                    batch = replay.sample(batch_counts())
                    metrics = sac.update(batch)
                    for k, v in metrics.items():
                        update_sums[k] = update_sums.get(k, 0.0) + v
                    update_count += 1
                    updates += 1
                    if cfg.conflict.monitor_every and updates % cfg.conflict.monitor_every == 0:
                        log_conflicts(sac.measure_conflicts(batch))
            # 5. Bookkeeping.
            if crossed(env_steps, num_slots, tc.log_every):
                log_training()
            if schedule.due(env_steps, num_slots):
                progress.set_eval(evaluate_now().success_mean)
            if crossed(env_steps, num_slots, tc.checkpoint_every):
                checkpoint()
            progress.advance(env_steps)

    final_eval = evaluate_now(final=True)
    checkpoint()
    logger.close()
    env.close()
    eval_env.close()
    return TrainResult(run_dir, env_steps, final_eval)
