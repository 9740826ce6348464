"""Logging sinks: every record reaches metrics.jsonl, TensorBoard and the extra sinks; with
run.wandb=true a Weights & Biases run (offline here: nothing contacts the network) holds
the same history; without wandb installed, asking for it is a one-line config error."""

from __future__ import annotations

import json
import math
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from mtrl.cli import main
from mtrl.training.logger import Logger, read_metrics
from tests.conftest import TINY_TOY


class ListSink:
    """A sink that keeps what it is given."""

    def __init__(self):
        self.scalars_seen, self.images_seen, self.closed = [], [], False

    def scalars(self, step, values):
        self.scalars_seen.append((step, dict(values)))

    def image(self, tag, image, step):
        self.images_seen.append((tag, image.shape, step))

    def close(self):
        self.closed = True


def test_every_record_and_image_reaches_every_sink(tmp_path):
    sink = ListSink()
    logger = Logger(tmp_path, tensorboard=False, sinks=[sink])
    logger.log(10, {"a": 1, "b": float("nan")})
    logger.log_heatmap("m", np.eye(2), 10)
    logger.close()
    step, values = sink.scalars_seen[0]
    assert step == 10 and values["a"] == 1.0 and math.isnan(values["b"])
    assert sink.images_seen == [("m", (32, 32), 10)] and sink.closed
    assert read_metrics(tmp_path) == [{"step": 10, "a": 1.0, "b": None}]


def wandb_records(path: Path):
    """The records of a ``.wandb`` file: a 7-byte header, then LevelDB-log chunks (4-byte
    checksum, 2-byte length, 1-byte kind: 1 full, 2 first, 3 middle, 4 last) in 32 KiB blocks."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B"
    pos, parts = 7, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a chunk header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if length == 0 and kind == 0:
            break
        parts += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(parts)
            yield record
            parts = b""


def wandb_history(run_dir: Path) -> dict[int, dict]:
    """Step -> the values W&B holds for it, read from the offline run's file."""
    (path,) = (run_dir / "wandb").glob("offline-run-*/run-*.wandb")
    history: dict[int, dict] = {}
    for record in wandb_records(path):
        if record.WhichOneof("record_type") == "history":
            row = {(item.key or "/".join(item.nested_key)): json.loads(item.value_json) for item in record.history.item}
            history.setdefault(row["_step"], {}).update(row)
    return history


def test_a_wandb_run_in_offline_mode_holds_the_logged_metrics(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run_dir = tmp_path / "run"
    args = [*TINY_TOY, f"run.dir={run_dir}", "run.wandb=true", "run.wandb_project=mtrl-test", "run.wandb_mode=offline"]
    assert main(["train", "toy-care", *args]) == 0
    history = wandb_history(run_dir)
    logged = 0
    for record in read_metrics(run_dir):
        row = history[record["step"]]
        for key, value in record.items():
            if key != "step" and value is not None:
                assert row[key] == pytest.approx(value, rel=1e-6), key
                logged += 1
    assert logged > 100 and any("attention/" in k for r in history.values() for k in r)
    assert any(k.startswith("attention/tasks_x_encoders/") for r in history.values() for k in r)  # the heatmap image


def test_without_wandb_asking_for_it_is_one_line_with_the_install_hint(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` now fails
    run_dir = tmp_path / "run"
    assert main(["train", "toy-mtsac", *TINY_TOY, f"run.dir={run_dir}", "run.wandb=true"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "run.wandb=true needs Weights & Biases" in err[0] and "[wandb]" in err[0]
    assert not run_dir.exists()


def test_a_bad_wandb_mode_is_one_line(tmp_path, capsys):
    assert main(["train", "toy-mtsac", *TINY_TOY, f"run.dir={tmp_path / 'run'}", "run.wandb_mode=cloud"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "run.wandb_mode" in err[0]


def test_a_wandb_run_that_cannot_start_is_one_line_saying_what_to_do(tmp_path, monkeypatch, capsys):
    pytest.importorskip("wandb")
    for name in ("WANDB_MODE", "WANDB_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc: no W&B login
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # and nothing to reach
    run_dir = tmp_path / "run"
    assert main(["train", "toy-mtsac", *TINY_TOY, f"run.dir={run_dir}", "run.wandb=true", "run.wandb_mode=online"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "W&B could not start a run" in err[0] and "run.wandb_mode=offline" in err[0]
