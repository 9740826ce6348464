"""What a sweep driver killed with SIGKILL leaves on its machine, found and removed by the
next ``mtrl sweep``.

A driver that starts local Ray gives it a temporary folder of its own (``mtrl-ray-*`` in
the temp folder) holding ``mtrl-driver.json``: its pid and start time. Its normal end, an
error or Ctrl-C shuts Ray down and removes the folder. SIGKILL cannot: Ray's own processes
and the trials' workers die with the driver, but Ray's agents (``ray::DashboardAgent``,
``ray::RuntimeEnvAgent``) live on, and the folder stays. A folder whose driver is gone (no
process with its pid and start time) is such a leftover: its processes are the ones with
files open inside it; they are stopped (SIGTERM, then SIGKILL) and the folder removed, or,
where that is not allowed, one line says how.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

DRIVER_FILE = "mtrl-driver.json"
PREFIX = "mtrl-ray-"


def start_time(pid: int) -> str | None:
    """The process's start time (clock ticks since boot, from /proc), None where there is no
    /proc or no such process; with the pid it tells a process from a later one that reuses it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def mark_driver(temp: str, out: Path) -> None:
    """Record in Ray's temporary folder which process started it."""
    pid = os.getpid()
    Path(temp, DRIVER_FILE).write_text(json.dumps({"pid": pid, "start": start_time(pid), "out": str(out)}))


def alive(pid: int, start: str | None) -> bool:
    if start is not None and Path("/proc").is_dir():
        return start_time(pid) == start
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def holders(folder: Path) -> list[int]:
    """Processes with a file open inside ``folder`` (Linux /proc; others: none found)."""
    prefix, found = f"{folder}/", []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if any(os.readlink(fd).startswith(prefix) for fd in (proc / "fd").iterdir()):
                found.append(int(proc.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return [pid for pid in found if pid != os.getpid()]


def stop(pids: list[int], grace_s: float = 5.0) -> list[int]:
    """SIGTERM, then SIGKILL what is left after ``grace_s``; the pids that could not be signalled."""
    refused = []
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
            except PermissionError:
                refused.append(pid)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in pids if p not in refused):
            time.sleep(0.1)
        pids = [p for p in pids if Path(f"/proc/{p}").exists() and p not in refused]
        if not pids:
            break
    return sorted(set(refused))


def clean_leftovers(echo: Callable[[str], None]) -> None:
    """Remove what killed sweep drivers left in this machine's temp folder, one line each."""
    for folder in sorted(Path(tempfile.gettempdir()).glob(f"{PREFIX}*")):
        try:
            driver = json.loads((folder / DRIVER_FILE).read_text())
            pid = int(driver["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not ours, or its driver is still starting Ray
        if alive(pid, driver.get("start")):
            continue
        left = holders(folder)
        refused = stop(left)
        if refused:
            pids = " ".join(map(str, refused))
            echo(
                f"a killed sweep driver (pid {pid}, --out {driver.get('out')}) left Ray processes {pids} and {folder}; "
                f"stop them with: kill {pids}; rm -rf {folder}"
            )
            continue
        shutil.rmtree(folder, ignore_errors=True)
        echo(
            f"cleaned up after a killed sweep driver (pid {pid}, --out {driver.get('out')}): "
            f"stopped {len(left)} leftover Ray process(es), removed {folder}"
        )
