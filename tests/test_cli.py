import json
import subprocess
import sys

from mtrl.cli import main


def test_unknown_config_key_exits_2_with_one_line_and_writes_nothing(tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "mtrl.cli", "train", "toy-mtsac", "train.total_step=100", f"run.dir={run_dir}"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "mtrl: error: unknown config key 'train.total_step'; closest valid keys: 'train.total_steps', 'train.warmup_steps'"
    ]
    assert "Traceback" not in proc.stderr and not run_dir.exists()


def test_train_then_eval_writes_eval_json(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["train", "toy-mtsac", f"run.dir={run_dir}", "train.total_steps=600", "train.warmup_steps=200",
                 "train.progress=false", "train.eval_episodes=3", "train.final_eval_episodes=3"]) == 0
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
