"""`mtrl sweep`: tiny toy sweeps on local Ray. One Ray session is shared by the in-process
tests (starting Ray takes ~7 s here); the interrupted sweep runs in a subprocess of its own."""

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
from mtrl.errors import RunError, install_hint
from mtrl.training.logger import read_metrics

ray = pytest.importorskip("ray")

from mtrl.sweeps import leftovers as sweep_leftovers
from mtrl.sweeps import runner as sweep
from mtrl.sweeps.storage import WORKDIR_ENV, Storage, claim, workplace, write_files

TINY = [
    "train.total_steps=400",
    "train.warmup_steps=100",
    "train.eval_every=200",
    "train.eval_episodes=1",
    "train.final_eval_episodes=1",
    "train.log_every=200",
    "train.checkpoint_every=200",
    "agent.hidden_sizes=[16]",
    "device=cpu",
]


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the module; run_sweep uses an initialised session as it is."""
    temp = tempfile.mkdtemp(prefix="mtrl-ray-")
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR", _temp_dir=temp)
        yield
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def manifest(sweep_dir: Path) -> dict:
    return json.loads((sweep_dir / "sweep.json").read_text())


def evaluations(run_dir: Path) -> list[dict]:
    return [r for r in read_metrics(run_dir) if "eval/success_mean" in r]


def final_eval(run_dir: Path) -> dict:
    return evaluations(run_dir)[-1]


def test_two_seed_sweep_finishes_with_manifest_and_report(tmp_path, local_ray, capsys):
    out = tmp_path / "sweep"
    assert main(["sweep", "toy-mtsac", "--seeds", "2", *TINY, "--out", str(out)]) == 0
    data = manifest(out)
    assert [(t["name"], t["seed"], t["state"], t["run_dir"]) for t in data["trials"]] == [
        ("base", 0, "done", "base/seed0"),
        ("base", 1, "done", "base/seed1"),
    ]
    for t in data["trials"]:
        record = final_eval(out / t["run_dir"])
        assert record["step"] == 400 and record["eval/episodes_per_task"] == 1
        assert t["final_success_mean"] == record["eval/success_mean"] and t["attempts"] == 1
    assert (out / "report" / "summary.md").is_file()
    printed = capsys.readouterr().out
    assert "2 runs, success rate" in printed and "done" in printed
    # The same --out with another grid is refused in one line, and nothing changes.
    before = (out / "sweep.json").read_bytes()
    assert main(["sweep", "toy-mtsac", "--seeds", "2", *TINY, "sac.actor_lr=1e-3,3e-4", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"mtrl: error: --out '{out}' holds a sweep with another grid")
    assert (out / "sweep.json").read_bytes() == before


def test_a_failing_trial_is_reported_and_the_others_finish(tmp_path, local_ray, capsys):
    # Passes config validation (the path is only read when the agent is built), fails in train().
    out = tmp_path / "sweep"
    code = main(
        [
            "sweep",
            "toy-care",
            "--seeds",
            "1",
            *TINY,
            "agent.num_encoders=2",
            "agent.embedding_file=null,/nonexistent/emb.json",
            "--out",
            str(out),
        ]
    )
    assert code == 1
    trials = {t["name"]: t for t in manifest(out)["trials"]}
    good, bad = trials["agent.embedding_file=null"], trials["agent.embedding_file=nonexistent-emb.json"]
    assert good["state"] == "done" and final_eval(out / good["run_dir"])["step"] == 400
    assert bad["state"] == "failed" and bad["error"].startswith("embedding file '/nonexistent/emb.json' does not exist")
    assert "Traceback" in (out / "agent.embedding_file=nonexistent-emb.json" / "seed0.log").read_text()
    captured = capsys.readouterr()
    assert "FAILED" in captured.out and "1 of 2 trials failed" in captured.err


def test_killed_sweep_resumes_without_redoing_finished_trials(tmp_path, local_ray, monkeypatch, capsys):
    out = tmp_path / "sweep"
    cpus = len(os.sched_getaffinity(0))
    # At most two trials at once, so the third is still to run when the first is done.
    args = ["sweep", "toy-mtsac", "--seeds", "3", *TINY, "--cpus-per-trial", str(-(-cpus // 2)), "--out", str(out)]
    ray_tmp = tempfile.mkdtemp(prefix="rt-", dir="/tmp")  # short: Ray's socket paths are limited to 107 bytes
    proc = subprocess.Popen(
        [sys.executable, "-m", "mtrl.cli", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, "TMPDIR": ray_tmp},
    )
    try:
        deadline = time.monotonic() + 300  # a ceiling for a loaded machine; the loop ends at the first done trial
        while time.monotonic() < deadline and proc.poll() is None:
            if (out / "sweep.json").is_file() and any(t["state"] == "done" for t in manifest(out)["trials"]):
                break
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)  # the driver alone: its Ray's agents and temporary folder outlive it
        proc.wait()
        states = {t["seed"]: t["state"] for t in manifest(out)["trials"]}
        finished = [s for s, state in states.items() if state == "done"]
        assert finished and len(finished) < 3, states
        for log in out.glob("base/seed*.log"):  # wait for the killed trials' workers to be gone
            for pid in map(int, re.findall(r" pid (\d+)", log.read_text())):
                while (
                    Path(f"/proc/{pid}").exists()
                    and time.monotonic() < deadline + 30
                    and "ray::" in Path(f"/proc/{pid}/cmdline").read_text(errors="ignore")
                ):
                    time.sleep(0.2)
        [left] = Path(ray_tmp).glob("mtrl-ray-*")
        assert sweep_leftovers.holders(left), "nothing outlived the driver: this test no longer tests the cleanup"
        kept = {s: (out / f"base/seed{s}/metrics.jsonl").read_bytes() for s in finished}

        monkeypatch.setattr(tempfile, "tempdir", ray_tmp)  # the rerun looks where the killed driver's Ray lived
        assert main(args) == 0  # the same command again (on the shared Ray session)
        said = "".join(capsys.readouterr().out.split())  # rich wraps long lines
        assert "".join(f"cleaned up after a killed sweep driver (pid {proc.pid}, --out {out}): stopped".split()) in said
        assert not left.exists() and not sweep_leftovers.holders(Path(ray_tmp))
    finally:
        sweep_leftovers.stop(sweep_leftovers.holders(Path(ray_tmp)))  # what this test started, if it failed midway
        shutil.rmtree(ray_tmp, ignore_errors=True)
    trials = manifest(out)["trials"]
    assert [t["state"] for t in trials] == ["done"] * 3
    for s in finished:
        assert (out / f"base/seed{s}/metrics.jsonl").read_bytes() == kept[s]
        assert trials[s]["attempts"] == 1
    for t in trials:  # one final evaluation each, also for a run killed before the manifest said done
        assert [r["step"] for r in evaluations(out / t["run_dir"])] == [200, 400]


def test_a_trial_that_finished_before_the_manifest_said_so_is_not_trained_again(tmp_path):
    import torch

    trial = sweep.Trial("base", TINY, 0, "base/seed0")
    cfg, log = sweep.trial_config("toy-mtsac", trial, tmp_path), tmp_path / "base" / "seed0.log"
    storage = Storage(str(tmp_path), "abc", default=True)
    claim(storage, tmp_path)
    threads = torch.get_num_threads()  # run_trial sets it; keep this process's
    args = (cfg, trial.run_dir, sweep.log_name(trial), threads, os.getcwd(), storage)
    first = sweep.run_trial(*args)  # in-process, as a Ray worker runs it
    assert first["state"] == "done" and first["env_steps"] == 400
    metrics = (tmp_path / "base" / "seed0" / "metrics.jsonl").read_bytes()
    again = sweep.run_trial(*args)
    assert again == {
        "state": "done",
        "env_steps": 400,
        "final_success_mean": first["final_success_mean"],
        "checkpoints": f"{tmp_path}/base/seed0/checkpoints",
    }
    assert (tmp_path / "base" / "seed0" / "metrics.jsonl").read_bytes() == metrics
    assert "already finished: final evaluation at step 400" in log.read_text()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--seeds", "2", "train.total_step=400"], "unknown config key 'train.total_step'"),
        (["--seeds", "0"], "--seeds must be at least 1, got 0"),
        (
            ["--seeds", "1", "sac.actor_lr"],
            "sweep argument 'sac.actor_lr' is not of the form dotted.key=value[,value...]",
        ),
        (["--seeds", "1", "sac.actor_lr=1e-3,,3e-4"], "has an empty value"),
        (["--seeds", "1", "train.total_steps=400,-5"], "train.total_steps must be at least 1, got -5"),
        (["--seeds", "1", "seed=1,2"], "'seed' is set by mtrl sweep"),
        (["--seeds", "1", "device=cuda"], "device=cuda needs GPUs for the trials: pass --gpus-per-trial"),
        (["--seeds", "1", "--storage", "zzz://bucket/x"], "--storage 'zzz://bucket/x': unknown protocol 'zzz://'"),
    ],
)
def test_bad_input_is_one_line_exit_2_before_ray_or_any_write(tmp_path, monkeypatch, capsys, args, message):
    def no_ray(*a, **k):
        raise AssertionError("Ray started on bad input")

    monkeypatch.setattr(sweep, "start_ray", no_ray)
    out = tmp_path / "sweep"
    assert main(["sweep", "toy-mtsac", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mtrl: error: ") and message in err[0], err
    assert not out.exists()


def test_grid_values_split_on_top_level_commas_only():
    assert sweep.split_values("[16,16],[32],'a,b'") == ["[16,16]", "[32]", "'a,b'"]
    trials = sweep.make_trials(sweep.parse_grid(["agent.hidden_sizes=[16,16],[32]", "sac.tau=0.01"]), 2)
    assert [(t.name, t.seed, t.overrides) for t in trials] == [
        ("agent.hidden_sizes=16-16", 0, ["agent.hidden_sizes=[16,16]", "sac.tau=0.01"]),
        ("agent.hidden_sizes=16-16", 1, ["agent.hidden_sizes=[16,16]", "sac.tau=0.01"]),
        ("agent.hidden_sizes=32", 0, ["agent.hidden_sizes=[32]", "sac.tau=0.01"]),
        ("agent.hidden_sizes=32", 1, ["agent.hidden_sizes=[32]", "sac.tau=0.01"]),
    ]


def test_without_ray_says_which_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    assert main(["sweep", "toy-mtsac", "--seeds", "1", *TINY, "--out", str(tmp_path / "s")]) == 2
    assert capsys.readouterr().err.strip() == f"mtrl: error: mtrl sweep needs the ray extra: {install_hint('ray')}"
    assert not (tmp_path / "s").exists()


def test_storage_folder_holds_checkpoints_and_the_driver_gets_the_rest(tmp_path, local_ray, capsys):
    out, store = tmp_path / "sweep", tmp_path / "store"
    assert main(["sweep", "toy-mtsac", "--seeds", "1", *TINY, "--out", str(out), "--storage", str(store)]) == 0
    trial = manifest(out)["trials"][0]
    assert (
        trial["checkpoints"] == f"{store}/base/seed0/checkpoints"
        and (store / "base/seed0/checkpoints/step_400.pt").is_file()
    )
    assert not (out / "base/seed0/checkpoints").exists()  # under --out: what the driver was sent, not checkpoints
    assert final_eval(out / "base/seed0")["step"] == 400 and (out / "base/seed0/config.yaml").is_file()
    assert f"in {store / 'base/seed0'}" in (out / "base/seed0.log").read_text()  # a folder it sees: trained in place
    capsys.readouterr()
    # A rerun names another storage: refused; a new sweep on a folder that holds other files: refused, nothing written.
    assert main(["sweep", "toy-mtsac", "--seeds", "1", *TINY, "--out", str(out), "--storage", str(tmp_path / "x")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"mtrl: error: --out '{out}' holds a sweep started with --storage {store}; rerun it so, or choose another --out"
    )
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    assert (
        main(
            [
                "sweep",
                "toy-mtsac",
                "--seeds",
                "1",
                *TINY,
                "--out",
                str(tmp_path / "new"),
                "--storage",
                f"file://{tmp_path / 'other'}",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already holds files but no mtrl sweep" in err[0]
    assert not (tmp_path / "new").exists() and os.listdir(tmp_path / "other") == ["notes.txt"]


def test_a_node_that_cannot_see_the_sweep_directory_sends_its_files_and_keeps_its_checkpoints(tmp_path, monkeypatch):
    """No --storage, and the trial's node does not see the driver's --out (no marker there):
    it trains in its own folder and returns its small files for the driver to write."""
    import torch

    out, node = tmp_path / "driver-out", tmp_path / "node"
    monkeypatch.setenv(WORKDIR_ENV, str(node))
    trial = sweep.Trial("base", TINY, 0, "base/seed0")
    result = sweep.run_trial(
        sweep.trial_config("toy-mtsac", trial, out),
        trial.run_dir,
        sweep.log_name(trial),
        torch.get_num_threads(),
        os.getcwd(),
        Storage(str(out), "abc", default=True),
    )
    assert result["state"] == "done" and not out.exists()
    assert set(result["files"]) >= {"base/seed0/config.yaml", "base/seed0/metrics.jsonl", "base/seed0.log"}
    assert result["checkpoints"].startswith("node ") and result["checkpoints"].endswith(
        f"{node}/mtrl-sweep-abc/base/seed0/checkpoints"
    )
    assert (node / "mtrl-sweep-abc/base/seed0/checkpoints/step_400.pt").is_file()  # kept on the node for a rerun there
    write_files(out, trial.run_dir, result["files"])
    assert final_eval(out / "base/seed0")["step"] == 400


def test_a_storage_folder_a_node_does_not_see_fails_the_trial_in_one_line(tmp_path):
    with pytest.raises(
        RunError,
        match=r"^--storage '.*/nowhere' is not reachable from node .*; use a folder every "
        r"node mounts, or a URI such as s3://bucket/sweeps/lr$",
    ):
        workplace(Storage(str(tmp_path / "nowhere"), "abc"))
    assert not (tmp_path / "nowhere").exists()


def test_a_storage_that_fails_costs_copies_not_the_run_and_the_node_keeps_it(tmp_path, monkeypatch):
    import torch

    from mtrl.sweeps import storage as sweep_storage

    node, store = tmp_path / "node", tmp_path / "store"
    monkeypatch.setenv(WORKDIR_ENV, str(node))
    storage = Storage(f"file://{store}", "abc")
    claim(storage, tmp_path / "out")

    def refuse(self, run_rel, log_rel):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sweep_storage.Workplace, "push", refuse)
    trial = sweep.Trial("base", TINY, 0, "base/seed0")
    result = sweep.run_trial(
        sweep.trial_config("toy-mtsac", trial, tmp_path / "out"),
        trial.run_dir,
        sweep.log_name(trial),
        torch.get_num_threads(),
        os.getcwd(),
        storage,
    )
    assert result["state"] == "failed"
    assert (
        result["error"]
        == f"could not copy the run to --storage file://{store} (OSError: [Errno 28] No space left on device)"
    )
    log = result["files"]["base/seed0.log"].decode()
    assert (
        "could not copy step_200.pt to the storage (OSError: [Errno 28] No space left on device); retrying at the next "
        "checkpoint"
        in log
        and "could not copy step_400.pt" in log
        and "--- done" in log
    )  # training went on
    assert (node / "mtrl-sweep-abc/base/seed0/checkpoints/step_400.pt").is_file()  # kept where it is
