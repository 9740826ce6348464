"""Where a sweep's trials keep their files, so that a sweep works on nodes that do not share
the driver's disk.

A sweep has a *storage* location for its trials' run directories (checkpoints, metrics,
logs): ``--storage PATH_OR_URI``, by default the sweep directory itself. A trial works in
place when the storage is a folder its node sees (one machine, or a file system all nodes
mount) and ``$MTRL_SWEEP_WORKDIR`` is unset on its node. Otherwise it works in a node-local
folder (``$MTRL_SWEEP_WORKDIR``, default the node's temporary folder), pulls its run from
the storage before it starts, and pushes its files there at every checkpoint and at its end.
Either way its small files (config.yaml, metrics.jsonl, TensorBoard events, eval.json, its
log) go back to the driver in the Ray task's result, and the driver writes them under
``--out``; checkpoints stay in the storage.

A URI goes through fsspec (a dependency of torch): ``file://`` as it is, ``s3://``,
``gs://``, ``abfs://``... with their fsspec packages (s3fs, gcsfs, adlfs). Checkpoint files
are only copied, byte for byte; they are read by mtrl.checkpoint's loader like any other.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from mtrl.errors import ConfigError, RunError

MARKER = ".mtrl-sweep-storage.json"  # in the storage: which sweep it belongs to
WORKDIR_ENV = "MTRL_SWEEP_WORKDIR"
CHECKPOINTS = "checkpoints"
SKIPPED = (".mtrl-write-test",)  # the trainer's write probe


@dataclass(frozen=True)
class Storage:
    """A sweep's storage: an absolute folder path or a URI, and the sweep that owns it."""

    location: str
    sweep_id: str
    default: bool = False  # the sweep directory itself (no --storage)

    @property
    def is_path(self) -> bool:
        return "://" not in self.location

    def filesystem(self) -> tuple[Any, str]:
        """(the fsspec filesystem, the root path on it)."""
        import fsspec

        return fsspec.core.url_to_fs(self.location)

    def where(self, rel: str) -> str:
        """``rel`` (a run directory's relative path) inside the storage, as a user writes it."""
        return f"{self.location.rstrip('/')}/{rel}"


def parse_storage(raw: str) -> str:
    """``--storage``'s value as an absolute path or a URI whose fsspec filesystem is
    installed; :class:`ConfigError` in one line otherwise. Touches nothing."""
    if not raw.strip():
        raise ConfigError("--storage is empty; pass a folder every node sees or a URI such as s3://bucket/sweeps/lr")
    if "://" not in raw:
        return str(Path(raw).expanduser().absolute())
    import fsspec

    protocol = raw.split("://", 1)[0]
    try:
        fsspec.get_filesystem_class(protocol)
    except ImportError as e:
        raise ConfigError(f"--storage '{raw}' needs a package for {protocol}:// ({str(e).splitlines()[0]})") from None
    except ValueError:
        raise ConfigError(
            f"--storage '{raw}': unknown protocol '{protocol}://'; use a folder or a URI "
            "fsspec knows (file://, s3://, gs://, ...)"
        ) from None
    return raw.rstrip("/")


def _read_marker(fs: Any, root: str) -> dict | None:
    try:
        return json.loads(fs.cat_file(f"{root}/{MARKER}"))
    except FileNotFoundError:
        return None
    except ValueError:
        return {}


def claim(storage: Storage, sweep_dir: Path) -> None:
    """Make ``storage`` this sweep's (the driver, before any trial starts): refuse one that
    holds another sweep, or other files; write the marker trials look for."""
    try:
        fs, root = storage.filesystem()
        marker = _read_marker(fs, root)
        if marker is not None and marker.get("sweep_id") != storage.sweep_id:
            raise ConfigError(
                f"--storage '{storage.location}' holds another sweep's files (its --out: "
                f"{marker.get('out', '?')}); choose another --storage"
            )
        if marker is None and not storage.default and fs.exists(root) and fs.ls(root):
            raise ConfigError(
                f"--storage '{storage.location}' already holds files but no mtrl sweep; choose a new or empty location"
            )
        if marker is None:
            fs.makedirs(root, exist_ok=True)
            fs.pipe_file(f"{root}/{MARKER}", json.dumps({"sweep_id": storage.sweep_id, "out": str(sweep_dir)}).encode())
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 (fsspec back ends raise their own kinds: no credentials, no bucket)
        raise ConfigError(
            f"cannot use --storage '{storage.location}' ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''})"
        ) from None


