"""A trained policy to share: ``mtrl export RUN_DIR --out DIR`` and ``mtrl.load(DIR)``.

An export holds three files and nothing that can run code when read:

- ``policy.safetensors``: the agent's weights (actor, critics, encoders; tensors only, in
  the safetensors format, which stores raw arrays and a JSON header);
- ``policy.json``: task names, observation and action sizes, task descriptions, the env
  steps trained, the checkpoint it came from and the weights file's SHA-256;
- ``config.yaml``: the run's resolved config, from which the agent is rebuilt.

No optimiser, replay buffer, RNG state or metrics: an export acts, it does not resume.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from mtrl.atomic_write import atomic_write
from mtrl.config import config_yaml
from mtrl.errors import ConfigError

WEIGHTS, MANIFEST, CONFIG = "policy.safetensors", "policy.json", "config.yaml"
FORMAT = "mtrl-policy-1"


def _safetensors():
    try:
        import safetensors.torch
    except ImportError:
        raise ConfigError("exports are safetensors files: pip install 'mtrl[export]'") from None
    return safetensors.torch


def is_export(folder: Path) -> bool:
    return (Path(folder) / MANIFEST).is_file() and not (Path(folder) / "checkpoints").is_dir()


def export_policy(run_dir: Path, out: Path, checkpoint: str | int | None = None) -> Path:
    """Write the policy of ``run_dir``'s checkpoint (default: the newest that verifies) to
    the new or empty folder ``out``; returns the weights file. One-line ConfigErrors."""
    from mtrl.inference.policy import load  # the agent is built and checked as mtrl.load builds it

    st = _safetensors()
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"--out '{out}' exists and is not an empty folder; choose a new one")
    policy = load(run_dir, checkpoint, device="cpu")
    weights = {}
    for name, value in policy.agent.state_dict().items():
        if not isinstance(value, torch.Tensor):
            raise ConfigError(f"the agent's state entry '{name}' is not a tensor and cannot be exported")
        weights[name] = value.detach().contiguous().clone()  # tied weights become copies: safetensors stores no aliases
    blob = st.save(weights, metadata={"format": FORMAT})
    manifest = {
        "format": FORMAT,
        "task_names": list(policy.task_names),
        "obs_dim": policy.obs_dim,
        "act_dim": policy.act_dim,
        "descriptions": list(policy.spec.descriptions),
        "env_steps": policy.env_steps,
        "checkpoint": policy.checkpoint.name,
        "weights_sha256": hashlib.sha256(blob).hexdigest(),
    }
    atomic_write(out / WEIGHTS, blob)
    atomic_write(out / CONFIG, config_yaml(policy.config))
    atomic_write(out / MANIFEST, json.dumps(manifest, indent=2))
    return out / WEIGHTS


def read_export(folder: Path, device: torch.device) -> tuple[Path, dict[str, Any]]:
    """The weights file and a checkpoint-shaped state (``sac.agent``, ``task_names``,
    ``spec``, ``env_steps``) for :func:`mtrl.inference.policy.policy_from_checkpoint`."""
    st = _safetensors()
    folder = Path(folder)
    manifest_path, weights_path = folder / MANIFEST, folder / WEIGHTS
    try:
        manifest = json.loads(manifest_path.read_text())
        blob = weights_path.read_bytes()
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ConfigError(
            f"'{folder}' is not a readable export ({type(e).__name__}: "
            f"{(str(e).splitlines() or [''])[0][:100]}); export it again with mtrl export"
        ) from None
    keys = {
        "format": str,
        "task_names": list,
        "obs_dim": int,
        "act_dim": int,
        "descriptions": list,
        "weights_sha256": str,
    }
    if (
        not isinstance(manifest, dict)
        or any(not isinstance(manifest.get(k), t) for k, t in keys.items())
        or manifest["format"] != FORMAT
    ):
        raise ConfigError(f"'{manifest_path}' is not an {FORMAT} manifest; export the run again with mtrl export")
    if hashlib.sha256(blob).hexdigest() != manifest["weights_sha256"]:
        raise ConfigError(f"'{weights_path}' is truncated or corrupt (its SHA-256 differs from {MANIFEST}'s)")
    try:
        weights = st.load(blob)
    except Exception as e:  # safetensors' own errors: a bad header, sizes that do not add up
        raise ConfigError(
            f"'{weights_path}' cannot be read ({type(e).__name__}: {(str(e).splitlines() or [''])[0][:100]})"
        ) from None
    state = {
        "sac": {"agent": {k: v.to(device) for k, v in weights.items()}},
        "task_names": manifest["task_names"],
        "env_steps": manifest.get("env_steps"),
        "spec": {
            "obs_dim": manifest["obs_dim"],
            "act_dim": manifest["act_dim"],
            "descriptions": manifest["descriptions"],
        },
    }
    return weights_path, state
