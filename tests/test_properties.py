"""Property-based tests (hypothesis) of every reader of outside input: whatever a config,
override, embedding file, metrics.jsonl, checkpoint or sweep manifest holds, the reader
either accepts it or raises the one-line :class:`ConfigError` / :class:`CheckpointError`
(exit 2 from the CLI), never another exception, and writes nothing when it refuses."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import mtrl
from mtrl.checkpoint import (
    LEGACY_MAGIC,
    MAGIC,
    CheckpointError,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from mtrl.cli import main
from mtrl.config import Config, load_config
from mtrl.errors import ConfigError
from mtrl.networks.task_embeddings import load_task_embeddings

FAST = settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
SLOW = settings(max_examples=20, deadline=None, database=None, suppress_health_check=list(HealthCheck))

# JSON/YAML-shaped values, with the numbers that trip readers up
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)


def one_line(error: BaseException) -> bool:
    return len(str(error).splitlines()) == 1


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- config YAML and overrides ---------------------------------------------------------------

SECTIONS = {
    "env": ["suite", "num_tasks", "goal_angles", "speed"],
    "agent": ["name", "hidden_sizes", "num_encoders"],
    "train": ["total_steps", "batch_per_task", "eval_every"],
    "sac": ["gamma", "actor_lr", "task_weighting"],
    "scheduler": ["name", "epsilon"],
    "conflict": ["method"],
    "distill": ["teachers", "weight"],
}
DOTTED = [f"{s}.{k}" for s, keys in SECTIONS.items() for k in keys] + ["seed", "device", "resume"]


@FAST
@given(text=st.text(max_size=200))
def test_any_config_text_is_a_config_or_one_line(text):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "c.yaml"
        path.write_text(text)
        try:
            assert isinstance(load_config(str(path)), Config)
        except ConfigError as e:
            assert one_line(e)
        assert [p.name for p in Path(d).iterdir()] == ["c.yaml"]


@FAST
@given(
    data=st.dictionaries(
        st.sampled_from([*SECTIONS, "seed", "device"]) | st.text(max_size=6),
        st.dictionaries(st.sampled_from(sum(SECTIONS.values(), [])) | scalars, values, max_size=4) | values,
        max_size=4,
    ),
    overrides=st.lists(
        st.builds(lambda k, v: f"{k}={v}", st.sampled_from(DOTTED) | st.text(max_size=8), st.text(max_size=10))
        | st.text(max_size=12),
        max_size=3,
    ),
)
@example(data={"env": [None]}, overrides=[])  # found by hypothesis: a component section that is a list
@example(data={"env": {None: None}}, overrides=[])  # and a key that is not a string
@example(data={}, overrides=["\n"])  # and an override holding a line break (quoted in the message)
def test_any_config_mapping_and_overrides_are_a_config_or_one_line(data, overrides):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "c.yaml"
        path.write_text(yaml.safe_dump({"env": {"suite": "toy"}, **data}))
        try:
            load_config(str(path), overrides)
        except ConfigError as e:
            assert one_line(e)


# --- embedding JSON ------------------------------------------------------------------------

TASKS, TEXTS = ["reach-east", "reach-north"], ["reach east", "reach north"]
entry = st.fixed_dictionaries(
    {
        "description": st.sampled_from(TEXTS) | st.text(max_size=5),
        "vector": st.lists(st.floats() | st.integers(-(10**40), 10**40) | scalars, max_size=4),
    }
)
embedding_files = st.one_of(
    values,
    st.fixed_dictionaries(
        {"tasks": st.dictionaries(st.sampled_from(TASKS) | st.text(max_size=5), entry | values, max_size=3)},
        optional={"dim": st.integers(-1, 5) | scalars},
    ),
)


@FAST
@given(content=embedding_files)
def test_any_embedding_json_is_a_matrix_or_one_line(content):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "e.json"
        path.write_text(json.dumps(content))
        try:
            matrix = load_task_embeddings(path, TASKS, TEXTS)
            assert matrix.shape[0] == 2 and np.isfinite(matrix).all()
        except ConfigError as e:
            assert one_line(e)


# --- metrics.jsonl in mtrl report ---------------------------------------------------------------

records = st.fixed_dictionaries(
    {"step": st.integers(0, 10**6) | scalars},
    optional={
        "eval/success_mean": st.floats(0, 1) | scalars,
        "eval/success/reach-east": st.floats(0, 1) | scalars,
        "eval/success/reach-north": st.floats(0, 1) | values,
        "attention/reach-east/0": st.floats(0, 1) | scalars,
        "conflict/critic/cosine/reach-east|reach-north": st.floats(-1, 1) | values,
    },
)
attention_lines = st.builds(
    lambda i, v: json.dumps({"step": 400, f"attention/reach-north/{i}": v}), st.integers(0, 10**12), scalars
)
lines = st.lists(
    st.builds(json.dumps, records) | attention_lines | st.builds(json.dumps, values) | st.text(max_size=20), max_size=6
)


@SLOW
@given(metric_lines=lines, trailing_newline=st.booleans())
@example(metric_lines=['{"step": 0, "eval/success_mean": 0.0, "eval/success/reach-north": []}'], trailing_newline=True)
@example(
    metric_lines=['{"step": 0, "eval/success_mean": Infinity, "eval/success/reach-north": NaN}'], trailing_newline=True
)
@example(
    metric_lines=['{"step": -9259400833873739776, "eval/success_mean": 0.0, "eval/success/reach-north": 0.0}'],
    trailing_newline=True,
)
def test_any_metrics_jsonl_gives_a_report_or_one_line_exit_2(
    toy_run, metric_lines, trailing_newline, capsys, monkeypatch
):
    from matplotlib.figure import Figure

    # the plots are laid out from what was read; only rendering the PNGs (seconds each) is skipped
    monkeypatch.setattr(Figure, "savefig", lambda self, f, **kwargs: f.write(b"png"))
    with tempfile.TemporaryDirectory() as d:
        run = Path(d) / "run"
        run.mkdir()
        shutil.copy(toy_run / "config.yaml", run / "config.yaml")
        (run / "metrics.jsonl").write_text("\n".join(metric_lines) + ("\n" if trailing_newline else ""))
        out = Path(d) / "report"
        capsys.readouterr()
        code = main(["report", str(run), "--out", str(out), "--reps", "20"])
        err = capsys.readouterr().err
        assert code in (0, 2)
        if code == 2:
            assert len(err.strip().splitlines()) == 1 and not out.exists()


# --- checkpoints ----------------------------------------------------------------------------------


def headed(payload: bytes, header: bytes | None) -> bytes:
    return payload if header is None else header + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload


@FAST
@given(payload=st.binary(max_size=300), header=st.sampled_from([None, LEGACY_MAGIC, MAGIC]))
def test_any_bytes_are_a_checkpoint_or_a_checkpoint_error(payload, header):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "step_1.pt"
        path.write_bytes(headed(payload, header))
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(path)
        assert one_line(info.value)


@SLOW
@given(
    flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)), min_size=1, max_size=4),
    header=st.sampled_from([None, MAGIC]),
)
def test_a_damaged_checkpoint_with_a_valid_checksum_loads_or_is_one_line(toy_run, flips, header):
    """Bytes changed inside the torch file (the checksum recomputed, as a forger would):
    ``mtrl.load`` gives a policy or one line."""
    with tempfile.TemporaryDirectory() as d:
        run = Path(d) / "run"
        shutil.copytree(toy_run, run)
        path = list_checkpoints(run)[-1]
        payload = bytearray(path.read_bytes()[len(MAGIC) + 65 :])
        for where, xor in flips:
            payload[int(where * len(payload))] ^= xor
        path.write_bytes(headed(bytes(payload), header))
        try:
            mtrl.load(run, device="cpu")
        except ConfigError as e:
            assert one_line(e)


def leaf_paths(state, prefix=()):
    """Paths to every value of a nested state (dicts, lists, tuples) but inside tensors."""
    yield prefix
    if isinstance(state, dict):
        for k, v in state.items():
            yield from leaf_paths(v, (*prefix, k))
    elif isinstance(state, (list, tuple)) and len(state) < 50:  # not into the 625 ints of Python's RNG state
        for i, v in enumerate(state):
            yield from leaf_paths(v, (*prefix, i))


def replaced(state, path, value):
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(state, tuple):
        return tuple(replaced(v, rest, value) if i == head else v for i, v in enumerate(state))
    state[head] = replaced(state[head], rest, value)
    return state


arrays = st.builds(
    lambda shape, dtype: np.zeros(shape, dtype),
    st.lists(st.integers(0, 3), max_size=2),
    st.sampled_from([np.float32, np.float64, np.int64, np.bool_, np.uint32]),
)
tensors = st.builds(
    lambda shape, dtype: torch.zeros(shape, dtype=dtype),
    st.lists(st.integers(0, 3), max_size=2),
    st.sampled_from([torch.float32, torch.int64, torch.bool]),
)
replacements = values | arrays | tensors


@pytest.fixture(scope="module")
def toy_state(toy_run):
    state = load_checkpoint(list_checkpoints(toy_run)[-1])
    return state, [p for p in leaf_paths(state) if p and p[0] not in ("sac",) or (p and p[:2] == ("sac", "log_alpha"))]


@SLOW
@given(data=st.data())
def test_a_well_formed_checkpoint_holding_the_wrong_things_resumes_or_is_one_line(toy_run, toy_state, data, capsys):
    """The training state's own values replaced by other values (a checkpoint in the right
    format, the wrong contents): resume and mtrl.load work or say so in one line, exit 2,
    and a refused resume leaves the run as it was."""
    state, paths = toy_state
    path = data.draw(st.sampled_from(paths))
    value = data.draw(replacements)
    with tempfile.TemporaryDirectory() as d:
        run = Path(d) / "run"
        shutil.copytree(toy_run, run)
        import copy

        save_checkpoint(run, 400, replaced(copy.deepcopy(state), path, value), keep=5)
        before = snapshot(run)
        capsys.readouterr()
        code = main(["train", str(run / "config.yaml"), "train.total_steps=600", f"run.dir={run}", "resume=true"])
        err = capsys.readouterr().err
        assert code in (0, 2), err
        if code == 2:
            assert len(err.strip().splitlines()) == 1 and snapshot(run) == before
        try:
            mtrl.load(run, checkpoint=400, device="cpu")
        except ConfigError as e:
            assert one_line(e)


@pytest.mark.parametrize(
    "path, value",
    [
        (("task_names", 0), None),
        (("spec", "obs_dim"), None),  # what hypothesis found: mtrl.load raised a TypeError, not one line
        (("task_names",), np.array(0.0, np.float32)),  # what hypothesis found
        (("rng", "state", "state"), torch.tensor(0.0)),
        (("loop", "tasks"), [0, 1, 2, 3]),
        (("loop", "obs"), None),
        (("scheduler",), {}),
        (("env", "pos"), np.zeros(3, np.float32)),
        (("global_rng", "numpy"), ("MT19937",)),
    ],
)
def test_checkpoints_holding_the_wrong_things_that_were_found(toy_run, toy_state, tmp_path, capsys, path, value):
    run = tmp_path / "run"
    shutil.copytree(toy_run, run)
    import copy

    save_checkpoint(run, 400, replaced(copy.deepcopy(toy_state[0]), path, value), keep=5)
    if path[0] in ("task_names", "spec"):  # what mtrl.load reads (a resume takes them from the config)
        with pytest.raises(ConfigError, match="is not a training state mtrl wrote"):
            mtrl.load(run, checkpoint=400, device="cpu")
        return
    before = snapshot(run)
    capsys.readouterr()
    assert main(["train", str(run / "config.yaml"), "train.total_steps=600", f"run.dir={run}", "resume=true"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1 and snapshot(run) == before


# --- sweep manifests ----------------------------------------------------------------------------

trial = st.fixed_dictionaries(
    {
        "name": st.just("seed") | scalars,
        "overrides": st.just([]) | values,
        "seed": st.just(0) | scalars,
        "run_dir": st.just("s/seed0") | scalars,
    },
    optional={
        "state": st.sampled_from(["pending", "done", "failed"]) | scalars,
        "attempts": st.integers(0, 3) | scalars,
        "seconds": scalars,
        "env_steps": scalars,
        "final_success_mean": scalars,
        "error": scalars,
    },
)
manifests = values | st.fixed_dictionaries(
    {
        "sweep": st.fixed_dictionaries(
            {"grid": st.just({}) | values, "seeds": st.just(1) | scalars, "base_config": st.just({}) | values},
            optional={"points": values},
        )
        | values,
        "trials": st.lists(trial | values, max_size=3) | values,
    },
    optional={"command": scalars, "version": scalars},
)


class ReachedRay(Exception):
    """The manifest was accepted and the sweep went on to start Ray (not wanted in this test)."""


@FAST
@given(content=manifests)
def test_any_sweep_manifest_resumes_or_is_one_line(content, monkeypatch):
    import mtrl.sweeps.runner as sweep

    monkeypatch.setattr(sweep, "import_ray", lambda: (_ for _ in ()).throw(ReachedRay()))
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "sweep"
        out.mkdir()
        (out / "sweep.json").write_text(json.dumps(content))
        before = snapshot(out)
        try:
            sweep.run_sweep("toy-mtsac", [], 1, out, echo=lambda line: None)
        except ConfigError as e:
            assert one_line(e)
        except ReachedRay:
            pass
        assert snapshot(out) == before
