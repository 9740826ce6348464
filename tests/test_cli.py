import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mtrl.cli import main


def test_unknown_config_key_exits_2_with_one_line_and_writes_nothing(tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "mtrl.cli", "train", "toy-mtsac", "train.total_step=100", f"run.dir={run_dir}"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "mtrl: error: unknown config key 'train.total_step'; closest valid keys: "
        "'train.total_steps', 'train.warmup_steps'"
    ]
    assert "Traceback" not in proc.stderr and not run_dir.exists()


def test_train_then_eval_writes_eval_json(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "toy-mtsac",
                f"run.dir={run_dir}",
                "train.total_steps=600",
                "train.warmup_steps=200",
                "train.progress=false",
                "train.eval_episodes=3",
                "train.final_eval_episodes=3",
            ]
        )
        == 0
    )
    assert "reach-east" in capsys.readouterr().out
    assert {"config.yaml", "metrics.jsonl", "checkpoints"} <= {p.name for p in run_dir.iterdir()}
    assert any(p.name.startswith("events.out.tfevents") for p in run_dir.iterdir())
    assert main(["eval", str(run_dir), "--episodes", "7"]) == 0
    report = json.loads((run_dir / "eval.json").read_text())
    assert report["episodes_per_task"] == 7 and report["env_steps"] == 600
    assert [t["episodes"] for t in report["tasks"].values()] == [7, 7, 7, 7]


def test_eval_of_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["eval", str(tmp_path)]) == 2
    assert "is not a run directory" in capsys.readouterr().err


