"""``mtrl export RUN_DIR --out DIR``: safetensors weights + config that ``mtrl.load`` reads
and that act exactly as the run they came from."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import mtrl
from mtrl.cli import main
from mtrl.errors import ConfigError

from conftest import TINY_TOY


def same_actions(a, b, seed: int = 0) -> bool:
    """Deterministic and sampled actions of two policies on the same observations and tasks."""
    obs = np.random.default_rng(seed).uniform(-1.5, 1.5, (96, a.obs_dim)).astype(np.float32)
    tasks = np.arange(96) % len(a.task_names)
    torch.manual_seed(seed)
    sampled_a = a.act(obs, tasks, deterministic=False)
    torch.manual_seed(seed)
    sampled_b = b.act(obs, tasks, deterministic=False)
    return np.array_equal(a.act(obs, tasks), b.act(obs, tasks)) and np.array_equal(sampled_a, sampled_b)


@pytest.fixture(scope="module")
def runs(toy_run, tmp_path_factory):
    """toy runs of a few architectures: MT-SAC (the shared toy run), CARE, PaCo."""
    out = {"toy-mtsac": toy_run}
    for config in ("toy-care", "toy-paco"):
        run_dir = tmp_path_factory.mktemp(config) / "run"
        assert main(["train", config, *TINY_TOY, f"run.dir={run_dir}"]) == 0
        out[config] = run_dir
    return out


@pytest.mark.parametrize("config", ["toy-mtsac", "toy-care", "toy-paco"])
def test_an_export_acts_exactly_as_the_run_it_came_from(config, runs, tmp_path, capsys):
    out = tmp_path / "export"
    assert main(["export", str(runs[config]), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "policy.json", "policy.safetensors"]
    exported, original = mtrl.load(out, device="cpu"), mtrl.load(runs[config], device="cpu")
    assert exported.task_names == original.task_names and exported.env_steps == original.env_steps
    assert same_actions(exported, original)
    assert not same_actions(exported, mtrl.load(runs[config], checkpoint=200, device="cpu"))  # the test can tell


def test_an_export_holds_weights_only(toy_run, tmp_path):
    out = tmp_path / "export"
    assert main(["export", str(toy_run), "--out", str(out)]) == 0
    weights = load_file(out / "policy.safetensors")
    agent = mtrl.load(toy_run, device="cpu").agent.state_dict()
    assert set(weights) == set(agent) and all(torch.equal(weights[k], agent[k]) for k in agent)
    manifest = json.loads((out / "policy.json").read_text())
    assert manifest["checkpoint"] == "step_400.pt" and manifest["obs_dim"] == 2


def test_an_export_of_a_given_checkpoint(toy_run, tmp_path):
    out = tmp_path / "export"
    assert main(["export", str(toy_run), "--out", str(out), "--checkpoint", "200"]) == 0
    assert same_actions(mtrl.load(out, device="cpu"), mtrl.load(toy_run, checkpoint=200, device="cpu"))


def test_export_into_a_folder_that_holds_files_is_refused(toy_run, tmp_path, capsys):
    out = tmp_path / "export"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["export", str(toy_run), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not an empty folder" in err[0]
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_a_damaged_export_is_one_line(toy_run, tmp_path):
    out = tmp_path / "export"
    assert main(["export", str(toy_run), "--out", str(out)]) == 0
    weights = out / "policy.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match="truncated or corrupt"):
        mtrl.load(out, device="cpu")
    (out / "policy.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not a readable export"):
        mtrl.load(out, device="cpu")
    with pytest.raises(ConfigError, match="is an export"):
        mtrl.load(out, checkpoint=200, device="cpu")


def test_mtrl_eval_of_an_export_gives_the_runs_evaluation(toy_run, tmp_path):
    run, out = tmp_path / "run", tmp_path / "export"
    shutil.copytree(toy_run, run)
    assert main(["export", str(run), "--out", str(out)]) == 0
    for folder in (run, out):
        assert main(["eval", str(folder), "--episodes", "3", "--device", "cpu"]) == 0
    from_run, from_export = (json.loads((f / "eval.json").read_text()) for f in (run, out))
    assert from_export.pop("checkpoint") == "policy.safetensors" and from_run.pop("checkpoint") == "step_400.pt"
    assert from_run == from_export and from_run["env_steps"] == 400
