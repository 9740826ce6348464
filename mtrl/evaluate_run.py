"""Evaluate a finished (or running) run from its directory: ``mtrl eval RUN_DIR``."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from mtrl.checkpoint import latest_checkpoint, load_checkpoint
from mtrl.config import ConfigError, from_dict
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
    with open(config_path) as f:
        cfg = from_dict(yaml.safe_load(f))
    num_episodes = episodes or cfg.train.final_eval_episodes
    torch_device = resolve_device(device)
    suite = make_suite(cfg)
    env = suite.make_eval_env(num_episodes, seed=run_seeds(cfg.seed).evaluation)
    spec = make_spec(suite, env)
    agent = make_agent(cfg, spec, torch_device)
    state = load_checkpoint(checkpoint, torch_device)
    agent.load_state_dict(state["sac"]["agent"])
    agent.eval()
    result = evaluate(make_policy(agent), env, list(spec.task_names), num_episodes, cfg.train.eval_stop_on_success)
    env.close()
    out = run_dir / "eval.json"
    payload = {"checkpoint": checkpoint.name, "env_steps": state["env_steps"], "episodes_per_task": num_episodes, **result.to_json()}
    with open(out, "w") as f:
        json.dump(payload, f, indent=2)
    return result, out