def test_list_shows_components(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("toy", "metaworld", "mtsac", "mhsac", "round_robin", "uniform", "quickstart"):
        assert name in out
    assert "[state || task" in out  # brc's summary: square brackets shown, not read as rich markup


# --- bad input: one line `mtrl: error: ...`, exit code 2, nothing written ----------------

# Would make a tiny, seconds-long run if a check below were missing: the test then fails on the
# exit code (or on the run directory) instead of training for minutes.
TINY_RUN = [
    "train.total_steps=40",
    "train.warmup_steps=40",
    "train.num_slots=1",
    "train.eval_episodes=1",
    "train.final_eval_episodes=1",
    "train.progress=false",
    "agent.hidden_sizes=[8]",
    "device=cpu",
]


def one_error_line(capsys, after: str | None = None) -> str:
    """stderr's one line, an error (after a line starting with ``after``, when given)."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    if after is not None:
        assert lines[0].startswith(after), err
        lines = lines[1:]
    assert len(lines) == 1 and lines[0].startswith("mtrl: error: "), err
    return lines[0]


@pytest.mark.parametrize(
    "overrides, key",
    [
        ("train.total_steps=0", "train.total_steps"),
        ("train.total_steps=-5", "train.total_steps"),
        ("train.batch_per_task=0", "train.batch_per_task"),
        ("train.buffer_per_task=0", "train.buffer_per_task"),
        ("train.eval_episodes=0", "train.eval_episodes"),
        ("train.final_eval_episodes=0", "train.final_eval_episodes"),
        ("train.updates_per_step=0", "train.updates_per_step"),
        ("train.warmup_steps=-1", "train.warmup_steps"),
        ("train.log_every=-1", "train.log_every"),
        ("train.eval_every=-1", "train.eval_every"),
        ("train.checkpoint_every=-1", "train.checkpoint_every"),
        ("train.keep_checkpoints=0", "train.keep_checkpoints"),
        ("train.divergence_patience=0", "train.divergence_patience"),
        ("sac.task_loss_threshold=-1", "sac.task_loss_threshold"),
        ("train.num_slots=0", "train.num_slots"),
        ("sac.gamma=0", "sac.gamma"),
        ("sac.gamma=1.5", "sac.gamma"),
        ("sac.tau=0", "sac.tau"),
        ("sac.tau=2", "sac.tau"),
        ("sac.encoder_tau=0", "sac.encoder_tau"),
        ("sac.actor_lr=0", "sac.actor_lr"),
        ("sac.critic_lr=-1e-3", "sac.critic_lr"),
        ("sac.alpha_lr=0", "sac.alpha_lr"),
        ("sac.initial_alpha=0", "sac.initial_alpha"),
        ("sac.max_grad_norm=0", "sac.max_grad_norm"),
        ("sac.actor_lr=.nan", "sac.actor_lr"),
        # infinities: a float must be finite wherever it is read (YAML's .inf, or 1e999)
        ("sac.actor_lr=.inf", "sac.actor_lr must be a finite number, got inf"),
        ("sac.max_grad_norm=.inf", "sac.max_grad_norm must be a finite number"),
        ("sac.task_loss_threshold=.inf", "sac.task_loss_threshold must be a finite number"),
        ("distill.weight=1e999", "distill.weight must be a finite number"),
        ("conflict.cagrad_c=.inf", "conflict.cagrad_c must be a finite number"),
        ("env.goal_radius=-.inf", "env.goal_radius must be a finite number"),
        ("env.goal_angles=[0,.inf,180,270]", "env.goal_angles[1] must be a finite number"),
        ("agent.name=care agent.attention_temperature=.inf", "agent.attention_temperature must be a finite number"),
        (
            "scheduler.name=learning_progress scheduler.noise_threshold=.inf",
            "scheduler.noise_threshold must be a finite",
        ),
        # a combination that would silently change nothing
        ("sac.task_weighting_actor=false", "sac.task_weighting_actor=false keeps sac.task_weighting's weights off"),
        ("conflict.cagrad_c=-0.5", "conflict.cagrad_c"),
        ("conflict.monitor_every=-1", "conflict.monitor_every"),
        ("seed=-1", "seed"),
        ("train.threads=0", "train.threads"),
        ("agent.hidden_sizes=[]", "agent.hidden_sizes"),
        ("agent.hidden_sizes=[8,0]", "agent.hidden_sizes"),
        ("agent.name=mhsac agent.hidden_sizes=[]", "agent.hidden_sizes"),
        ("agent.name=care agent.hidden_sizes=[-1]", "agent.hidden_sizes"),
        ("agent.name=care agent.num_encoders=0", "agent.num_encoders"),
        ("agent.name=care agent.encoder_hidden=[0]", "agent.encoder_hidden"),
        ("agent.name=care agent.encoder_dim=0", "agent.encoder_dim"),
        ("agent.name=care agent.context_hidden=[-2]", "agent.context_hidden"),
        ("agent.name=care agent.attention_temperature=0", "agent.attention_temperature"),
        ("env.num_tasks=0", "env.num_tasks"),
        ("env.episode_steps=0", "env.episode_steps"),
        ("env.goal_radius=0", "env.goal_radius"),
        ("env.success_radius=-0.1", "env.success_radius"),
        ("env.speed=0", "env.speed"),
        ("env.start_noise=-1", "env.start_noise"),
        ("env.goal_angles=[0,90]", "env.goal_angles"),
        ("env.suite=metaworld env.max_episode_steps=0", "env.max_episode_steps"),
        ("scheduler.name=learning_progress scheduler.epsilon=2", "scheduler.epsilon"),
        ("scheduler.name=learning_progress scheduler.fast_rate=0.001", "scheduler.fast_rate"),
    ],
)
def test_out_of_range_values_exit_2_with_one_line_naming_the_key_and_write_nothing(tmp_path, capsys, overrides, key):
    run_dir = tmp_path / "run"
    assert main(["train", "toy-mtsac", *TINY_RUN, *overrides.split(), f"run.dir={run_dir}"]) == 2
    assert key in one_error_line(capsys)
    assert not run_dir.exists()


@pytest.mark.parametrize(
    "text, line",
    [
        ("env:\n  suite: toy\ntrain: [1, 2\n", "started at line 3"),  # an unclosed list
        ("env:\n\tsuite: toy\n", "line 2"),  # a tab
        ("agent:\n  name: mtsac\n   hidden_sizes: [8]\n", "line 3"),
    ],
)
def test_malformed_yaml_config_exits_2_naming_the_file_and_line(tmp_path, capsys, text, line):
    config = tmp_path / "broken.yaml"
    config.write_text(text)
    run_dir = tmp_path / "run"
    assert main(["train", str(config), f"run.dir={run_dir}"]) == 2
    message = one_error_line(capsys)
    assert f"config '{config}' is not valid YAML" in message and line in message
    assert not run_dir.exists()


def fake_run(run_dir: Path, config_text: str) -> Path:
    """A run directory whose config.yaml is ``config_text`` and whose checkpoint is never read."""
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "step_1.pt").write_bytes(b"")
    (run_dir / "config.yaml").write_text(config_text)
    return run_dir


@pytest.mark.parametrize(
    "config_text, message",
    [
        ("train: {total_steps: 1\n", "is not valid YAML at line 2"),
        ("train: {total_steps: -5}\n", "train.total_steps must be at least 1, got -5"),
        ("env: {suite: toy, num_tasks: 0}\n", "env.num_tasks must be at least 1, got 0"),
    ],
)
def test_eval_of_a_run_with_a_bad_saved_config_exits_2(tmp_path, capsys, config_text, message):
    run_dir = fake_run(tmp_path / "run", config_text)
    assert main(["eval", str(run_dir), "--device", "cpu"]) == 2
    assert message in one_error_line(capsys)
    assert not (run_dir / "eval.json").exists()


@pytest.mark.parametrize(
    "contents, why",
    [
        (
            '{"model": "x", "tasks": {\n  "reach-east": {"description": "x", "vector": [1, 2]\n',
            "is not valid JSON (line 3, column 1: Expecting ',' delimiter)",
        ),
        ('{"model": "all-MiniLM-L6-v2", "dim": 2}', 'has no "tasks" mapping'),
        ("short vector", "holds a vector of length 3 for task 'reach-north', expected 384"),
        ("NaN", "holds a non-finite number (NaN, Infinity or beyond float32) in the vector of task 'reach-north'"),
        ("Infinity", "holds a non-finite number"),
        ("1e39", "holds a non-finite number"),
    ],
)
def test_broken_embedding_file_exits_2_naming_the_file_and_how_to_regenerate_it(tmp_path, capsys, contents, why):
    path = tmp_path / "embeddings.json"
    if contents in ("short vector", "NaN", "Infinity", "1e39"):
        data = json.loads((Path(__file__).parent.parent / "envs" / "data" / "toy_embeddings.json").read_text())
        vector = data["tasks"]["reach-north"]["vector"]
        data["tasks"]["reach-north"]["vector"] = (
            [0.1, 0.2, 0.3] if contents == "short vector" else [*vector[:-1], float(contents)]
        )
        contents = json.dumps(data)
    path.write_text(contents)
    run_dir = tmp_path / "run"
    assert main(["train", "toy-care", *TINY_RUN, f"agent.embedding_file={path}", f"run.dir={run_dir}"]) == 2
    line = one_error_line(capsys)
    assert f"embedding file '{path}' {why}" in line
    assert f"mtrl embed-tasks SUITE --out {path}" in line
    assert not run_dir.exists()


# --- mtrl eval on a run its checkpoint does not fit, or whose eval.json cannot be written --


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A tiny finished toy run (4 tasks, 2x32 units), trained once for the tests below."""
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    assert (
        main(
            [
                "train",
                "toy-mtsac",
                "train.total_steps=400",
                "train.warmup_steps=100",
                "train.eval_every=400",
                "train.checkpoint_every=400",
                "train.log_every=400",
                "train.eval_episodes=1",
                "train.final_eval_episodes=1",
                "train.progress=false",
                "agent.hidden_sizes=[32,32]",
                "device=cpu",
                f"run.dir={run_dir}",
            ]
        )
        == 0
    )
    return run_dir


def copy_of(run_dir: Path, tmp_path: Path, **config_changes) -> Path:
    """A copy of the run, its config.yaml sections updated (as if another run's checkpoint was copied in)."""
    copy = Path(shutil.copytree(run_dir, tmp_path / "run"))
    config = yaml.safe_load((copy / "config.yaml").read_text())
    for section, values in config_changes.items():
        config[section].update(values)
    (copy / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (copy / "eval.json").unlink(missing_ok=True)
    return copy


def test_eval_of_a_checkpoint_from_another_suite_exits_2(trained_run, tmp_path, capsys):
    run_dir = copy_of(trained_run, tmp_path, env={"num_tasks": 2})
    assert main(["eval", str(run_dir), "--device", "cpu"]) == 2
    line = one_error_line(capsys)
    assert "does not fit the run's config" in line and "trained on 4 tasks" in line
    assert not (run_dir / "eval.json").exists()


def test_eval_of_a_checkpoint_of_another_architecture_exits_2(trained_run, tmp_path, capsys):
    run_dir = copy_of(trained_run, tmp_path, agent={"hidden_sizes": [16, 16]})
    assert main(["eval", str(run_dir), "--device", "cpu"]) == 2
    line = one_error_line(capsys)
    assert "does not fit the run's config" in line and "size mismatch" in line
    assert not (run_dir / "eval.json").exists()


def test_eval_refuses_an_unwritable_eval_json_before_evaluating(trained_run, tmp_path, capsys, monkeypatch):
    import mtrl.inference.evaluate_run

    run_dir = copy_of(trained_run, tmp_path)
    (run_dir / "eval.json").mkdir()

    def not_now(*args, **kwargs):
        raise AssertionError("evaluated although eval.json cannot be written")

    monkeypatch.setattr(mtrl.inference.evaluate_run, "evaluate", not_now)
    assert main(["eval", str(run_dir), "--device", "cpu"]) == 2
    assert f"cannot write '{run_dir / 'eval.json'}': it is a directory" in one_error_line(capsys)


def test_eval_whose_eval_json_write_fails_exits_2_with_the_result(trained_run, tmp_path, capsys, monkeypatch):
    import mtrl.atomic_write

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    run_dir = copy_of(trained_run, tmp_path)
    monkeypatch.setattr(mtrl.atomic_write.os, "fsync", disk_full)
    assert main(["eval", str(run_dir), "--device", "cpu", "--episodes", "1"]) == 2
    line = one_error_line(capsys, after="mtrl: evaluating ")
    assert f"could not write '{run_dir / 'eval.json'}': the disk is full" in line and "mean success" in line
    assert not (run_dir / "eval.json").exists() and not list(run_dir.glob(".*.tmp"))  # nothing half-written


def test_eval_says_what_it_evaluates_and_shows_its_progress(trained_run, tmp_path, capsys):
    run_dir = copy_of(trained_run, tmp_path)
    assert main(["eval", str(run_dir), "--device", "cpu", "--episodes", "3"]) == 0
    out, err = capsys.readouterr()
    assert err.splitlines() == [
        f"mtrl: evaluating {run_dir / 'checkpoints' / 'step_400.pt'} (step 400): 3 episodes x 4 tasks; "
        "Ctrl-C stops it and writes nothing"
    ]
    assert "eval 12/12 (100%)" in out  # off a terminal: the progress line where it ended


def test_ctrl_c_during_eval_says_so_and_writes_nothing(trained_run, tmp_path):
    run_dir = copy_of(trained_run, tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parent.parent)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mtrl.cli", "eval", str(run_dir), "--device", "cpu", "--episodes", "400000"],
        env=env,
        text=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    first = proc.stderr.readline()
    assert first.startswith("mtrl: evaluating "), first + proc.stderr.read()
    # 400k toy episodes per task run as one vectorised batch for seconds: the Ctrl-C lands
    # inside them even when this test's worker waits for a core first (100k did not, in CI)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130
    assert proc.stderr.read().strip().splitlines() == [
        f"mtrl: evaluation interrupted; nothing was written ({run_dir / 'eval.json'} is as it was)"
    ]
    assert not (run_dir / "eval.json").exists()


def test_train_threads_sets_torchs_cpu_threads(tmp_path):
    import torch

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert main(["train", "toy-mtsac", *TINY_RUN, "train.threads=1", f"run.dir={tmp_path / 'one'}"]) == 0
        assert torch.get_num_threads() == 1
        torch.set_num_threads(2)
        assert main(["train", "toy-mtsac", *TINY_RUN, "train.threads=null", f"run.dir={tmp_path / 'default'}"]) == 0
        assert torch.get_num_threads() == 2  # null: left as it was
        assert yaml.safe_load((tmp_path / "one" / "config.yaml").read_text())["train"]["threads"] == 1
    finally:
        torch.set_num_threads(before)


def test_show_config_prints_the_resolved_config_with_docs_and_writes_nothing(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "mtrl.cli", "train", "toy-mtsac", "sac.tau=0.02", "--show-config"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    data = yaml.safe_load(proc.stdout)
    assert data["sac"]["tau"] == 0.02 and data["train"]["keep_checkpoints"] == 2  # override, default filled
    assert data["sac"]["precision"] in ("float32", "bfloat16")  # auto resolved, as the run records it
    lines = proc.stdout.splitlines()
    tau = lines.index("  tau: 0.02")
    assert lines[tau - 1] == "  # Target networks' Polyak rate."
    assert "  # (sac.precision=auto chose" in proc.stdout
    assert list(tmp_path.iterdir()) == []


def test_show_config_with_a_bad_override_is_a_one_line_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "mtrl.cli", "train", "toy-mtsac", "sac.tau=2", "--show-config"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == ["mtrl: error: sac.tau must be in (0, 1], got 2.0"]
    assert list(tmp_path.iterdir()) == []
