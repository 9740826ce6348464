"""Checkpoints: ``RUN_DIR/checkpoints/step_<env steps>.pt`` with everything needed to
resume (networks, targets, optimisers, temperatures, the training loop's state, RNG
states) and, when asked, the replay buffer.

Each file is written atomically and carries a SHA-256 of its payload, so a truncated or
corrupt file is recognised and skipped: :func:`load_latest_good` falls back to the
previous checkpoint and says why. The newest ``keep`` files are kept (at least one).
"""

from __future__ import annotations

import hashlib
import io
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtrl.atomic_write import atomic_write
from mtrl.errors import RunError

_PATTERN = re.compile(r"step_(\d+)\.pt$")
MAGIC = b"MTRL-CHECKPOINT-1\n"  # then the payload's sha256 in hex, a newline, the torch.save payload


class CheckpointError(RunError):
    """A checkpoint file that cannot be used (truncated, corrupt, not ours)."""


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def checkpoint_step(path: Path) -> int:
    return int(_PATTERN.search(Path(path).name).group(1))


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoint files of a run, oldest first."""
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _PATTERN.search(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def global_rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_global_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def nonfinite_entries(state: Any, prefix: str = "") -> list[str]:
    """Keys of the floating-point tensors in a nested state that hold NaN or inf."""
    if isinstance(state, torch.Tensor):
        return [prefix] if state.is_floating_point() and not bool(torch.isfinite(state).all()) else []
    if isinstance(state, dict):
        return [k for key, value in state.items() for k in nonfinite_entries(value, f"{prefix}.{key}" if prefix else str(key))]
    if isinstance(state, (list, tuple)):
        return [k for i, value in enumerate(state) for k in nonfinite_entries(value, f"{prefix}[{i}]")]
    return []


def save_checkpoint(run_dir: Path, step: int, state: dict[str, Any], keep: int) -> Path:
    """Write ``state`` as the checkpoint of ``step`` (atomically, with its checksum) and keep
    only the newest ``keep`` files. Refuses a state whose weights are not all finite."""
    if keep < 1:
        raise ValueError(f"keep must be at least 1, got {keep}")
    bad = nonfinite_entries(state.get("sac", {}))
    if bad:
        raise RunError(f"refusing to save a checkpoint at step {step}: non-finite values in {', '.join(bad[:3])}")
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getbuffer()
    digest = hashlib.sha256(payload).hexdigest().encode()
    path = checkpoint_dir(run_dir) / f"step_{step}.pt"

    def write(f) -> None:
        f.write(MAGIC + digest + b"\n")
        f.write(payload)

    atomic_write(path, write)
    for old in list_checkpoints(run_dir)[:-keep]:
        old.unlink()
    return path


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Read and verify a checkpoint; :class:`CheckpointError` if it is truncated or corrupt.
    Files written before checksums existed (plain ``torch.save``) load unverified."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise CheckpointError(f"cannot read {path}: {e.strerror}") from None
    if data.startswith(MAGIC):
        header_end = len(MAGIC) + 64
        digest, payload = data[len(MAGIC):header_end], memoryview(data)[header_end + 1:]
        if len(data) <= header_end or hashlib.sha256(payload).hexdigest().encode() != digest:
            raise CheckpointError(f"{Path(path).name} is truncated or corrupt (checksum mismatch)")
        source = io.BytesIO(payload)
    else:
        source = io.BytesIO(data)
    try:
        # Our own files hold numpy arrays and RNG tuples, hence weights_only=False.
        return torch.load(source, map_location=device, weights_only=False)
    except Exception as e:  # a legacy file cut short, or not a checkpoint at all
        raise CheckpointError(f"{Path(path).name} cannot be read ({type(e).__name__}: {str(e).splitlines()[0][:80]})") from None


def load_latest_good(run_dir: Path, device: torch.device | str = "cpu") -> tuple[Path, dict[str, Any], list[str]]:
    """The newest checkpoint that verifies, its state, and one reason per newer file skipped.
    :class:`CheckpointError` when none is usable."""
    skipped: list[str] = []
    for path in reversed(list_checkpoints(run_dir)):
        try:
            return path, load_checkpoint(path, device), skipped
        except CheckpointError as e:
            skipped.append(str(e))
    why = f" ({'; '.join(skipped)})" if skipped else ""
    raise CheckpointError(f"'{run_dir}' has no usable checkpoint{why}")