def sees(storage: Storage) -> bool:
    """Whether this node reaches the storage and finds this sweep's marker there."""
    try:
        fs, root = storage.filesystem()
        marker = _read_marker(fs, root)
    except Exception:  # noqa: BLE001 (unreachable, no credentials on this node)
        return False
    return bool(marker) and marker.get("sweep_id") == storage.sweep_id


def node_name() -> str:
    try:
        import ray

        return f"{os.uname().nodename} ({ray.util.get_node_ip_address()})"
    except Exception:  # noqa: BLE001 (outside Ray)
        return os.uname().nodename


@dataclass
class Workplace:
    """Where one trial works on its node, and how its files reach the storage and the driver."""

    root: Path  # the sweep's folder on this node: run directories and logs below it
    storage: Storage
    in_place: bool  # root is the storage folder itself
    synced: bool  # files are copied to and from the storage

    @property
    def returns_files(self) -> bool:
        """The driver cannot read the trial's files where they were written."""
        return not (self.storage.default and (self.in_place or self.synced))

    def checkpoints_at(self, run_rel: str) -> str:
        if self.in_place or self.synced:
            return self.storage.where(f"{run_rel}/{CHECKPOINTS}")
        return f"node {node_name()}: {self.root / run_rel / CHECKPOINTS}"

    def pull(self, rels: list[str]) -> None:
        """Replace this node's copy of ``rels`` (a run directory, a log) with the storage's."""
        if not self.synced:
            return
        fs, root = self.storage.filesystem()
        for rel in rels:
            local = self.root / rel
            shutil.rmtree(local) if local.is_dir() else local.unlink(missing_ok=True)
        for remote, rel in stored_files(fs, root, rels):
            (self.root / rel).parent.mkdir(parents=True, exist_ok=True)
            fs.get_file(remote, str(self.root / rel))

    def push(self, run_rel: str, log_rel: str) -> None:
        """Copy the trial's files to the storage: the small ones first, then checkpoints the
        storage lacks, then drop the storage's checkpoints this node no longer keeps. In
        that order a stored metrics.jsonl is always at least as long as any stored
        checkpoint's record of it, which a resume cuts it back to."""
        if not self.synced:
            return
        from mtrl.checkpoint import list_checkpoints

        fs, root = self.storage.filesystem()
        local = "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))
        for rel in self.small_files(run_rel, log_rel):
            _upload(fs, self.root / rel, f"{root}/{rel}", local)
        remote_dir = f"{root}/{run_rel}/{CHECKPOINTS}"
        stored = {PurePosixPath(p).name for p in fs.find(remote_dir)}
        kept = list_checkpoints(self.root / run_rel)
        for path in kept:
            if path.name not in stored:
                _upload(fs, path, f"{remote_dir}/{path.name}", local)
        for name in stored - {p.name for p in kept}:
            fs.rm_file(f"{remote_dir}/{name}")

    def small_files(self, run_rel: str, log_rel: str) -> list[str]:
        """The trial's files but its checkpoints, relative to ``root``."""
        run_dir = self.root / run_rel
        found = (
            [
                p
                for p in run_dir.rglob("*")
                if p.is_file()
                and p.name not in SKIPPED
                and not p.name.startswith(".")
                and p.relative_to(run_dir).parts[0] != CHECKPOINTS
            ]
            if run_dir.is_dir()
            else []
        )
        rels = sorted(p.relative_to(self.root).as_posix() for p in found)
        return rels + ([log_rel] if (self.root / log_rel).is_file() else [])

    def read_small_files(self, run_rel: str, log_rel: str) -> dict[str, bytes]:
        return {rel: (self.root / rel).read_bytes() for rel in self.small_files(run_rel, log_rel)}

    def tidy(self, rels: list[str]) -> None:
        """Drop this node's copy of a synced trial (the storage holds it), and folders left empty."""
        if not self.synced:
            return
        for rel in rels:
            path = self.root / rel
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
            for parent in path.parents:
                if parent == self.root.parent or not parent.is_dir() or any(parent.iterdir()):
                    break
                parent.rmdir()


