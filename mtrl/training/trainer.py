"""The training loop: collect a vector step, learn from the replay, then log, evaluate and
checkpoint when due (:meth:`Trainer.run`, on one screen). Its state lives in one
:class:`TrainingState`, which checkpoints save and a resume restores whole; setting a run up
(device, precision, run folder, resume point, seeds, its parts) is :func:`set_up`. Each
component reports its own metrics (mtrl/training/metrics.py); faults are contained where
they happen (mtrl/training/faults.py): an env that raises is rebuilt, a non-finite or exploding
update is skipped or masked (in :class:`SAC`) and counted, SIGINT/SIGTERM save a
checkpoint before the run exits."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import torch

from mtrl import registry
from mtrl.atomic_write import atomic_write, describe
from mtrl.builders import make_agent, make_policy, make_spec, make_suite, resolve_device
from mtrl.checkpoint import (
    CheckpointError,
    UnsafeCheckpointError,
    list_checkpoints,
    load_latest_good,
    save_checkpoint,
)
from mtrl.config import Config, ConfigError, config_yaml, fill_legacy_keys, read_yaml, to_dict
from mtrl.errors import RunError, RunStopped
from mtrl.hardware import resolve_precision
from mtrl.learner.agent import Agent, EnvSpec
from mtrl.learner.distillation import load_teachers
from mtrl.learner.replay import MultiTaskReplay
from mtrl.learner.sac import SAC
from mtrl.run_files import refuse_used_run_dir
from mtrl.seeding import RunSeeds, run_seeds
from mtrl.suite import MultiTaskVecEnv, StepResult, Suite
from mtrl.training.evaluation import EvalResult, EvaluationSchedule, crossed
from mtrl.training.faults import DivergenceGuard, EnvRebuilder, last_good_checkpoint, say
from mtrl.training.introspection import RepresentationProbe
from mtrl.training.logger import Logger, check_sinks, sinks_for
from mtrl.training.metrics import (
    EpisodeStats,
    MetricSource,
    RewardScales,
    SchedulerStats,
    SoftSharingSpread,
    TaskWeights,
    Temperatures,
    Throughput,
    UpdateMeans,
)
from mtrl.training.progress import TrainingProgress, status
from mtrl.training.scheduler import Scheduler
from mtrl.training.state import TrainingState
from mtrl.training.stop_signals import StopSignals


@dataclass
class TrainResult:
    run_dir: Path
    env_steps: int
    final_eval: EvalResult | None


@dataclass
class Run:
    """A run set up to train (:func:`set_up`): its config and folder, the suite and agent,
    the evaluation env, and the :class:`TrainingState` the loop changes."""

    cfg: Config
    run_dir: Path
    suite: Suite
    spec: EnvSpec
    agent: Agent
    state: TrainingState
    eval_env: MultiTaskVecEnv


def train(cfg: Config, on_checkpoint: Callable[[Path], None] | None = None) -> TrainResult:
    """Train ``cfg.agent`` on ``cfg.env``; returns the run directory and the final evaluation.
    ``on_checkpoint(path)`` runs after each checkpoint is written (a sweep copies the run to
    its storage there)."""
    trainer = Trainer(set_up(cfg), on_checkpoint)
    final_eval = trainer.run()
    return TrainResult(trainer.run_dir, trainer.state.env_steps, final_eval)


class Trainer:
    """The loop over a run: :meth:`collect_step`, :meth:`learn`, then :meth:`log_training`,
    :meth:`evaluate` and :meth:`checkpoint` when their periods are crossed (:meth:`run`).
    What a log record holds comes from the components' :class:`MetricSource` s."""

    def __init__(self, run: Run, on_checkpoint: Callable[[Path], None] | None = None):
        cfg, state = run.cfg, run.state
        self.cfg, self.tc, self.run_dir, self.state = cfg, cfg.train, run.run_dir, state
        self.on_checkpoint = on_checkpoint
        self.agent, self.sac, self.replay, self.scheduler = run.agent, state.sac, state.replay, state.scheduler
        self.eval_env, self.task_names = run.eval_env, list(run.spec.task_names)
        self.num_slots, self.act_dim = len(state.tasks), run.spec.act_dim
        try:
            self.logger = Logger(
                run.run_dir,
                resume_from=(state.log_offset, state.env_steps) if cfg.resume else None,
                sinks=sinks_for(cfg, run.run_dir),
            )
        except BaseException:
            state.env.close()
            run.eval_env.close()
            raise
        self.schedule = EvaluationSchedule(run.eval_env, self.task_names, self.tc, self.logger.log)
        self.schedule.evaluations = state.evaluations
        # the run's own config.yaml is the fully resolved config: resuming from it needs nothing else
        self.resume_hint = f"resume with: mtrl train {run.run_dir / 'config.yaml'} resume=true"
        self.env_faults = EnvRebuilder(state, run.suite, self.num_slots, self.resume_hint)
        self.guard = DivergenceGuard(state, self.sac, self.tc.divergence_patience, run.run_dir, self.task_names)
        self.update_means = UpdateMeans(state, self.task_names)
        self.progress = TrainingProgress(
            self.tc.total_steps, state.env_steps, enabled=self.tc.progress, warmup_end=state.learn_from
        )
        self.sources = self.metric_sources()

    def run(self) -> EvalResult:
        """Train to ``train.total_steps``; then the final evaluation and checkpoint."""
        state = self.state
        try:
            with self.progress, StopSignals() as stop:
                # once a stop can be caught: Ctrl-C from here on saves and says how to resume
                say(f"run directory: {self.run_dir}")
                while state.env_steps < self.tc.total_steps:
                    if not self.collect_step():
                        continue  # the env raised and was rebuilt: nothing was collected
                    if state.env_steps >= state.learn_from:
                        self.learn()
                    self.when_due(stop)
            final_eval = self.evaluate(final=True)
            state.finished = True
            self.checkpoint()
        finally:
            self.close()
        return final_eval

    def collect_step(self) -> bool:
        """Act in every slot (uniform random during warm-up, then the stochastic policy),
        store the transitions, end finished episodes. False when the env raised (rebuilt)."""
        state = self.state
        obs, tasks = state.obs, state.tasks
        if state.env_steps < self.tc.warmup_steps:
            action = state.rng.uniform(-1.0, 1.0, (self.num_slots, self.act_dim)).astype(np.float32)
        else:
            action = self.agent.act(obs, tasks)
        try:
            step = state.env.step(action)
        except Exception as error:  # a crashed simulator or worker: rebuild, drop the episodes
            self.env_faults.rebuild(error)
            return False
        # step.obs is the true next state even at a time limit (bootstrapped)
        self.replay.add(tasks, obs, action, step.reward, step.obs, step.terminated, step.truncated)
        self.sac.observe_rewards(tasks, step.reward, step.terminated, step.truncated)  # reward scaling sees raw rewards
        state.env_steps += self.num_slots
        state.ep_return += step.reward
        state.ep_success |= step.success
        self.end_episodes(tasks, step)
        self.env_faults.succeeded()
        return True

    def end_episodes(self, tasks: np.ndarray, step: StepResult) -> None:
        """Record the finished episodes; the scheduler picks each of their slots' next task."""
        state = self.state
        done = np.flatnonzero(step.terminated | step.truncated)
        state.obs = step.obs.copy() if len(done) else step.obs  # new episodes overwrite rows
        for s in done:
            t = tasks[s]
            state.ep_sums["return"][t] += state.ep_return[s]
            state.ep_sums["success"][t] += state.ep_success[s]
            state.ep_sums["count"][t] += 1
            self.scheduler.record(int(t), bool(state.ep_success[s]))
            tasks[s] = self.scheduler.next_task(int(s))
        if len(done):
            try:
                state.start_episodes(done)
            except Exception as error:
                self.env_faults.rebuild(error)

    def learn(self) -> None:
        """``train.updates_per_step`` SAC updates, each on a task-balanced batch."""
        for _ in range(self.tc.updates_per_step):
            batch = self.replay.sample(self.batch_counts())
            update = self.sac.update(batch)
            self.update_means.add(update)
            self.guard.check(update)
            self.state.updates += 1
            every = self.cfg.conflict.monitor_every
            if every and self.state.updates % every == 0:
                self.log_conflicts(self.sac.measure_conflicts(batch))

    def when_due(self, stop: StopSignals) -> None:
        """Progress; the log, evaluation and checkpoint whose period this step crossed; a stop
        signal checkpoints and ends the run."""
        state, slots = self.state, self.num_slots
        self.progress.advance(state.env_steps)
        if crossed(state.env_steps, slots, self.tc.log_every):
            self.log_training()
        if self.schedule.due(state.env_steps, slots):
            self.progress.set_eval(self.evaluate().success_mean)
        if crossed(state.env_steps, slots, self.tc.checkpoint_every) or stop.received:
            self.checkpoint()
        if stop.received:
            raise RunStopped(
                f"stopped by {stop.received} at step {state.env_steps:,}; checkpoint saved; {self.resume_hint}"
            )

    def metric_sources(self) -> list[MetricSource]:
        """What a training log record holds, one source per component, in this order."""
        sac, names, state, cfg = self.sac, self.task_names, self.state, self.cfg
        sources: list[MetricSource] = [
            Throughput(state),
            self.update_means,
            self.env_faults,
            self.guard,
            Temperatures(sac, names),
            SchedulerStats(self.scheduler, names),
            EpisodeStats(state, names),
        ]
        if cfg.sac.task_weights or cfg.sac.task_weighting != "none":
            sources.append(TaskWeights(sac, names, cfg.sac.task_weights))
        if sac.reward_divisors() is not None:
            sources.append(RewardScales(sac, names))
        sources.append(SoftSharingSpread(sac))
        # last: it draws a batch from the replay's random stream (see RepresentationProbe)
        sources.append(RepresentationProbe(self.agent, self.replay, self.tc.batch_per_task, names, self.heatmap))
        return sources

    def log_training(self) -> None:
        """One record of every source's metrics since the last log."""
        record: dict[str, float] = {}
        for source in self.sources:
            record.update(source.metrics())
        self.logger.log(self.state.env_steps, record)

    def heatmap(self, tag: str, matrix: np.ndarray, vmin: float | None = None, vmax: float | None = None) -> None:
        self.logger.log_heatmap(tag, matrix, self.state.env_steps, vmin, vmax)

    def log_conflicts(self, stats: dict) -> None:
        """``conflict.monitor_every``: the task gradients' conflicts, one record and a heatmap per part."""
        record: dict[str, float] = {}
        for part, part_stats in stats.items():
            record.update(part_stats.metrics(f"conflict/{part}", self.task_names))
            self.heatmap(f"conflict/{part}/cosine", part_stats.cosine.cpu().numpy(), -1.0, 1.0)
        self.logger.log(self.state.env_steps, record)

    def evaluate(self, final: bool = False) -> EvalResult:
        self.agent.eval()
        result = self.schedule.run(make_policy(self.agent), self.state.env_steps, final)
        self.agent.train()
        return result

    def checkpoint(self) -> None:
        state = self.state
        state.evaluations, state.log_offset = self.schedule.evaluations, self.logger.offset()
        try:
            path = save_checkpoint(
                self.run_dir, state.env_steps, state.state_dict(self.tc.save_replay), self.tc.keep_checkpoints
            )
        except RunError as e:
            raise RunError(f"{e}; {last_good_checkpoint(self.run_dir)}") from None
        if self.on_checkpoint is not None:
            self.on_checkpoint(path)

    def batch_counts(self) -> int | np.ndarray:
        """Samples per task: equal, or shares of the same total following the scheduler."""
        if self.tc.batch_allocation == "equal":
            return self.tc.batch_per_task
        total = self.tc.batch_per_task * len(self.task_names)
        return np.maximum(1, np.round(self.scheduler.probabilities() * total)).astype(np.int64)

    def close(self) -> None:
        self.logger.close()
        self.state.env.close()
        self.eval_env.close()


