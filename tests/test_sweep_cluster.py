"""`mtrl sweep` on a real multi-node Ray cluster on this machine (ray.cluster_utils): a head
without CPUs and two worker nodes, each of whose trials works in its own node-local folder
(MTRL_SWEEP_WORKDIR, set per node) that the driver never reads, with checkpoints in a
``file://`` storage that the sweep reaches only through fsspec, as it would an object store."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from mtrl.cli import main
from mtrl.sweeps.storage import WORKDIR_ENV
from mtrl.training.logger import read_metrics

ray = pytest.importorskip("ray")

from ray.cluster_utils import Cluster  # noqa: E402

STEPS = [
    "train.warmup_steps=100",
    "train.eval_every=200",
    "train.eval_episodes=1",
    "train.final_eval_episodes=1",
    "train.log_every=200",
    "train.checkpoint_every=200",
    "agent.hidden_sizes=[16]",
    "device=cpu",
]


@pytest.fixture
def cluster(tmp_path, monkeypatch):
    """A CPU-less head and nodes 'a' and 'b' with one CPU each and a working folder each."""
    ray_tmp = tempfile.mkdtemp(prefix="rc-", dir="/tmp")  # short: Ray's socket paths are limited to 107 bytes
    (Path(ray_tmp) / "ray").mkdir()
    monkeypatch.setenv("RAY_TMPDIR", ray_tmp)  # Cluster writes its address file there, not in /tmp/ray
    workdirs = {name: tmp_path / f"node-{name}" for name in "ab"}
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False, "temp_dir": ray_tmp})
    nodes = {name: c.add_node(num_cpus=1, env_vars={WORKDIR_ENV: str(folder)}) for name, folder in workdirs.items()}
    try:
        yield c, nodes, workdirs
    finally:
        c.shutdown()
        shutil.rmtree(ray_tmp, ignore_errors=True)


def evals(metrics: Path) -> list[int]:
    return [r["step"] for r in read_metrics(metrics.parent) if "eval/success_mean" in r]


def stored_steps(folder: Path) -> list[int]:
    return sorted(int(p.stem.split("_")[1]) for p in folder.glob("step_*.pt"))


def test_killed_trial_resumes_from_storage_on_another_node(tmp_path, cluster):
    c, nodes, workdirs = cluster
    out, store = tmp_path / "sweep", tmp_path / "store"
    args = [
        "sweep",
        "toy-mtsac",
        "--seeds",
        "1",
        "train.total_steps=400,1200",
        *STEPS,
        "--out",
        str(out),
        "--address",
        c.address,
        "--storage",
        f"file://{store}",
    ]
    short, long = "train.total_steps=400/seed0", "train.total_steps=1200/seed0"
    driver = subprocess.Popen(
        [sys.executable, "-m", "mtrl.cli", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    # Halfway: once the long trial's checkpoint of step 400 or later is in the storage, kill its Ray worker.
    deadline, killed = time.monotonic() + 300, None  # ceilings for a loaded machine
    while killed is None and time.monotonic() < deadline and driver.poll() is None:
        if stored_steps(store / long / "checkpoints") and stored_steps(store / long / "checkpoints")[-1] >= 400:
            for name, folder in workdirs.items():
                for log in folder.glob("mtrl-sweep-*/train.total_steps=1200/seed0.log"):
                    pid = int(re.findall(r" pid (\d+)", log.read_text())[-1])
                    os.kill(pid, signal.SIGKILL)
                    killed = name
        time.sleep(0.1)
    assert killed, driver.stderr.read() if driver.poll() is not None else "the long trial was not caught halfway"
    assert driver.wait(timeout=300) == 1, driver.stderr.read()
    trials = {t["run_dir"]: t for t in json.loads((out / "sweep.json").read_text())["trials"]}
    assert trials[short]["state"] == "done" and trials[long]["state"] == "failed", trials
    for rel in (short, long):  # checkpoints only in the storage; the manifest says where
        assert trials[rel]["checkpoints"] == f"file://{store}/{rel}/checkpoints"
        assert not (out / rel / "checkpoints").exists()
    assert evals(out / short / "metrics.jsonl") == [200, 400]
    halfway = stored_steps(store / long / "checkpoints")[-1]
    assert 400 <= halfway < 1200 and evals(out / long / "metrics.jsonl")[-1] >= halfway  # fetched from the storage
    kept = {p: p.read_bytes() for p in [*(out / short).rglob("*"), *(store / short).rglob("*")] if p.is_file()}

    # The killed trial's node is gone with its disk; the rerun resumes it on the other node.
    c.remove_node(nodes[killed])
    shutil.rmtree(workdirs[killed])
    assert main(args) == 0
    trials = {t["run_dir"]: t for t in json.loads((out / "sweep.json").read_text())["trials"]}
    assert [t["state"] for t in trials.values()] == ["done", "done"]
    assert trials[short]["attempts"] == 1 and trials[long]["attempts"] == 2
    assert {p: p.read_bytes() for p in kept} == kept  # the finished trial untouched, under --out and in the storage
    log = (out / "train.total_steps=1200" / "seed0.log").read_text()
    other = workdirs["b" if killed == "a" else "a"]
    assert f"resumed from step {halfway:,}" in log and f"in {other}" in log.split("resuming")[-1], log
    assert evals(out / long / "metrics.jsonl") == list(range(200, 1201, 200))  # cut back to the checkpoint, no repeats
    assert stored_steps(store / long / "checkpoints")[-1] == 1200
    assert "2 runs" in (out / "report" / "summary.md").read_text()
    assert not any(other.rglob("*.pt"))  # the node-local copy is dropped once it is in the storage
