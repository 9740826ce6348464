"""Loading a run directory never runs code: crafted checkpoints are refused at every entry
point (``mtrl.load``, ``mtrl eval``, resume, distillation teachers), in one line, exit 2,
and their payload never executes; checkpoints of earlier versions still load, safely."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import mtrl
from mtrl.checkpoint import (
    LEGACY_MAGIC,
    MAGIC,
    UnsafeCheckpointError,
    checkpoint_dir,
    list_checkpoints,
    load_checkpoint,
    load_latest_good,
    save_checkpoint,
)
from mtrl.cli import main
from mtrl.errors import ConfigError, RunError
from mtrl.training.logger import read_metrics, without_timing

from conftest import TINY_TOY

HEADERS = {"plain": None, "v1-header": LEGACY_MAGIC, "v2-header": MAGIC}


class Payload:
    """Unpickling this runs ``touch MARKER``: what a malicious checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def with_header(payload: bytes, header: bytes | None) -> bytes:
    """The bytes of a checkpoint file: an optional header with a valid checksum, then the payload."""
    if header is None:
        return payload
    return header + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload


def pickled(state) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def plant(run_dir: Path, marker: Path, header: bytes | None, step: int = 999_999) -> Path:
    """A crafted newest checkpoint in ``run_dir`` whose loading would create ``marker``."""
    path = checkpoint_dir(run_dir) / f"step_{step}.pt"
    path.write_bytes(with_header(pickled({"sac": {"agent": Payload(marker)}, "env_steps": step}), header))
    return path