def first_sample_step(state: TrainingState) -> int:
    """The env step from which an empty replay can be sampled: n-step transitions reach it
    only after n steps of every slot."""
    return state.env_steps + state.replay.n_step * len(state.tasks)


def set_up(cfg: Config) -> Run:
    """Device, precision, run folder, resume point and seeds; then the run's parts, restored
    from the checkpoint when resuming. A failed start leaves no new folder behind; a good one
    writes the run's fully resolved ``config.yaml``."""
    check_sinks(cfg.run)  # an uninstalled optional sink is a config error before anything is written
    device = resolve_device(cfg.device)
    precision_note = None
    if cfg.sac.precision == "auto":  # the run's config.yaml records what auto chose
        cfg.sac.precision, why = resolve_precision("auto", device)
        precision_note = f"sac.precision=auto: {cfg.sac.precision} ({why})"
    run_dir = run_directory(cfg)
    resume = resume_point(cfg, run_dir, device)
    created = not run_dir.exists()
    writable(run_dir)
    if cfg.train.threads is not None:
        torch.set_num_threads(cfg.train.threads)
    seeds = run_seeds(cfg.seed)  # independent streams: actions, env goals, scheduler, evaluation
    random.seed(seeds.torch)
    np.random.seed(seeds.torch % 2**32)
    torch.manual_seed(seeds.torch)
    try:
        run = build_run(cfg, run_dir, device, seeds)
        if resume is not None:
            restore(run.state, *resume, cfg.train)
        else:
            run.state.start_episodes(np.arange(len(run.state.tasks)))
            run.state.learn_from = max(cfg.train.warmup_steps, first_sample_step(run.state))
    except BaseException:
        if created and run_dir.is_dir() and not any(run_dir.iterdir()):
            run_dir.rmdir()  # a failed start leaves nothing behind
        raise
    atomic_write(run_dir / "config.yaml", config_yaml(cfg))
    if precision_note:  # with the run's progress on stdout: stderr is for what a user must act on
        print(f"mtrl: {precision_note}", flush=True)
    return run


