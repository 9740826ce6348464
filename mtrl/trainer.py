"""The training loop, top to bottom: collect a vector step, store it, update, log,
evaluate, checkpoint. Its state lives in one :class:`TrainingState`, which checkpoints
save and a resume restores whole. Faults are contained where they happen: an env that
raises is rebuilt, a non-finite or exploding update is skipped or masked (in :class:`SAC`),
SIGINT/SIGTERM save a checkpoint before the run exits."""

from __future__ import annotations

import random
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from mtrl import registry
from mtrl.agent import Agent, EnvSpec
from mtrl.atomic_write import atomic_write, describe
from mtrl.checkpoint import CheckpointError, UnsafeCheckpointError, latest_checkpoint, list_checkpoints, load_latest_good, save_checkpoint
from mtrl.config import Config, ConfigError, config_yaml
from mtrl.errors import RunError, RunStopped
from mtrl.distillation import load_teachers
from mtrl.evaluation import EvalResult, EvaluationSchedule, crossed
from mtrl.hardware import resolve_precision
from mtrl.introspection import attention_by_task, representation_metrics
from mtrl.logger import Logger
from mtrl.progress import TrainingProgress, status
from mtrl.replay import MultiTaskReplay
from mtrl.sac import SAC, task_loss_weights
from mtrl.scheduler import Scheduler
from mtrl.seeding import run_seeds
from mtrl.stop_signals import StopSignals
from mtrl.suite import MultiTaskVecEnv, Suite
from mtrl.training_state import TrainingState, empty_episode_sums

# An env that fails this many times in a row (its rebuild included) stops the run.
MAX_ENV_FAULTS_IN_A_ROW = 3


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


def say(message: str) -> None:
    """One line on stderr for what a user must know about the run (resumes, faults)."""
    print(f"mtrl: {message}", file=sys.stderr, flush=True)


def run_directory(cfg: Config) -> Path:
    """The run's folder; refuses to reuse a folder that holds a run unless resuming."""
    if cfg.run.dir:
        run_dir = Path(cfg.run.dir)
    elif cfg.resume:
        raise ConfigError("resume=true needs run.dir=<the run directory to continue>")
    else:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = Path("runs") / f"{cfg.run.name}-seed{cfg.seed}-{stamp}"
    holds_run = (run_dir / "config.yaml").exists() or bool(list_checkpoints(run_dir))
    if not cfg.resume and holds_run:
        raise ConfigError(
            f"run.dir '{run_dir}' already holds a run; pass resume=true to continue it "
            "(from its latest checkpoint, or from the start if it has none) or choose another run.dir"
        )
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"run.dir '{run_dir}' is a file; choose a folder")
    return run_dir


def resume_point(cfg: Config, run_dir: Path, device: torch.device) -> tuple[Path, dict] | None:
    """The newest good checkpoint to resume from (saying which newer ones were skipped and
    why), or None when starting: resume=false, or a run that never reached a checkpoint."""
    if not cfg.resume:
        return None
    if not list_checkpoints(run_dir):
        if not (run_dir / "config.yaml").is_file():
            raise ConfigError(f"run.dir '{run_dir}' holds no run to resume; drop resume=true to start one there")
        say(f"'{run_dir}' has no checkpoint yet; starting it from step 0")
        return None
    try:
        path, state, skipped = load_latest_good(run_dir, device)
    except UnsafeCheckpointError as e:
        raise ConfigError(str(e)) from None
    except CheckpointError as e:
        raise ConfigError(f"{e}; start a new run with another run.dir") from None
    for why in skipped:
        say(f"skipped {why}")
    return path, state


