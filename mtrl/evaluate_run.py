"""Evaluate a finished (or running) run from its directory: ``mtrl eval RUN_DIR``."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from mtrl.atomic_write import atomic_write
from mtrl.checkpoint import CheckpointError, latest_checkpoint, load_latest_good
from mtrl.errors import WriteError
from mtrl.config import ConfigError, from_dict, read_yaml
from mtrl.evaluation import EvalResult, evaluate
from mtrl.seeding import run_seeds
from mtrl.trainer import make_agent, make_policy, make_spec, make_suite, resolve_device


def evaluate_run(run_dir: Path, episodes: int | None = None, device: str = "auto") -> tuple[EvalResult, Path]:
    """Load the run's config and latest checkpoint, evaluate, write ``RUN_DIR/eval.json``."""
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise ConfigError(f"'{run_dir}' is not a run directory (no config.yaml); pass the folder `mtrl train` printed")
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is None:
        raise ConfigError(f"'{run_dir}' has no checkpoint yet; train longer or lower train.checkpoint_every")
    if episodes is not None and episodes < 1:
        raise ConfigError(f"--episodes must be at least 1, got {episodes}")
    out = run_dir / "eval.json"
    unwritable = _why_unwritable(out)
    if unwritable:  # before an evaluation that can take minutes
        raise ConfigError(f"cannot write '{out}': {unwritable}; fix that and run `mtrl eval` again")
    cfg = from_dict(read_yaml(config_path))
    num_episodes = episodes or cfg.train.final_eval_episodes
    torch_device = resolve_device(device)
    suite = make_suite(cfg)
    try:  # the newest checkpoint that passes its checksum; newer broken ones are named
        checkpoint, state, skipped = load_latest_good(run_dir, torch_device)
    except CheckpointError as e:
        raise ConfigError(str(e)) from None
    for why in skipped:
        print(f"mtrl: warning: skipped {why}; evaluating {checkpoint.name}", file=sys.stderr)
    misfit = f"checkpoint '{checkpoint}' does not fit the run's config '{config_path}'"
    if not isinstance(state, dict):
        raise ConfigError(f"{misfit}: it holds no training state; was it copied from elsewhere?")
    saved_tasks = state.get("task_names")
    if saved_tasks is not None and list(saved_tasks) != list(suite.task_names):
        raise ConfigError(
            f"{misfit}: it was trained on {len(saved_tasks)} tasks ({_names(saved_tasks)}), the config's suite "
            f"has {suite.num_tasks} ({_names(suite.task_names)}); was it copied from another run?"
        )
    env = suite.make_eval_env(num_episodes, seed=run_seeds(cfg.seed).evaluation)
    try:
        spec = make_spec(suite, env)
        agent = make_agent(cfg, spec, torch_device)
        try:
            agent.load_state_dict(state["sac"]["agent"])
        except (RuntimeError, KeyError, TypeError) as e:
            why = f"it has no {e} entry" if isinstance(e, KeyError) else _first_line(e)
            raise ConfigError(f"{misfit} ({why}); was it copied from another run?") from None
        agent.eval()
        result = evaluate(make_policy(agent), env, list(spec.task_names), num_episodes, cfg.train.eval_stop_on_success)
    finally:
        env.close()
    payload = {"checkpoint": checkpoint.name, "env_steps": state.get("env_steps"), "episodes_per_task": num_episodes, **result.to_json()}
    try:
        atomic_write(out, json.dumps(payload, indent=2))
    except WriteError as e:
        raise ConfigError(
            f"{e}; the evaluation (mean success {result.success_mean:.0%}, {num_episodes} episodes per task) was not saved"
        ) from None
    return result, out


def _why_unwritable(path: Path) -> str | None:
    """Why ``path`` surely cannot be written, or None (a cheap check; the write may still fail)."""
    if path.is_dir():
        return "it is a directory"
    if not os.access(path.parent, os.W_OK):
        return "the run directory is not writable"
    return None


def _names(names: list[str], shown: int = 4) -> str:
    names = list(names)
    return ", ".join(names[:shown]) + (f", ... ({len(names) - shown} more)" if len(names) > shown else "")


def _first_line(e: BaseException, limit: int = 200) -> str:
    """The gist of an exception in one line: torch's ``Error(s) in loading state_dict for
    Agent:`` header is skipped for the first problem under it."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()] or [type(e).__name__]
    line = lines[1] if len(lines) > 1 and lines[0].endswith(":") else lines[0]
    return line if len(line) <= limit else line[: limit - 3] + "..."
