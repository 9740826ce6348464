"""Evaluate a finished (or running) run from its directory: ``mtrl eval RUN_DIR``, or a
policy ``mtrl export`` wrote: ``mtrl eval EXPORT_DIR``."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mtrl.atomic_write import atomic_write
from mtrl.builders import make_suite, resolve_device
from mtrl.config import ConfigError
from mtrl.errors import RenderUnavailable, WriteError, did_you_mean
from mtrl.inference.export import is_export, read_export
from mtrl.inference.policy import TrainedPolicy, policy_from_checkpoint
from mtrl.inference.video import Video, film, require_video_extra
from mtrl.run_files import read_checkpoint, read_run
from mtrl.seeding import run_seeds
from mtrl.training.evaluation import EvalResult, evaluate
from mtrl.training.progress import StepProgress

if TYPE_CHECKING:
    import torch

    from mtrl.config import Config
    from mtrl.suite import MultiTaskVecEnv, Suite


@dataclass
class EvalRun:
    """What ``mtrl eval`` did: the evaluation, where it was saved, the videos (``--video``)
    and, when videos could not be made, why (one line)."""

    result: EvalResult
    eval_json: Path
    videos: list[Video] = field(default_factory=list)
    video_problem: str | None = None


def evaluate_run(run_dir: Path, episodes: int | None = None, device: str = "auto") -> tuple[EvalResult, Path]:
    """Load the run's config and latest checkpoint, evaluate, write ``RUN_DIR/eval.json``."""
    run = evaluate_and_film(run_dir, episodes, device)
    return run.result, run.eval_json


def evaluate_and_film(
    run_dir: Path,
    episodes: int | None = None,
    device: str = "auto",
    video: bool = False,
    tasks: list[str] | None = None,
    progress: bool = False,
) -> EvalRun:
    """:func:`evaluate_run`, and with ``video`` one filmed episode of each of ``tasks`` (default:
    all) in ``RUN_DIR/videos/<task>.mp4``. Where the suite cannot render here (no OpenGL),
    one line says why and what to install (on stderr and in ``video_problem``) and the
    evaluation goes on. ``progress``: say what is evaluated, and show episodes done, speed
    and ETA (a bar on a terminal, lines otherwise)."""
    _check_arguments(episodes, video, tasks)
    cfg = read_run(run_dir)  # one-line errors: not a run directory, a bad config
    config_path = run_dir / "config.yaml"
    out = run_dir / "eval.json"
    unwritable = _why_unwritable(out)
    if unwritable:  # before an evaluation that can take minutes
        raise ConfigError(f"cannot write '{out}': {unwritable}; fix that and run `mtrl eval` again")
    num_episodes = episodes or cfg.train.final_eval_episodes
    torch_device = resolve_device(device)
    checkpoint, state, skipped = _read_newest(run_dir, torch_device)
    suite = make_suite(cfg)
    to_film = _tasks_to_film(tasks, list(suite.task_names)) if video else []
    for why in skipped:
        print(f"mtrl: warning: skipped {why}; evaluating {checkpoint.name}", file=sys.stderr)
    policy = policy_from_checkpoint(cfg, suite, checkpoint, state, config_path, torch_device)
    videos, problem = _film(policy, suite, cfg, to_film, run_dir / "videos") if to_film else ([], None)
    env = suite.make_eval_env(num_episodes, seed=run_seeds(cfg.seed).evaluation)
    try:
        _check_fits(policy, env, checkpoint, config_path)
        if progress:
            _say_evaluating(checkpoint, state, num_episodes, len(policy.task_names))
        with StepProgress("eval", num_episodes * len(policy.task_names), unit="episodes", enabled=progress) as bar:
            result = evaluate(
                policy,
                env,
                list(policy.task_names),
                num_episodes,
                cfg.train.eval_stop_on_success,
                on_episode=bar.advance,
            )
    finally:
        env.close()
    _save(out, checkpoint, state, num_episodes, result)
    return EvalRun(result, out, videos, problem)