def writable(run_dir: Path) -> Path:
    """Create the run folder, or say in one line why it cannot be written."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".mtrl-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"cannot write to run.dir '{run_dir}': {describe(e)}; choose a writable run.dir") from None
    return run_dir


def train(cfg: Config, on_checkpoint: Callable[[Path], None] | None = None) -> TrainResult:
    """Train ``cfg.agent`` on ``cfg.env``; returns the run directory and the final evaluation.
    ``on_checkpoint(path)`` runs after each checkpoint is written (a sweep copies the run to
    its storage there)."""
    tc = cfg.train
    device = resolve_device(cfg.device)
    precision_note = None
    if cfg.sac.precision == "auto":  # the run's config.yaml records what auto chose
        cfg.sac.precision, why = resolve_precision("auto", device)
        precision_note = f"sac.precision=auto: {cfg.sac.precision} ({why})"
    run_dir = run_directory(cfg)
    resume = resume_point(cfg, run_dir, device)
    created = not run_dir.exists()
    writable(run_dir)
    if tc.threads is not None:
        torch.set_num_threads(tc.threads)
    seeds = run_seeds(cfg.seed)  # independent streams: actions, env goals, scheduler, evaluation
    random.seed(seeds.torch)
    np.random.seed(seeds.torch % 2**32)
    torch.manual_seed(seeds.torch)

    try:
        suite = make_suite(cfg)
        num_tasks = suite.num_tasks
        num_slots = tc.num_slots or num_tasks
        with status(f"building {num_slots} environment slots of {cfg.env.suite} ({num_tasks} tasks)...", tc.progress):
            env = suite.make_env(num_slots, seed=seeds.env)
        spec = make_spec(suite, env)
        agent = make_agent(cfg, spec, device)
        teachers = load_teachers(cfg.distill.teachers, spec, device) if cfg.distill.teachers else None
        sac = SAC(agent, num_tasks, spec.act_dim, cfg.sac, cfg.conflict, teachers, cfg.distill.weight,
                  num_slots=num_slots)
        replay = MultiTaskReplay(num_tasks, tc.buffer_per_task, spec.obs_dim, spec.act_dim, device,
                                 n_step=cfg.sac.n_step, gamma=cfg.sac.gamma, num_slots=num_slots)
        sched_entry = registry.get("scheduler", cfg.scheduler.name)
        scheduler: Scheduler = sched_entry.target(cfg.scheduler, num_tasks, num_slots, seed=seeds.scheduler)
        eval_env = suite.make_eval_env(max(tc.eval_episodes, tc.final_eval_episodes), seed=seeds.evaluation)
        state = TrainingState(sac, scheduler, env, replay, np.random.default_rng(seeds.actions),
                              scheduler.initial_tasks(), tuple(spec.task_names),
                              spec={"obs_dim": spec.obs_dim, "act_dim": spec.act_dim, "descriptions": list(spec.descriptions)})
        if resume is not None:
            restore(state, *resume, tc)
        else:
            state.start_episodes(np.arange(num_slots))
            state.learn_from = tc.warmup_steps
    except BaseException:
        if created and run_dir.is_dir() and not any(run_dir.iterdir()):
            run_dir.rmdir()  # a failed start leaves nothing behind
        raise
    atomic_write(run_dir / "config.yaml", config_yaml(cfg))
    if precision_note:  # with the run's progress on stdout: stderr is for what a user must act on
        print(f"mtrl: {precision_note}", flush=True)
    logger = Logger(run_dir, resume_from=(state.log_offset, state.env_steps) if cfg.resume else None)
    schedule = EvaluationSchedule(eval_env, list(spec.task_names), tc, logger.log)
    schedule.evaluations = state.evaluations
    # the run's own config.yaml is the fully resolved config: resuming from it needs nothing else
    resume_hint = f"resume with: mtrl train {run_dir / 'config.yaml'} resume=true"

    def evaluate_now(final: bool = False) -> EvalResult:
        agent.eval()
        result = schedule.run(make_policy(agent), state.env_steps, final)
        agent.train()
        return result

    def checkpoint() -> None:
        state.evaluations, state.log_offset = schedule.evaluations, logger.offset()
        try:
            path = save_checkpoint(run_dir, state.env_steps, state.state_dict(tc.save_replay), tc.keep_checkpoints)
        except RunError as e:
            last = latest_checkpoint(run_dir)
            kept = f"the last good checkpoint is {last}" if last else "no checkpoint was saved"
            raise RunError(f"{e}; {kept}") from None
        if on_checkpoint is not None:
            on_checkpoint(path)

    def batch_counts() -> int | np.ndarray:
        """Samples per task: equal, or shares of the same total following the scheduler."""
        if tc.batch_allocation == "equal":
            return tc.batch_per_task
        return np.maximum(1, np.round(scheduler.probabilities() * tc.batch_per_task * num_tasks)).astype(np.int64)

    def log_conflicts(stats: dict) -> None:
        record: dict[str, float] = {}
        for part, part_stats in stats.items():
            record.update(part_stats.metrics(f"conflict/{part}", list(spec.task_names)))
            logger.log_heatmap(f"conflict/{part}/cosine", part_stats.cosine.cpu().numpy(), state.env_steps, -1.0, 1.0)
        logger.log(state.env_steps, record)

    def rebuild_env(error: Exception) -> MultiTaskVecEnv:
        """An env that raised is closed and built again; its running episodes are dropped."""
        nonlocal env_faults_in_a_row
        while True:
            state.faults["env_faults"] += 1
            env_faults_in_a_row += 1
            reason = f"{type(error).__name__}: {str(error).splitlines()[0][:100] if str(error) else ''}"
            if env_faults_in_a_row >= MAX_ENV_FAULTS_IN_A_ROW:
                raise RunError(f"the environment failed {MAX_ENV_FAULTS_IN_A_ROW} times in a row at step "
                               f"{state.env_steps} ({reason}); the checkpoints are kept; {resume_hint}")
            say(f"the environment failed at step {state.env_steps} ({reason}); rebuilding it, its running episodes are dropped")
            try:
                state.env.close()
            except Exception:
                pass
            try:
                state.env = suite.make_env(num_slots, seed=int(state.rng.integers(2**31)))
                state.start_episodes(np.arange(num_slots))
                return state.env
            except Exception as e:
                error = e

    def record_update(metrics: dict[str, torch.Tensor]) -> None:
        """Sum the update's metrics for the next log; count divergence, stop when it persists."""
        skipped, masked = int(metrics["divergence/skipped_steps"]), int(metrics["divergence/masked_tasks"])
        if skipped < 3:  # an update skipped whole has NaN losses: leave it out of the means
            for k, v in metrics.items():
                state.update_sums[k] = state.update_sums.get(k, 0.0) + v
            state.update_count += 1
        if not (skipped or masked):
            state.bad_updates_in_a_row = 0
            return
        state.faults["skipped_steps"] += skipped
        if masked:
            state.faults["masked"] += sac.last_masked.cpu().numpy()
        state.bad_updates_in_a_row += 1
        if state.bad_updates_in_a_row >= tc.divergence_patience:
            last = latest_checkpoint(run_dir)
            kept = f"the last good checkpoint is {last}" if last else "no checkpoint was saved"
            raise RunError(f"training diverged: {state.bad_updates_in_a_row} updates in a row had non-finite or exploding "
                           f"losses (step {state.env_steps}); {kept}; lower the learning rates or sac.max_grad_norm")

    progress = TrainingProgress(tc.total_steps, state.env_steps, enabled=tc.progress, warmup_end=state.learn_from)
    t_log, steps_at_log = time.perf_counter(), state.env_steps
    env_faults_in_a_row = 0

    def log_training() -> None:
        """Losses, speed, temperatures, scheduler stats, episode stats, faults, CARE attention."""
        nonlocal t_log, steps_at_log
        now = time.perf_counter()
        record = {"train/steps_per_second": (state.env_steps - steps_at_log) / max(now - t_log, 1e-9), "train/updates": state.updates}
        t_log, steps_at_log = now, state.env_steps
        for k, v in state.update_sums.items():  # means since the last log; per-task vectors by task name
            mean = v / max(state.update_count, 1)
            if mean.dim():
                record.update({f"{k}/{name}": float(mean[i]) for i, name in enumerate(spec.task_names)})
            else:
                record[k] = float(mean)
        state.update_sums, state.update_count = {}, 0
        record["faults/env_rebuilds"] = state.faults["env_faults"]
        record["divergence/skipped_steps_total"] = state.faults["skipped_steps"]
        alphas = sac.log_alpha.detach().exp().cpu().numpy()
        scheduler_stats = scheduler.stats()
        sums = state.ep_sums
        for i, name in enumerate(spec.task_names):
            record[f"alpha/{name}"] = alphas[i]
            record[f"divergence/masked/{name}"] = state.faults["masked"][i]
            record.update({f"scheduler/{k}/{name}": v[i] for k, v in scheduler_stats.items()})
            if sums["count"][i]:
                record[f"train/episode_success/{name}"] = sums["success"][i] / sums["count"][i]
                record[f"train/episode_return/{name}"] = sums["return"][i] / sums["count"][i]
        state.ep_sums = empty_episode_sums(num_tasks)
        if cfg.sac.task_weights or cfg.sac.task_weighting != "none":
            weights = (task_loss_weights(sac.log_alpha) if cfg.sac.task_weights else 1.0) * sac.weighting.last
            weights = weights.cpu().numpy()
            record.update({f"task_weight/{name}": weights[i] for i, name in enumerate(spec.task_names)})
        divisors = sac.reward_divisors()
        if divisors is not None:
            record.update({f"reward_scale/{name}": 1.0 / divisors[i] for i, name in enumerate(spec.task_names)})
        for net, modules in sac.penalized.items():  # soft sharing: how alike the tasks' networks are
            spreads = [m.relative_spread() for m in modules if hasattr(m, "relative_spread")]
            if spreads:
                record[f"soft_sharing/spread_{net}"] = float(np.mean(spreads))
        probe = replay.sample(tc.batch_per_task) if len(replay) else None
        attention = attention_by_task(agent, probe, num_tasks) if probe is not None else None
        if attention is not None:
            record.update(representation_metrics(agent, probe, list(spec.task_names)))
            for i, name in enumerate(spec.task_names):
                record.update({f"attention/{name}/{j}": float(w) for j, w in enumerate(attention[i])})
            logger.log_heatmap("attention/tasks_x_encoders", attention.cpu().numpy(), state.env_steps)
        logger.log(state.env_steps, record)

    try:
        with progress, StopSignals() as stop:
            say(f"run directory: {run_dir}")  # once a stop can be caught: Ctrl-C from here on saves and says how to resume
            while state.env_steps < tc.total_steps:
                # 1. Act: uniform random during warm-up, then the stochastic policy.
                obs, tasks = state.obs, state.tasks
                if state.env_steps < tc.warmup_steps:
                    action = state.rng.uniform(-1.0, 1.0, (num_slots, spec.act_dim)).astype(np.float32)
                else:
                    action = agent.act(obs, tasks)
                try:
                    step = state.env.step(action)
                except Exception as error:  # a crashed simulator or worker: rebuild, drop the episodes
                    rebuild_env(error)
                    continue
                # 2. Store: step.obs is the true next state even at a time limit (bootstrapped).
                replay.add(tasks, obs, action, step.reward, step.obs, step.terminated, step.truncated)
                sac.observe_rewards(tasks, step.reward, step.terminated, step.truncated)  # reward scaling sees raw rewards
                state.env_steps += num_slots
                state.ep_return += step.reward
                state.ep_success |= step.success
                # 3. Finished episodes: record them, let the scheduler pick each slot's next task.
                done = np.flatnonzero(step.terminated | step.truncated)
                state.obs = step.obs.copy() if len(done) else step.obs  # new episodes overwrite rows
                for s in done:
                    t = tasks[s]
                    state.ep_sums["return"][t] += state.ep_return[s]
                    state.ep_sums["success"][t] += state.ep_success[s]
                    state.ep_sums["count"][t] += 1
                    scheduler.record(int(t), bool(state.ep_success[s]))
                    tasks[s] = scheduler.next_task(int(s))
                if len(done):
                    try:
                        state.start_episodes(done)
                    except Exception as error:
                        rebuild_env(error)
                env_faults_in_a_row = 0
                # 4. Learn: one (or updates_per_step) SAC update(s) on a task-balanced batch.
                if state.env_steps >= state.learn_from:
                    for _ in range(tc.updates_per_step):
                        batch = replay.sample(batch_counts())
                        record_update(sac.update(batch))
                        state.updates += 1
                        if cfg.conflict.monitor_every and state.updates % cfg.conflict.monitor_every == 0:
                            log_conflicts(sac.measure_conflicts(batch))
                # 5. Bookkeeping.
                progress.advance(state.env_steps)
                if crossed(state.env_steps, num_slots, tc.log_every):
                    log_training()
                if schedule.due(state.env_steps, num_slots):
                    progress.set_eval(evaluate_now().success_mean)
                if crossed(state.env_steps, num_slots, tc.checkpoint_every) or stop.received:
                    checkpoint()
                if stop.received:
                    raise RunStopped(f"stopped by {stop.received} at step {state.env_steps:,}; checkpoint saved; {resume_hint}")

        final_eval = evaluate_now(final=True)
        state.finished = True
        checkpoint()
    finally:
        logger.close()
        state.env.close()
        eval_env.close()
    return TrainResult(run_dir, state.env_steps, final_eval)


