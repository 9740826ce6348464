"""Reading a run directory's config and checkpoint with one-line errors: shared by
``mtrl.load`` / ``mtrl eval`` (mtrl/inference/policy.py) and distillation's teachers
(mtrl/learner/distillation.py), without the trainer; and the guard that keeps a new run out of a
folder that holds one (the trainer and benchmarks/sb3_peer.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtrl.checkpoint import (
    CheckpointError,
    checkpoint_dir,
    checkpoint_step,
    list_checkpoints,
    load_checkpoint,
    load_latest_good,
)
from mtrl.config import Config, build_dataclass, check_values, fill_legacy_keys, read_yaml, value_checks
from mtrl.errors import ConfigError


def read_run(run_dir: Path) -> Config:
    """The run's validated config. Unlike training, it does not require the optional
    packages of methods that only matter while training (``conflict.method``'s torchjd)."""
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise ConfigError(f"'{run_dir}' is not a run directory (no config.yaml); pass the folder `mtrl train` printed")
    cfg = build_dataclass(Config, fill_legacy_keys(read_yaml(config_path)), "")
    check_values(value_checks(cfg))
    return cfg


def read_checkpoint(
    run_dir: Path, checkpoint: str | Path | int | None, device: torch.device
) -> tuple[Path, dict[str, Any], list[str]]:
    """The checkpoint's path, its state and the reasons newer files were skipped (only when
    ``checkpoint`` is None: the newest that verifies)."""
    if checkpoint is None:
        if not list_checkpoints(run_dir):
            raise ConfigError(f"'{run_dir}' has no checkpoint yet; train longer or lower train.checkpoint_every")
        try:
            return load_latest_good(run_dir, device)
        except CheckpointError as e:
            raise ConfigError(str(e)) from None
    if isinstance(checkpoint, (int, np.integer)) and not isinstance(checkpoint, bool):
        path = checkpoint_dir(run_dir) / f"step_{int(checkpoint)}.pt"
        if not path.is_file():
            steps = ", ".join(str(checkpoint_step(p)) for p in list_checkpoints(run_dir)) or "none"
            raise ConfigError(
                f"'{run_dir}' has no checkpoint of step {int(checkpoint)}; its checkpoints' steps: {steps}"
            )
    else:
        path = Path(checkpoint)
        if not path.is_file():
            raise ConfigError(
                f"checkpoint '{path}' is not a file; pass a step number or a path such as "
                f"{checkpoint_dir(run_dir) / 'step_<N>.pt'}"
            )
    try:
        return path, load_checkpoint(path, device), []
    except CheckpointError as e:
        raise ConfigError(str(e)) from None


def check_summary(state: Any, path: Path) -> dict[str, Any]:
    """The checkpoint's state, after checking the entries that describe it (``task_names``,
    ``spec``, ``env_steps``, ``sac.agent``) are of the kinds mtrl writes; one-line
    ConfigError otherwise (a file in the right format holding something else)."""

    def wrong(what: str) -> ConfigError:
        return ConfigError(
            f"checkpoint '{path}' is not a training state mtrl wrote ({what}); was it copied from elsewhere?"
        )

    if not isinstance(state, dict):
        raise wrong("it holds no training state")
    names = state.get("task_names")
    if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise wrong("task_names is not a list of names")
    spec = state.get("spec")
    if spec is not None and not isinstance(spec, dict):
        raise wrong("spec is not a mapping")
    for key in ("obs_dim", "act_dim"):  # absent in older checkpoints; mtrl never writes None
        value = (spec or {}).get(key)
        if key in (spec or {}) and not (_integer(value) and value >= 1):
            raise wrong(f"spec.{key} is {value!r}")
    descriptions = (spec or {}).get("descriptions")
    if descriptions is not None and not (
        isinstance(descriptions, list) and all(isinstance(d, str) for d in descriptions)
    ):
        raise wrong("spec.descriptions is not a list of texts")
    steps = state.get("env_steps")
    if steps is not None and not _integer(steps):
        raise wrong(f"env_steps is {steps!r}")
    if not (isinstance(state.get("sac"), dict) and isinstance(state["sac"].get("agent"), dict)):
        raise wrong("it has no sac.agent weights")
    return state


def _integer(value: Any) -> bool:
    """An int (Python's or numpy's; a suite may report its sizes as numpy ints), not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def refuse_used_run_dir(run_dir: Path, how_to_continue: str = "", resuming: bool = False) -> None:
    """One-line :class:`ConfigError` when ``run_dir`` is a file or (unless ``resuming``)
    already holds a run (a config, metrics or checkpoints), so that nothing of it is
    overwritten. ``how_to_continue`` (e.g. ``"pass resume=true to continue it or "``) comes
    before "choose another run.dir"."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"run.dir '{run_dir}' is a file; choose a folder")
    if resuming:
        return
    if any((run_dir / name).exists() for name in ("config.yaml", "metrics.jsonl")) or list_checkpoints(run_dir):
        raise ConfigError(f"run.dir '{run_dir}' already holds a run; {how_to_continue}choose another run.dir")