def build_run(cfg: Config, run_dir: Path, device: torch.device, seeds: RunSeeds) -> Run:
    """The suite, envs, agent, learner, replay and scheduler of ``cfg``, in one fresh state."""
    tc = cfg.train
    suite = make_suite(cfg)
    num_tasks = suite.num_tasks
    num_slots = tc.num_slots or num_tasks
    with status(f"building {num_slots} environment slots of {cfg.env.suite} ({num_tasks} tasks)...", tc.progress):
        env = suite.make_env(num_slots, seed=seeds.env)
    spec = make_spec(suite, env)
    agent = make_agent(cfg, spec, device)
    teachers = load_teachers(cfg.distill.teachers, spec, device) if cfg.distill.teachers else None
    sac = SAC(agent, num_tasks, spec.act_dim, cfg.sac, cfg.conflict, teachers, cfg.distill.weight, num_slots=num_slots)
    replay = MultiTaskReplay(
        num_tasks,
        tc.buffer_per_task,
        spec.obs_dim,
        spec.act_dim,
        device,
        n_step=cfg.sac.n_step,
        gamma=cfg.sac.gamma,
        num_slots=num_slots,
    )
    sched_entry = registry.get("scheduler", cfg.scheduler.name)
    scheduler: Scheduler = sched_entry.target(cfg.scheduler, num_tasks, num_slots, seed=seeds.scheduler)
    eval_env = suite.make_eval_env(max(tc.eval_episodes, tc.final_eval_episodes), seed=seeds.evaluation)
    state = TrainingState(
        sac,
        scheduler,
        env,
        replay,
        np.random.default_rng(seeds.actions),
        scheduler.initial_tasks(),
        tuple(spec.task_names),
        spec={"obs_dim": spec.obs_dim, "act_dim": spec.act_dim, "descriptions": list(spec.descriptions)},
    )
    return Run(cfg, run_dir, suite, spec, agent, state, eval_env)