def stored_files(fs: Any, root: str, rels: list[str], checkpoints: bool = True) -> list[tuple[str, str]]:
    """(path in the storage, path relative to the sweep) of the stored files of ``rels``
    (run directories or single files), without copies cut short by a kill."""
    pairs = []
    for rel in rels:
        remote = f"{root}/{rel}"
        if fs.isfile(remote):
            pairs.append((remote, rel))
            continue
        for path in fs.find(remote):
            sub = PurePosixPath(path).relative_to(PurePosixPath(remote))
            if not path.endswith(".part") and (checkpoints or sub.parts[0] != CHECKPOINTS):
                pairs.append((path, f"{rel}/{sub.as_posix()}"))
    return pairs


def fetch_small(storage: Storage, rels: list[str]) -> dict[str, bytes]:
    """The driver: the stored files of ``rels`` but checkpoints, by path relative to the sweep."""
    fs, root = storage.filesystem()
    return {rel: fs.cat_file(remote) for remote, rel in stored_files(fs, root, rels, checkpoints=False)}


def _upload(fs: Any, source: Path, target: str, local: bool) -> None:
    """One file to the storage; on a local file system through a ``.part`` file and a
    rename, so that a kill mid-copy leaves no half file (object stores put whole objects)."""
    fs.makedirs(str(PurePosixPath(target).parent), exist_ok=True)
    if not local:
        fs.put_file(str(source), target)
        return
    fs.put_file(str(source), f"{target}.part")
    fs.mv(f"{target}.part", target)


def workplace(storage: Storage) -> Workplace:
    """Where a trial works on this node (see the module docstring); :class:`RunError` when
    the user's ``--storage`` folder is not visible here."""
    local = os.environ.get(WORKDIR_ENV)
    visible = sees(storage)
    if storage.is_path and visible and not local:
        return Workplace(Path(storage.location), storage, in_place=True, synced=False)
    if not visible and not storage.default:
        kind = (
            "a folder every node mounts, or a URI such as s3://bucket/sweeps/lr"
            if storage.is_path
            else "its credentials or fsspec package on every node"
        )
        raise RunError(f"--storage '{storage.location}' is not reachable from node {node_name()}; use {kind}")
    root = Path(local or tempfile.gettempdir()) / f"mtrl-sweep-{storage.sweep_id}"
    return Workplace(root, storage, in_place=False, synced=visible)


def write_files(sweep_dir: Path, run_rel: str, files: dict[str, bytes]) -> None:
    """The driver: a trial's small files under the sweep directory, replacing what an earlier
    attempt left of its run there (but checkpoints)."""
    from mtrl.atomic_write import atomic_write

    run_dir = sweep_dir / run_rel
    for rel, data in files.items():
        if PurePosixPath(rel).is_absolute() or ".." in PurePosixPath(rel).parts:
            raise RunError(f"a trial returned a file outside the sweep directory: {rel}")
        atomic_write(sweep_dir / rel, data)
    keep = {sweep_dir / rel for rel in files}
    if run_dir.is_dir():
        for path in run_dir.rglob("*"):
            if path.is_file() and path not in keep and path.relative_to(run_dir).parts[0] != CHECKPOINTS:
                path.unlink()