def restore(state: TrainingState, path: Path, saved: dict, tc) -> None:
    """Load a checkpoint into a freshly built run; one line says where it resumes."""
    if not isinstance(saved, dict):
        raise ConfigError(f"the checkpoint {path} holds no training state; start a new run with another run.dir")
    try:
        state.sac.load_state_dict(saved["sac"])
    except Exception as e:  # whatever torch's loaders raise on a state of the wrong shape or kind
        raise ConfigError(f"the checkpoint {path} does not fit this config's agent ({(str(e).splitlines() or [''])[0]})") from None
    if "loop" not in saved:
        raise ConfigError(f"the checkpoint {path} was written by an older mtrl and cannot be resumed; "
                          "evaluate it with `mtrl eval`, or start a new run")
    try:
        state.load_state_dict(saved)
    except Exception as e:  # a malformed file: numpy's, torch's and Python's RNG setters raise their own kinds
        raise ConfigError(f"the checkpoint {path} holds a training state this run cannot restore "
                          f"({type(e).__name__}: {(str(e).splitlines() or [''])[0][:100]}); start a new run with another run.dir") from None
    if state.finished and state.env_steps >= tc.total_steps:
        raise ConfigError(f"the run in '{path.parent.parent}' already finished at step {state.env_steps:,} with its final "
                          "evaluation; raise train.total_steps to train it further, or use `mtrl eval`")
    state.finished = False
    if not state.env.restores_episodes:
        state.start_episodes(np.arange(len(state.tasks)))  # the env cannot continue its episodes
    if not len(state.replay):  # without its replay, refill one batch's worth per task first
        state.learn_from = max(tc.warmup_steps, state.env_steps + tc.batch_per_task * state.sac.num_tasks)
    say(f"resumed from step {state.env_steps:,} ({path.name})")
