"""Checkpoints: ``RUN_DIR/checkpoints/step_<env steps>.pt`` with everything needed to
resume (networks, targets, optimisers, temperatures, the training loop's state, RNG
states) and, when asked, the replay buffer.

Each file is written atomically and carries a SHA-256 of its payload, so a truncated or
corrupt file is recognised and skipped: :func:`load_latest_good` falls back to the
previous checkpoint and says why. The newest ``keep`` files are kept (at least one).

Loading never runs code: files are read with ``torch.load(weights_only=True)``, which builds
only tensors and plain containers, numpy values being stored as tagged tensors
(:mod:`mtrl.safe_state`). A file that asks for anything else (a crafted pickle calling
``os.system``) is refused with :class:`UnsafeCheckpointError`, never skipped past: a checksum
proves a file intact, not safe. Checkpoints of earlier versions (``MTRL-CHECKPOINT-1`` or no
header) pickled numpy arrays: they load with numpy's array constructors allowed, and nothing
else; :func:`convert_checkpoint` rewrites a trusted one that needs more.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtrl.atomic_write import atomic_write
from mtrl.errors import RunError
from mtrl.safe_state import UnsupportedValue, decode, encode, legacy_numpy_globals

_PATTERN = re.compile(r"step_(\d+)\.pt$")
# then the payload's sha256 in hex, a newline, the torch.save payload (numpy values encoded)
MAGIC = b"MTRL-CHECKPOINT-2\n"
LEGACY_MAGIC = b"MTRL-CHECKPOINT-1\n"  # the same, numpy values pickled as numpy objects


class CheckpointError(RunError):
    """A checkpoint file that cannot be used (truncated, corrupt, not ours)."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint whose loading would call code other than tensor and container
    constructors. Refused outright: never skipped in favour of an older file."""


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
        return [
            k
            for key, value in state.items()
            for k in nonfinite_entries(value, f"{prefix}.{key}" if prefix else str(key))
        ]
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
    path = checkpoint_dir(run_dir) / f"step_{step}.pt"
    write_checkpoint_file(path, state, f"at step {step}")
    for old in list_checkpoints(run_dir)[:-keep]:
        old.unlink()
    return path


def write_checkpoint_file(path: Path, state: dict[str, Any], what: str) -> None:
    """Write ``state`` to ``path`` atomically: header, checksum, payload (numpy values encoded)."""
    try:
        safe = encode(state)
    except UnsupportedValue as e:  # a bug in mtrl or a plug-in: say what, write nothing
        raise RunError(
            f"refusing to save a checkpoint {what}: {e}, which cannot be loaded without "
            "running code; store tensors, numpy arrays and plain values"
        ) from None
    buffer = io.BytesIO()
    torch.save(safe, buffer)
    payload = buffer.getbuffer()
    digest = hashlib.sha256(payload).hexdigest().encode()

    def write(f) -> None:
        f.write(MAGIC + digest + b"\n")
        f.write(payload)

    atomic_write(path, write)


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Read and verify a checkpoint without running code; :class:`CheckpointError` if it is
    truncated or corrupt, :class:`UnsafeCheckpointError` if loading it would call anything
    but tensor and container constructors. Files written before checksums existed (plain
    ``torch.save``) load unverified, under the same restriction."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CheckpointError(f"cannot read {path}: {e.strerror}") from None
    legacy = not data.startswith(MAGIC)
    header = MAGIC if not legacy else LEGACY_MAGIC if data.startswith(LEGACY_MAGIC) else None
    payload: bytes | memoryview = data
    if header is not None:
        header_end = len(header) + 64
        digest, payload = data[len(header) : header_end], memoryview(data)[header_end + 1 :]
        if len(data) <= header_end or hashlib.sha256(payload).hexdigest().encode() != digest:
            raise CheckpointError(f"{path.name} is truncated or corrupt (checksum mismatch)")
    try:
        # earlier versions pickled numpy arrays: their constructors are allowed for those files only
        with torch.serialization.safe_globals(legacy_numpy_globals() if legacy else []):
            state = torch.load(io.BytesIO(payload), map_location=device, weights_only=True)
    except pickle.UnpicklingError as e:
        raise UnsafeCheckpointError(_refusal(path, payload, e, legacy)) from None
    except Exception as e:  # a legacy file cut short, or not a checkpoint at all
        raise CheckpointError(f"{path.name} cannot be read ({type(e).__name__}: {_first_line(e)})") from None
    try:
        return decode(state)
    except (ValueError, RecursionError) as e:
        raise CheckpointError(f"{path.name} cannot be read ({_first_line(e)})") from None


def _first_line(e: BaseException) -> str:
    return (str(e).splitlines() or [""])[0][:80]


def _refusal(path: Path, payload: bytes | memoryview, error: Exception, legacy: bool) -> str:
    """One line: which file, what it asked to call, and (older files) how to convert a trusted one."""
    try:
        wants = torch.serialization.get_unsafe_globals_in_checkpoint(io.BytesIO(payload))
        allowed = {g[1] if isinstance(g, tuple) else f"{g.__module__}.{g.__qualname__}" for g in legacy_numpy_globals()}
        wants = [w for w in wants if not legacy or w not in allowed]  # name what was refused
    except Exception:  # not a zip file: the unpickler's own message names the global
        wants = re.findall(r"GLOBAL (\S+)", str(error))[:1]
    what = f"loading it would call {', '.join(wants[:3])}" if wants else "it holds more than tensors and plain values"
    line = f"refused to load checkpoint {path}: {what}; mtrl never runs code from a checkpoint"
    if legacy:
        line += (
            f" (if it is a checkpoint of an older mtrl that you made yourself or trust: "
            f"mtrl convert-checkpoint {path} --trust)"
        )
    else:
        line += " (it was not written by mtrl)"
    return line


def convert_checkpoint(path: Path) -> Path:
    """Rewrite a *trusted* checkpoint of an earlier version in the current format, which
    loads without running code. Unpickling it fully runs whatever it holds: call this only
    on a file you made or trust. The original is kept as ``<name>.orig``."""
    path = Path(path)
    data = path.read_bytes()
    for header in (MAGIC, LEGACY_MAGIC):
        if data.startswith(header):
            data = data[len(header) + 65 :]
    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)  # trusted by the caller
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} is not an mtrl checkpoint (it holds no training state)")
    backup = path.with_name(path.name + ".orig")
    atomic_write(backup, lambda f: f.write(path.read_bytes()))
    write_checkpoint_file(path, state, f"converted from {path}")
    return backup


def load_latest_good(run_dir: Path, device: torch.device | str = "cpu") -> tuple[Path, dict[str, Any], list[str]]:
    """The newest checkpoint that verifies, its state, and one reason per newer file skipped.
    :class:`CheckpointError` when none is usable."""
    skipped: list[str] = []
    for path in reversed(list_checkpoints(run_dir)):
        try:
            return path, load_checkpoint(path, device), skipped
        except UnsafeCheckpointError:
            raise  # not a broken write: falling back would hide it
        except CheckpointError as e:
            skipped.append(str(e))
    why = f" ({'; '.join(skipped)})" if skipped else ""
    raise CheckpointError(f"'{run_dir}' has no usable checkpoint{why}")