@pytest.fixture
def crafted(toy_run, tmp_path, request):
    """(a copy of the toy run with a crafted newest checkpoint, the file, the marker it would create)."""
    run_dir = tmp_path / "run"
    shutil.copytree(toy_run, run_dir)
    marker = tmp_path / "PWNED"
    return run_dir, plant(run_dir, marker, HEADERS[request.param]), marker


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_the_payload_runs_code_when_unpickled_without_weights_only(tmp_path):
    """The crafted files of these tests are real attacks: plain torch.load runs them."""
    marker = tmp_path / "PWNED"
    torch.load(io.BytesIO(pickled({"x": Payload(marker)})), weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("crafted", list(HEADERS), indirect=True)
def test_mtrl_load_refuses_a_crafted_checkpoint_without_running_it(crafted):
    run_dir, path, marker = crafted
    with pytest.raises(ConfigError) as info:
        mtrl.load(run_dir, device="cpu")
    message = str(info.value)
    assert str(path) in message and "system" in message and "\n" not in message
    with pytest.raises(ConfigError, match="refused to load checkpoint"):
        mtrl.load(run_dir, checkpoint=path, device="cpu")
    assert not marker.exists()


@pytest.mark.parametrize("crafted", list(HEADERS), indirect=True)
def test_mtrl_eval_refuses_a_crafted_checkpoint_with_exit_2_and_writes_nothing(crafted, capsys):
    run_dir, path, marker = crafted
    assert main(["eval", str(run_dir), "--device", "cpu"]) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith("mtrl: error: refused to load checkpoint") and str(path) in line
    assert not marker.exists() and not (run_dir / "eval.json").exists()


@pytest.mark.parametrize("crafted", list(HEADERS), indirect=True)
def test_resume_refuses_a_crafted_checkpoint_instead_of_falling_back(crafted, capsys):
    run_dir, path, marker = crafted
    metrics = (run_dir / "metrics.jsonl").read_bytes()
    assert (
        main(["train", str(run_dir / "config.yaml"), "train.total_steps=800", f"run.dir={run_dir}", "resume=true"]) == 2
    )
    line = one_line(capsys.readouterr().err)
    assert "refused to load checkpoint" in line and str(path) in line
    assert not marker.exists() and (run_dir / "metrics.jsonl").read_bytes() == metrics


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("teacher") / "north"
    assert main(["train", "toy-mtsac", *TINY_TOY, "env.num_tasks=1", "env.goal_angles=[90]", f"run.dir={run_dir}"]) == 0
    return run_dir


@pytest.mark.parametrize("header", list(HEADERS))
def test_a_crafted_teacher_is_refused_before_the_student_starts(header, teacher_run, tmp_path, capsys):
    teacher = tmp_path / "teacher"
    shutil.copytree(teacher_run, teacher)
    marker = tmp_path / "PWNED"
    path = plant(teacher, marker, HEADERS[header])
    student = tmp_path / "student"
    assert main(["train", "toy-mtsac", *TINY_TOY, f"distill.teachers=[{teacher}]", f"run.dir={student}"]) == 2
    line = one_line(capsys.readouterr().err)
    assert "refused to load checkpoint" in line and str(path) in line
    assert not marker.exists() and not student.exists()


def test_only_files_claiming_an_older_format_get_the_conversion_hint(toy_run, tmp_path):
    marker = tmp_path / "PWNED"
    for header, hinted in ((None, True), (LEGACY_MAGIC, True), (MAGIC, False)):
        path = tmp_path / "step_1.pt"
        path.write_bytes(with_header(pickled({"x": Payload(marker)}), header))
        with pytest.raises(UnsafeCheckpointError) as info:
            load_checkpoint(path)
        assert ("mtrl convert-checkpoint" in str(info.value)) == hinted
    assert not marker.exists()


def legacy_copy(toy_run: Path, tmp_path: Path, header: bytes | None, name: str = "legacy") -> tuple[Path, Path]:
    """A copy of the run whose newest checkpoint is in the format of earlier versions
    (numpy arrays pickled as numpy objects, the v1 header or none)."""
    run_dir = tmp_path / name
    shutil.copytree(toy_run, run_dir)
    path = list_checkpoints(run_dir)[-1]
    state = load_checkpoint(path)
    assert isinstance(state["global_rng"]["numpy"][1], np.ndarray)  # what the old format pickled
    path.write_bytes(with_header(pickled(state), header))
    return run_dir, path


@pytest.mark.parametrize("header", [None, LEGACY_MAGIC], ids=["plain", "v1-header"])
def test_a_checkpoint_of_an_earlier_version_loads_and_acts_identically(header, toy_run, tmp_path):
    run_dir, path = legacy_copy(toy_run, tmp_path, header)
    assert not path.read_bytes().startswith(MAGIC)
    old, new = mtrl.load(run_dir, device="cpu"), mtrl.load(toy_run, device="cpu")
    obs = np.random.default_rng(0).uniform(-1, 1, (64, new.obs_dim)).astype(np.float32)
    tasks = np.arange(64) % len(new.task_names)
    assert np.array_equal(old.act(obs, tasks), new.act(obs, tasks))


def test_a_resume_from_an_earlier_versions_checkpoint_logs_what_a_current_one_does(toy_run, tmp_path):
    runs = [tmp_path / "current", legacy_copy(toy_run, tmp_path, LEGACY_MAGIC)[0]]
    shutil.copytree(toy_run, runs[0])
    for run_dir in runs:
        assert (
            main(["train", str(run_dir / "config.yaml"), "train.total_steps=800", f"run.dir={run_dir}", "resume=true"])
            == 0
        )

    def strip(run):
        return without_timing(read_metrics(run))

    assert strip(runs[0]) == strip(runs[1]) and strip(runs[0])[-1]["step"] == 800


def test_a_trusted_old_checkpoint_that_needs_more_converts_only_with_trust(toy_run, tmp_path, capsys):
    """An old file holding a numpy masked array (a global loading refuses) is refused with
    how to convert it; ``mtrl convert-checkpoint --trust`` rewrites it in the safe format."""
    run_dir = tmp_path / "old"
    shutil.copytree(toy_run, run_dir)
    path = list_checkpoints(run_dir)[-1]
    state = load_checkpoint(path)
    state["loop"]["ep_return"] = np.ma.masked_array(state["loop"]["ep_return"])
    original = with_header(pickled(state), LEGACY_MAGIC)
    path.write_bytes(original)
    with pytest.raises(ConfigError, match=f"mtrl convert-checkpoint {path} --trust") as info:
        mtrl.load(run_dir, device="cpu")
    assert "would call numpy.ma" in str(info.value)  # what was refused, not the numpy globals it may use
    assert main(["convert-checkpoint", str(path)]) == 2
    assert "--trust" in one_line(capsys.readouterr().err) and path.read_bytes() == original
    assert main(["convert-checkpoint", str(path), "--trust"]) == 0
    assert path.read_bytes().startswith(MAGIC) and Path(f"{path}.orig").read_bytes() == original
    assert type(load_checkpoint(path)["loop"]["ep_return"]) is np.ndarray
    mtrl.load(run_dir, device="cpu")


def test_the_current_format_round_trips_every_value_exactly(toy_run, tmp_path):
    state = load_checkpoint(list_checkpoints(toy_run)[-1])
    state["extra"] = {
        "scalar": np.float32(0.1),
        "uint": np.arange(5, dtype=np.uint32),
        "empty": np.zeros((0, 3)),
        "bools": np.array([True, False]),
        "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
    }
    back = load_checkpoint(save_checkpoint(tmp_path, 7, state, keep=1))

    def same(a, b) -> bool:
        if type(a) is not type(b):
            return False
        if isinstance(a, dict):
            return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
        if isinstance(a, (list, tuple)):
            return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
        if isinstance(a, (np.ndarray, np.generic)):
            return a.dtype == b.dtype and np.shape(a) == np.shape(b) and np.array_equal(a, b)
        if isinstance(a, torch.Tensor):
            return a.dtype == b.dtype and torch.equal(a, b)
        return a == b

    assert same(state, back)


def test_a_state_that_could_not_load_safely_is_never_saved(tmp_path):
    with pytest.raises(RunError, match=r"state.extra is a .*Payload"):
        save_checkpoint(tmp_path, 1, {"sac": {}, "extra": Payload(tmp_path / "x")}, keep=1)
    with pytest.raises(RunError, match="dtype object"):
        save_checkpoint(tmp_path, 1, {"sac": {}, "extra": np.array([None])}, keep=1)
    assert not list_checkpoints(tmp_path)


def test_a_corrupt_checkpoint_is_still_skipped_but_a_crafted_one_is_not(toy_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(toy_run, run_dir)
    good = list_checkpoints(run_dir)[-1]
    broken = checkpoint_dir(run_dir) / "step_999998.pt"
    broken.write_bytes(good.read_bytes()[:-100])
    assert load_latest_good(run_dir)[0] == good
    plant(run_dir, tmp_path / "PWNED", MAGIC)
    with pytest.raises(UnsafeCheckpointError):
        load_latest_good(run_dir)