def _check_arguments(episodes: int | None, video: bool, tasks: list[str] | None) -> None:
    """One-line ConfigError for an episode count below 1, ``--tasks`` without ``--video``, or
    ``--video`` without the video extra."""
    if episodes is not None and episodes < 1:
        raise ConfigError(f"--episodes must be at least 1, got {episodes}")
    if tasks and not video:
        raise ConfigError("--tasks picks the tasks to film; add --video (the evaluation always covers every task)")
    if video:
        require_video_extra()


def _read_newest(run_dir: Path, torch_device: torch.device) -> tuple[Path, dict, list[str]]:
    """The newest checkpoint that passes its checksum, its state and the newer broken ones
    skipped, or a one-line error when there is none; read before the suite is built (seconds
    for Meta-World). A folder ``mtrl export`` wrote: its one policy."""
    if is_export(run_dir):
        return (*read_export(run_dir, torch_device), [])
    return read_checkpoint(run_dir, None, torch_device)


def _film(
    policy: TrainedPolicy, suite: Suite, cfg: Config, to_film: list[str], videos_dir: Path
) -> tuple[list[Video], str | None]:
    """One filmed episode of each task in ``to_film``, on an env of its own so that eval.json is
    the same with or without videos; where the suite cannot render, no videos and why."""
    videos, problem = [], None
    film_env = suite.make_eval_env(1, seed=run_seeds(cfg.seed).evaluation)
    try:
        videos = film(policy, film_env, list(policy.task_names), to_film, videos_dir)
    except RenderUnavailable as e:
        problem = f"no videos: {e}"
        print(f"mtrl: warning: {problem}", file=sys.stderr, flush=True)
    finally:
        film_env.close()
    return videos, problem


def _check_fits(policy: TrainedPolicy, env: MultiTaskVecEnv, checkpoint: Path, config_path: Path) -> None:
    """One-line ConfigError when the checkpoint's agent does not fit the suite's env."""
    if env.obs_dim != policy.obs_dim or env.act_dim != policy.act_dim:
        raise ConfigError(
            f"checkpoint '{checkpoint}' does not fit the run's config '{config_path}': its agent takes "
            f"{policy.obs_dim}-d observations and {policy.act_dim}-d actions, the suite's env has "
            f"{env.obs_dim} and {env.act_dim}"
        )


def _say_evaluating(checkpoint: Path, state: dict, num_episodes: int, num_tasks: int) -> None:
    print(
        f"mtrl: evaluating {checkpoint} (step {state.get('env_steps', 0):,}): {num_episodes} episodes x "
        f"{num_tasks} tasks; Ctrl-C stops it and writes nothing",
        file=sys.stderr,
        flush=True,
    )


def _save(out: Path, checkpoint: Path, state: dict, num_episodes: int, result: EvalResult) -> None:
    """Write the evaluation to ``out`` (eval.json); a one-line ConfigError when it cannot be."""
    payload = {
        "checkpoint": checkpoint.name,
        "env_steps": state.get("env_steps"),
        "episodes_per_task": num_episodes,
        **result.to_json(),
    }
    try:
        atomic_write(out, json.dumps(payload, indent=2))
    except WriteError as e:
        raise ConfigError(
            f"{e}; the evaluation (mean success {result.success_mean:.0%}, {num_episodes} episodes "
            "per task) was not saved"
        ) from None


def _tasks_to_film(tasks: list[str] | None, names: list[str]) -> list[str]:
    """``--tasks`` checked against the run's tasks (all of them when not given)."""
    for name in tasks or []:
        if name not in names:
            raise ConfigError(
                f"--tasks: unknown task '{name}'{did_you_mean(name, names)}; the run's tasks are: {', '.join(names)}"
            )
    return list(dict.fromkeys(tasks)) if tasks else names


def _why_unwritable(path: Path) -> str | None:
    """Why ``path`` surely cannot be written, or None (a cheap check; the write may still fail)."""
    if path.is_dir():
        return "it is a directory"
    if not os.access(path.parent, os.W_OK):
        return "the run directory is not writable"
    return None
