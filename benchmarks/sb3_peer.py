"""Stable-Baselines3's plain SAC configured as MT-SAC: a peer baseline that writes an mtrl
run directory, so that ``mtrl report`` sets it beside mtrl's own runs.

    python benchmarks/sb3_peer.py CONFIG [dotted.key=value ...]
    python benchmarks/sb3_peer.py configs/study-mt10-mtsac.yaml seed=1 run.dir=runs/x

CONFIG is an mtrl config (a YAML path or a name from configs/), so the budget is the one
mtrl's runs use. What is matched:

- the environments: mtrl's own ``MultiTaskVecEnv`` of ``cfg.env`` (built by the suite,
  seed ``cfg.seed``), one slot per task, slot s always runs task s, behind an SB3
  ``VecEnv`` whose observation is ``[obs || one_hot(task)]``; time limits are bootstrapped
  (``TimeLimit.truncated``), true terminations are not;
- the networks: ``cfg.agent.hidden_sizes`` for the actor and both critics (ReLU);
- the batch (``batch_per_task x tasks``), the buffer (``buffer_per_task x tasks``, which
  SB3 splits into one FIFO per slot, i.e. per task), ``updates_per_step`` gradient steps
  per vector step, the random warm-up, gamma, tau, the learning rate, the initial
  temperature and the target entropy (-|A| unless ``sac.target_entropy`` is set);
- the scoring: the trainer's own ``mtrl.training.evaluation.EvaluationSchedule`` (env, seed stream,
  episodes, rotating goals, final 50-goal evaluation) with the deterministic policy.

Everything else is SB3's default and part of the comparison: one temperature shared by
all tasks, uniform (not task-balanced) replay sampling, no gradient clipping, PyTorch's
default initialisation, log-std clamped to [-20, 2], critic loss halved. Logged: ``eval/*`` exactly as mtrl logs them,
``train/episode_success/<task>``, ``train/episode_return/<task>``,
``train/steps_per_second``, ``train/updates``, ``loss/critic`` (on mtrl's scale: SB3's
value x 2), ``loss/actor``, ``loss/alpha`` and ``alpha`` (SB3's single temperature).

Checkpoints and resume work as mtrl's (``train.checkpoint_every``, ``train.keep_checkpoints``,
``train.save_replay``; SIGTERM or Ctrl-C saves one and exits 143 or 130; the same command
with ``resume=true`` continues from the newest good one, read without running code by
:mod:`mtrl.checkpoint`), except that no final checkpoint is written after the final evaluation.
Metaworld's episodes start afresh on a resume, as in mtrl; without the saved replay, updates
wait until one batch is collected again, acting with the policy.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from gymnasium import spaces
from stable_baselines3 import SAC
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.save_util import recursive_getattr
from stable_baselines3.common.vec_env import VecEnv

from mtrl.builders import make_suite, resolve_device
from mtrl.checkpoint import (
    CheckpointError,
    UnsafeCheckpointError,
    global_rng_state,
    list_checkpoints,
    load_latest_good,
    nonfinite_entries,
    save_checkpoint,
    set_global_rng_state,
)
from mtrl.config import Config, ConfigError, load_config, parse_overrides, to_dict
from mtrl.errors import RunError, RunStopped, exit_status
from mtrl.run_files import refuse_used_run_dir
from mtrl.seeding import run_seeds
from mtrl.suite import MultiTaskVecEnv, Suite
from mtrl.training.evaluation import EvalResult, EvaluationSchedule, crossed
from mtrl.training.logger import Logger
from mtrl.training.stop_signals import StopSignals

METHOD_NAME = "sb3-sac"


# --- the environment: mtrl's MultiTaskVecEnv as an SB3 VecEnv -----------------------------


class OneHotTaskVecEnv(VecEnv):
    """An SB3 ``VecEnv`` over an mtrl ``MultiTaskVecEnv`` with one slot per task: slot s
    always runs task s. Observations are ``[obs || one_hot(task)]`` (float32); a finished
    episode is reset at once, its true last observation kept in
    ``infos[s]["terminal_observation"]`` and ``infos[s]["TimeLimit.truncated"]`` set for a
    time limit that is not a true termination (so SB3 bootstraps it, as mtrl does).

    Finished episodes are summed per task (return, success at any step) until
    :meth:`pop_episode_stats` takes them."""

    def __init__(self, env: MultiTaskVecEnv, task_names: list[str]):
        if env.num_slots != len(task_names):
            raise ValueError(f"one slot per task: the env has {env.num_slots} slots for {len(task_names)} tasks")
        self.env, self.task_names = env, list(task_names)
        n = len(task_names)
        self.tasks = np.arange(n)
        self.one_hot = np.eye(n, dtype=np.float32)
        observation_space = spaces.Box(-np.inf, np.inf, (env.obs_dim + n,), np.float32)
        action_space = spaces.Box(-1.0, 1.0, (env.act_dim,), np.float32)
        super().__init__(n, observation_space, action_space)
        self._actions: np.ndarray | None = None
        self.ep_return = np.zeros(n)
        self.ep_length = np.zeros(n, np.int64)
        self.ep_success = np.zeros(n, bool)
        self._sums = {k: np.zeros(n) for k in ("return", "success", "count")}

    def observe(self, obs: np.ndarray, slots: np.ndarray) -> np.ndarray:
        """``[obs || one_hot(task of slot)]`` for the given slots' rows."""
        return np.concatenate([np.asarray(obs, np.float32), self.one_hot[self.tasks[slots]]], 1)

    def reset(self) -> np.ndarray:
        slots = np.arange(self.num_envs)
        obs = self.env.reset_slots(slots, self.tasks[slots])
        self.ep_return[:], self.ep_length[:], self.ep_success[:] = 0.0, 0, False
        self._reset_seeds()  # the mtrl env was seeded when the suite built it
        self._reset_options()
        return self.observe(obs, slots)

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions, np.float32).reshape(self.num_envs, -1)

    def step_wait(self):
        step = self.env.step(self._actions)
        slots = np.arange(self.num_envs)
        obs = self.observe(step.obs, slots)  # a fresh array: the last observation of finished slots stays intact
        reward = np.asarray(step.reward, np.float32)
        terminated, truncated = np.asarray(step.terminated, bool), np.asarray(step.truncated, bool)
        self.ep_return += reward
        self.ep_length += 1
        self.ep_success |= np.asarray(step.success, bool)
        dones = terminated | truncated
        infos: list[dict[str, Any]] = [{} for _ in slots]
        done = np.flatnonzero(dones)
        for s in done:
            infos[s] = {
                "terminal_observation": obs[s].copy(),
                "TimeLimit.truncated": bool(truncated[s] and not terminated[s]),
                "is_success": bool(self.ep_success[s]),
                "episode": {"r": float(self.ep_return[s]), "l": int(self.ep_length[s])},
            }
            t = self.tasks[s]
            self._sums["return"][t] += self.ep_return[s]
            self._sums["success"][t] += self.ep_success[s]
            self._sums["count"][t] += 1
        if len(done):
            obs[done] = self.observe(self.env.reset_slots(done, self.tasks[done]), done)
            self.ep_return[done], self.ep_length[done], self.ep_success[done] = 0.0, 0, False
        return obs, reward, dones, infos

    def pop_episode_stats(self) -> dict[str, float]:
        """Mean return and success per task over the episodes finished since the last call."""
        record = {}
        for t, name in enumerate(self.task_names):
            if self._sums["count"][t]:
                record[f"train/episode_success/{name}"] = self._sums["success"][t] / self._sums["count"][t]
                record[f"train/episode_return/{name}"] = self._sums["return"][t] / self._sums["count"][t]
        self._sums = {k: np.zeros(self.num_envs) for k in self._sums}
        return record

    def close(self) -> None:
        self.env.close()

    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        n = len(self._indices(indices))
        if attr_name == "render_mode":
            return [None] * n
        return [getattr(self.env, attr_name)] * n

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        setattr(self.env, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list[Any]:
        return [getattr(self.env, method_name)(*method_args, **method_kwargs) for _ in self._indices(indices)]

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        return [False] * len(self._indices(indices))

    def _indices(self, indices) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        return [indices] if isinstance(indices, int) else list(indices)


# --- the SB3 model -------------------------------------------------------------------------


def check_supported(cfg: Config, num_tasks: int) -> None:
    """Settings that SB3's SAC cannot mirror: refused with a one-line ConfigError."""
    tc, sc = cfg.train, cfg.sac
    if not hasattr(cfg.agent, "hidden_sizes"):
        raise ConfigError(f"agent '{cfg.agent.name}' has no agent.hidden_sizes to give SB3's net_arch")
    if len({sc.actor_lr, sc.critic_lr, sc.alpha_lr}) != 1:
        raise ConfigError(
            f"SB3's SAC has one learning rate: sac.actor_lr ({sc.actor_lr}), sac.critic_lr "
            f"({sc.critic_lr}) and sac.alpha_lr ({sc.alpha_lr}) must be equal"
        )
    refused = {
        "train.num_slots": (tc.num_slots, None, "slot s always runs task s: leave it null (one slot per task)"),
        "scheduler.name": (cfg.scheduler.name, "round_robin", "slot s always runs task s"),
        "train.batch_allocation": (tc.batch_allocation, "equal", "SB3 samples its buffer uniformly"),
        "conflict.method": (cfg.conflict.method, "none", "SB3's SAC takes plain gradients"),
        # auto is mtrl's own choice of speed; SB3 as shipped trains in float32 whatever the CPU
        "sac.precision": (
            "float32" if sc.precision == "auto" else sc.precision,
            "float32",
            "SB3's SAC trains in float32",
        ),
    }
    for key, (value, wanted, why) in refused.items():
        if value != wanted and not (key == "train.num_slots" and value == num_tasks):
            raise ConfigError(
                f"{key}={value} has no SB3 equivalent ({why}); use {key}={wanted if wanted is not None else 'null'}"
            )


def sb3_device(cfg: Config) -> str:
    """cpu, unless the config says cuda (checked to exist as mtrl checks it)."""
    return str(resolve_device("cuda")) if cfg.device == "cuda" else "cpu"


def sb3_settings(cfg: Config, num_tasks: int) -> dict[str, Any]:
    """SB3 SAC keyword arguments that mirror the mtrl config; everything else is SB3's default."""
    tc, sc = cfg.train, cfg.sac
    return {
        "learning_rate": sc.critic_lr,
        "buffer_size": tc.buffer_per_task * num_tasks,  # SB3 keeps buffer_size / n_envs rows: a FIFO per task
        # SB3 acts randomly while num_timesteps < learning_starts and updates once
        # num_timesteps > learning_starts (both counted before/after the vector step as
        # mtrl does, env steps summed over tasks); mtrl updates once env_steps >= warmup.
        # warmup - 1 makes the first update (and the number of updates) identical.
        "learning_starts": max(tc.warmup_steps - 1, 0),
        "batch_size": tc.batch_per_task * num_tasks,
        "tau": sc.tau,
        "gamma": sc.gamma,
        "train_freq": 1,  # one vector step (one step of every task) per rollout
        "gradient_steps": tc.updates_per_step,
        "ent_coef": "auto" if sc.initial_alpha == 1.0 else f"auto_{sc.initial_alpha}",
        "target_entropy": "auto" if sc.target_entropy is None else float(sc.target_entropy),  # auto: -|A|
        "policy_kwargs": {"net_arch": list(cfg.agent.hidden_sizes)},  # actor and both critics
    }


class PeerSAC(SAC):
    """SB3's SAC, acting uniformly at random only during the warm-up (``random_until`` env
    steps). SB3 ties that to ``learning_starts``; a resume without the saved replay raises
    ``learning_starts`` to refill one batch, which must not make the agent act randomly again.
    A fresh run behaves exactly as SB3's SAC."""

    random_until = 0

    def _sample_action(self, learning_starts: int, action_noise=None, n_envs: int = 1):
        return super()._sample_action(self.random_until, action_noise, n_envs)


def build_model(cfg: Config, env: VecEnv) -> PeerSAC:
    """SB3's SAC ("MlpPolicy") configured as MT-SAC for ``env`` (one env per task)."""
    settings = sb3_settings(cfg, env.num_envs)
    model = PeerSAC("MlpPolicy", env, **settings, seed=cfg.seed, device=sb3_device(cfg), verbose=0)
    model.random_until = settings["learning_starts"]
    return model


def make_policy(model: SAC, num_tasks: int):
    """mtrl's evaluation policy (obs, task ids) -> actions: SB3's deterministic action on
    ``[obs || one_hot(task)]``."""
    eye = np.eye(num_tasks, dtype=np.float32)

    def policy(obs: np.ndarray, task: np.ndarray) -> np.ndarray:
        x = np.concatenate([np.asarray(obs, np.float32), eye[np.asarray(task)]], 1)
        return model.predict(x, deterministic=True)[0]

    return policy


def peer_evaluator(cfg: Config, suite: Suite, task_names: list[str], logger: Logger) -> EvaluationSchedule:
    """The trainer's own evaluation schedule, env and seed stream (``mtrl.training.evaluation``)."""
    tc = cfg.train
    env = suite.make_eval_env(max(tc.eval_episodes, tc.final_eval_episodes), seed=run_seeds(cfg.seed).evaluation)
    return EvaluationSchedule(env, task_names, tc, logger.log)


# SB3's logger keys (means over one train() call) -> mtrl's metric names, scale.
LOSS_KEYS = (
    ("train/critic_loss", "loss/critic", 2.0),  # SB3 halves the sum of the critics' MSEs; mtrl does not
    ("train/actor_loss", "loss/actor", 1.0),
    ("train/ent_coef_loss", "loss/alpha", 1.0),
    ("train/ent_coef", "alpha", 1.0),
)


class PeerRun(BaseCallback):
    """Called by SB3 at the start of every rollout, i.e. after the updates of the previous
    vector step: accumulates SB3's losses, logs every ``train.log_every`` steps, asks the
    shared evaluation schedule whether to evaluate and checkpoints when due. After a stop
    signal it checkpoints there, and the next env step ends SB3's ``learn``."""

    def __init__(self, cfg: Config, venv: OneHotTaskVecEnv, schedule: EvaluationSchedule, policy: Any, logger: Logger):
        super().__init__()
        self.cfg, self.venv, self.schedule, self.policy, self.mtrl_logger = cfg, venv, schedule, policy, logger
        self.step_seen = self.updates_seen = 0
        self.loss_sums: dict[str, float] = {}
        self.loss_count = 0
        self.t_start = self.t_log = time.perf_counter()
        self.steps_at_log = 0
        self.stop: StopSignals | None = None
        self.stopped_at: int | None = None  # the step of the checkpoint a stop signal saved

    def _on_step(self) -> bool:
        return self.stopped_at is None  # False discards this step (after the checkpoint) and ends learn

    def _on_rollout_start(self) -> None:
        self.after_updates()

    def after_updates(self) -> None:
        model = self.model
        step = int(model.num_timesteps)
        if step == self.step_seen:
            return
        self.step_seen = step
        new_updates = model._n_updates - self.updates_seen
        if new_updates:
            values = model.logger.name_to_value
            for src, dst, scale in LOSS_KEYS:
                if src in values:
                    self.loss_sums[dst] = self.loss_sums.get(dst, 0.0) + scale * float(values[src]) * new_updates
            self.loss_count += new_updates
            self.updates_seen = model._n_updates
        width = self.venv.num_envs
        if crossed(step, width, self.cfg.train.log_every):
            self.log_training(step)
        if self.schedule.due(step, width):
            self.report(step, self.schedule.run(self.policy, step))
        stopping = self.stop is not None and self.stop.received is not None
        if crossed(step, width, self.cfg.train.checkpoint_every) or stopping:
            save_peer_checkpoint(self, step)
            self.stopped_at = step if stopping else None

    def log_training(self, step: int) -> None:
        now = time.perf_counter()
        record: dict[str, float] = {
            "train/steps_per_second": (step - self.steps_at_log) / max(now - self.t_log, 1e-9),
            "train/updates": self.model._n_updates,
        }
        self.t_log, self.steps_at_log = now, step
        record.update({k: v / self.loss_count for k, v in self.loss_sums.items()} if self.loss_count else {})
        self.loss_sums, self.loss_count = {}, 0
        record.update(self.venv.pop_episode_stats())
        self.mtrl_logger.log(step, record)

    def report(self, step: int, result: EvalResult) -> None:
        elapsed = time.perf_counter() - self.t_start
        print(
            f"sb3_peer: step {step:,}/{self.cfg.train.total_steps:,}  eval success {result.success_mean:.3f}"
            f"  return {float(result.returns.mean()):.1f}  ({elapsed:.0f} s)",
            flush=True,
        )


# --- checkpoints: what a save holds, and restoring it -------------------------------------

REPLAY_ARRAYS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")


def peer_state(hooks: PeerRun, step: int) -> dict[str, Any]:
    """Everything a resume needs: SB3's networks, optimisers and temperature, its counters
    and last observations, the env, the episode and loss sums between two logs, the RNGs,
    the evaluation count, the position in ``metrics.jsonl`` and (``train.save_replay``) the
    replay buffer."""
    model, venv = hooks.model, hooks.venv
    modules, variables = model._get_torch_save_params()
    state: dict[str, Any] = {
        "sb3": {name: recursive_getattr(model, name).state_dict() for name in modules},
        "sb3_variables": {name: recursive_getattr(model, name).detach().clone() for name in variables},
        "counters": {"num_timesteps": step, "n_updates": model._n_updates, "episode_num": model._episode_num},
        "last_obs": model._last_obs,
        "env": venv.env.get_state(),
        "episodes": {
            "return": venv.ep_return,
            "length": venv.ep_length,
            "success": venv.ep_success,
            "sums": venv._sums,
        },
        "losses": {"sums": hooks.loss_sums, "count": hooks.loss_count},
        "global_rng": global_rng_state(),
        "action_space_rng": model.action_space.np_random.bit_generator.state,
        "evaluations": hooks.schedule.evaluations,
        "log_offset": hooks.mtrl_logger.offset(),
        "env_steps": step,
    }
    if hooks.cfg.train.save_replay:
        buffer = model.replay_buffer
        state["replay"] = {
            **{name: getattr(buffer, name) for name in REPLAY_ARRAYS},
            "pos": buffer.pos,
            "full": buffer.full,
        }
    return state


def save_peer_checkpoint(hooks: PeerRun, step: int) -> None:
    state = peer_state(hooks, step)
    bad = nonfinite_entries(state["sb3"])
    if bad:
        raise RunError(f"refusing to save a checkpoint at step {step}: non-finite values in {', '.join(bad[:3])}")
    save_checkpoint(Path(hooks.cfg.run.dir), step, state, hooks.cfg.train.keep_checkpoints)


def resume_point(cfg: Config, run_dir: Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest good checkpoint when ``resume=true`` (None: start from step 0)."""
    if not cfg.resume:
        return None
    if not list_checkpoints(run_dir):
        if not (run_dir / "config.yaml").is_file():
            raise ConfigError(f"run.dir '{run_dir}' holds no run to resume; drop resume=true to start one there")
        print(f"sb3_peer: '{run_dir}' has no checkpoint yet; starting it from step 0", file=sys.stderr)
        return None
    try:
        path, state, skipped = load_latest_good(run_dir)
    except UnsafeCheckpointError as e:
        raise ConfigError(str(e)) from None
    except CheckpointError as e:
        raise ConfigError(f"{e}; start a new run with another run.dir") from None
    for why in skipped:
        print(f"sb3_peer: skipped {why}", file=sys.stderr)
    return path, state


def restore(hooks: PeerRun, path: Path, saved: dict[str, Any]) -> None:
    """Load a checkpoint into a freshly built peer (model, env, callback, schedule)."""
    model, venv, tc = hooks.model, hooks.venv, hooks.cfg.train
    try:
        model.set_parameters(saved["sb3"], exact_match=True, device=model.device)
        with torch.no_grad():
            for name, value in saved["sb3_variables"].items():
                recursive_getattr(model, name).copy_(value)
    except Exception as e:  # whatever torch raises on a state of another shape or kind
        why = (str(e).splitlines() or [""])[0]
        raise ConfigError(f"the checkpoint {path} does not fit this config's networks ({why})") from None
    counters = saved["counters"]
    model.num_timesteps, model._n_updates = counters["num_timesteps"], counters["n_updates"]
    model._episode_num = counters["episode_num"]
    venv.env.set_state(saved["env"])
    episodes = saved["episodes"]
    if venv.env.restores_episodes:  # the env continues its episodes: so does SB3
        venv.ep_return, venv.ep_length, venv.ep_success = episodes["return"], episodes["length"], episodes["success"]
        model._last_obs = saved["last_obs"]
    else:
        model._last_obs = venv.reset()
    venv._sums = episodes["sums"]  # episodes finished before the checkpoint, not yet logged
    if "replay" in saved:
        buffer = model.replay_buffer
        for name in REPLAY_ARRAYS:
            getattr(buffer, name)[...] = saved["replay"][name]
        buffer.pos, buffer.full = saved["replay"]["pos"], saved["replay"]["full"]
    else:  # an empty replay: updates wait for one batch (as mtrl's), acting with the policy
        model.learning_starts = max(model.learning_starts, model.num_timesteps + tc.batch_per_task * venv.num_envs - 1)
    hooks.loss_sums, hooks.loss_count = dict(saved["losses"]["sums"]), saved["losses"]["count"]
    hooks.step_seen = hooks.steps_at_log = model.num_timesteps
    hooks.updates_seen = model._n_updates
    hooks.schedule.evaluations = saved["evaluations"]
    set_global_rng_state(saved["global_rng"])
    model.action_space.np_random.bit_generator.state = saved["action_space_rng"]
    print(f"sb3_peer: resumed from step {model.num_timesteps:,} ({path.name})", file=sys.stderr, flush=True)


# --- the run -------------------------------------------------------------------------------


@dataclass
class PeerResult:
    run_dir: Path
    model: SAC
    final_eval: EvalResult


def run_directory(cfg: Config) -> Path:
    """``cfg.run.dir``, required, and not a folder that already holds a run unless resuming."""
    if not cfg.run.dir:
        raise ConfigError("run.dir=<a new folder> is required")
    run_dir = Path(cfg.run.dir)
    refuse_used_run_dir(run_dir, "pass resume=true to continue it or ", resuming=cfg.resume)
    return run_dir


def run_config(cfg: Config, num_tasks: int, run_name: str | None) -> dict[str, Any]:
    """The resolved mtrl config with ``agent`` describing SB3's SAC and ``run.name`` =
    sb3-sac (or the name given on the command line), so reports group these runs apart."""
    import stable_baselines3

    data = to_dict(cfg)
    settings = sb3_settings(cfg, num_tasks)
    data["agent"] = {
        "name": METHOD_NAME,
        "hidden_sizes": list(cfg.agent.hidden_sizes),
        "sb3_version": stable_baselines3.__version__,
        "sb3": {**{k: v for k, v in settings.items() if k != "policy_kwargs"}, "max_grad_norm": None},
    }
    data["run"]["name"] = run_name or METHOD_NAME
    data["sac"]["precision"] = "float32"  # what SB3 trains in, so that auto and float32 runs are one method
    return data


def train_peer(cfg: Config, run_name: str | None = None) -> PeerResult:
    """Train SB3's SAC as MT-SAC on ``cfg.env`` for ``cfg.train.total_steps``; write the run.
    :class:`RunStopped` after a stop signal, with the checkpoint saved."""
    suite = make_suite(cfg)
    num_tasks = suite.num_tasks
    check_supported(cfg, num_tasks)
    run_dir = run_directory(cfg)
    resume = resume_point(cfg, run_dir)
    venv = OneHotTaskVecEnv(suite.make_env(num_tasks, seed=run_seeds(cfg.seed).env), suite.task_names)
    model = build_model(cfg, venv)
    data = run_config(cfg, num_tasks, run_name)

    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "config.yaml", "w") as f:
        yaml.safe_dump(data, f, sort_keys=False)
    saved = resume[1] if resume else {"log_offset": 0, "env_steps": 0}  # resume=true: the log restarts there
    logger = Logger(run_dir, resume_from=(saved["log_offset"], saved["env_steps"]) if cfg.resume else None)
    schedule = peer_evaluator(cfg, suite, list(suite.task_names), logger)
    policy = make_policy(model, num_tasks)
    hooks = PeerRun(cfg, venv, schedule, policy, logger)
    hooks.init_callback(model)
    try:
        if resume:
            restore(hooks, *resume)
        with StopSignals() as hooks.stop:
            # reset_num_timesteps=False: SB3 counts on from a resumed step (0 in a fresh run)
            steps_left = cfg.train.total_steps - model.num_timesteps
            model.learn(steps_left, callback=hooks, log_interval=None, reset_num_timesteps=False)
            if hooks.stopped_at is not None:
                raise RunStopped(
                    f"stopped by {hooks.stop.received} at step {hooks.stopped_at:,}; checkpoint saved; "
                    "resume with the same command and resume=true"
                )
            hooks.after_updates()  # the last vector step's log (and checkpoint)
        final_step = int(model.num_timesteps)
        final_eval = schedule.run(policy, final_step, final=True)
        hooks.report(final_step, final_eval)
    finally:
        logger.close()
        venv.close()
        schedule.env.close()
    return PeerResult(run_dir, model, final_eval)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(__doc__.strip().split("\n\n")[1], file=sys.stdout if args else sys.stderr)
        return 0 if args else 2
    try:
        cfg = load_config(args[0], args[1:])
        run_name = parse_overrides(args[1:]).get("run", {}).get("name")  # given on the command line
        result = train_peer(cfg, run_name)
    except (ConfigError, RunError) as e:  # RunStopped is a RunError
        return exit_status("sb3_peer", e)
    width = max(len(n) for n in result.final_eval.task_names)
    print(f"final success (mean {result.final_eval.success_mean:.3f}):")
    for name, s in zip(result.final_eval.task_names, result.final_eval.success):
        print(f"  {name:<{width}}  {s:.3f}")
    print(f"run directory: {result.run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