def run_directory(cfg: Config) -> Path:
    """The run's folder; refuses to reuse a folder that holds a run unless resuming."""
    if cfg.run.dir:
        run_dir = Path(cfg.run.dir)
    elif cfg.resume:
        raise ConfigError("resume=true needs run.dir=<the run directory to continue>")
    else:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = Path("runs") / f"{cfg.run.name}-seed{cfg.seed}-{stamp}"
    refuse_used_run_dir(
        run_dir,
        "pass resume=true to continue it (from its latest checkpoint, or from the start if it has none) or ",
        resuming=cfg.resume,
    )
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
    check_resumed_agent(cfg, run_dir)
    try:
        path, state, skipped = load_latest_good(run_dir, device)
    except UnsafeCheckpointError as e:
        raise ConfigError(str(e)) from None
    except CheckpointError as e:
        raise ConfigError(f"{e}; start a new run with another run.dir") from None
    for why in skipped:
        say(f"skipped {why}")
    return path, state


def check_resumed_agent(cfg: Config, run_dir: Path) -> None:
    """Refuse to resume with agent settings other than those the run recorded: a setting
    without weights of its own (a ReLU, an attention temperature) would load the checkpoint silently
    into another network. Keys the run's config.yaml predates are compared at the value they
    ran with (``RUN_CONFIG_LEGACY``) or, when no such value is known, not at all."""
    saved_path = run_dir / "config.yaml"
    if not saved_path.is_file():
        return
    saved = fill_legacy_keys(read_yaml(saved_path)).get("agent") or {}
    now = to_dict(cfg)["agent"]
    if saved.get("name", now["name"]) != now["name"]:
        differs = ["name"]
    else:
        differs = [k for k in now if k in saved and saved[k] != now[k]]
    if differs:
        k = differs[0]
        raise ConfigError(
            f"resume=true with agent.{k}={now[k]!r}, but the run in '{run_dir}' was trained with {saved.get(k)!r}"
            f"{f' (and {len(differs) - 1} more agent keys)' if len(differs) > 1 else ''}; resume it with "
            f"`mtrl train {saved_path} resume=true`"
        )


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


