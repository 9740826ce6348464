"""Reading a run directory's config and checkpoint with one-line errors: shared by
``mtrl.load`` / ``mtrl eval`` (mtrl/policy.py) and distillation's teachers
(mtrl/distillation.py), without the trainer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtrl.checkpoint import CheckpointError, checkpoint_dir, checkpoint_step, list_checkpoints, load_checkpoint, load_latest_good
from mtrl.config import Config, build_dataclass, check_values, read_yaml, value_checks
from mtrl.errors import ConfigError


def read_run(run_dir: Path) -> Config:
    """The run's validated config. Unlike training, it does not require the optional
    packages of methods that only matter while training (``conflict.method``'s torchjd)."""
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise ConfigError(f"'{run_dir}' is not a run directory (no config.yaml); pass the folder `mtrl train` printed")
    cfg = build_dataclass(Config, read_yaml(config_path), "")
    check_values(value_checks(cfg))
    return cfg


def read_checkpoint(run_dir: Path, checkpoint: str | Path | int | None, device: torch.device) -> tuple[Path, dict[str, Any], list[str]]:
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
            raise ConfigError(f"'{run_dir}' has no checkpoint of step {int(checkpoint)}; its checkpoints' steps: {steps}")
    else:
        path = Path(checkpoint)
        if not path.is_file():
            raise ConfigError(f"checkpoint '{path}' is not a file; pass a step number or a path such as "
                              f"{checkpoint_dir(run_dir) / 'step_<N>.pt'}")
    try:
        return path, load_checkpoint(path, device), []
    except CheckpointError as e:
        raise ConfigError(str(e)) from None
