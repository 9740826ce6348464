"""Atomic file writes: a reader (or a resumed run) sees the old file or the new one, never
half of one. Write to a temporary file beside the target, fsync it, rename it over the
target, fsync the folder. A failed write (disk full, no permission) removes the temporary
file and raises :class:`WriteError` with one line saying what could not be written."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO

from mtrl.errors import WriteError

_WHY = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "the file system is read-only",
}


def describe(error: OSError) -> str:
    """A short reason for an OS error: 'the disk is full', or its strerror."""
    return _WHY.get(error.errno, error.strerror or str(error))


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None] | bytes | str) -> Path:
    """Write ``path`` atomically; ``write`` is the content, or a function given the open
    binary file (e.g. ``lambda f: torch.save(state, f)``)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            if callable(write):
                write(f)
            else:
                f.write(write.encode() if isinstance(write, str) else write)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise WriteError(f"could not write '{path}': {describe(e)}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