def restore(state: TrainingState, path: Path, saved: dict, tc) -> None:
    """Load a checkpoint into a freshly built run; one line says where it resumes."""
    if not isinstance(saved, dict):
        raise ConfigError(f"the checkpoint {path} holds no training state; start a new run with another run.dir")
    try:
        state.sac.load_state_dict(saved["sac"])
    except Exception as e:  # whatever torch's loaders raise on a state of the wrong shape or kind
        why = (str(e).splitlines() or [""])[0]
        raise ConfigError(f"the checkpoint {path} does not fit this config's agent ({why})") from None
    if "loop" not in saved:
        raise ConfigError(
            f"the checkpoint {path} was written by an older mtrl and cannot be resumed; "
            "evaluate it with `mtrl eval`, or start a new run"
        )
    try:
        state.load_state_dict(saved)
    except Exception as e:  # a malformed file: numpy's, torch's and Python's RNG setters raise their own kinds
        why = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:100]}"
        raise ConfigError(
            f"the checkpoint {path} holds a training state this run cannot restore ({why}); "
            "start a new run with another run.dir"
        ) from None
    if state.finished and state.env_steps >= tc.total_steps:
        raise ConfigError(
            f"the run in '{path.parent.parent}' already finished at step {state.env_steps:,} with its "
            "final evaluation; raise train.total_steps to train it further, or use `mtrl eval`"
        )
    state.finished = False
    if not state.env.restores_episodes:
        state.start_episodes(np.arange(len(state.tasks)))  # the env cannot continue its episodes
    if not len(state.replay):  # without its replay, refill one batch's worth per task first
        state.learn_from = max(
            tc.warmup_steps, state.env_steps + tc.batch_per_task * state.sac.num_tasks, first_sample_step(state)
        )
    say(f"resumed from step {state.env_steps:,} ({path.name})")
