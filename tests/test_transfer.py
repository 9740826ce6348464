"""Single-task baselines (`mtrl single-task`) and the negative-transfer map (`mtrl report
--transfer MT --single ST`)."""

import csv
import json

import numpy as np
import pytest

from mtrl.analysis.transfer import bootstrap_difference, write_transfer_report
from mtrl.cli import main

from conftest import TINY_TOY


def test_bootstrap_difference_brackets_the_difference_of_means():
    rng = np.random.default_rng(0)
    x, y = np.array([0.2, 0.3, 0.25]), np.array([0.8, 0.9, 0.7])
    lo, hi = bootstrap_difference(x, y, 4000, rng)
    assert lo < x.mean() - y.mean() < hi < 0  # clearly negative transfer
    lo, hi = bootstrap_difference(np.array([0.5, 0.5]), np.array([0.5, 0.5]), 100, rng)
    assert lo == hi == 0


def write_run(path, tasks: dict[str, float], name: str, env: dict):
    """A finished run as mtrl writes it: config.yaml and a final evaluation in metrics.jsonl."""
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(json.dumps({"env": env, "agent": {"name": name}, "run": {"name": name}}))
    record = {
        "step": 1000,
        "eval/success_mean": float(np.mean(list(tasks.values()))),
        **{f"eval/success/{t}": v for t, v in tasks.items()},
    }
    (path / "metrics.jsonl").write_text(json.dumps(record) + "\n")


def test_transfer_is_multi_task_minus_single_task_per_task(tmp_path, capsys):
    for seed, (a, b) in enumerate([(0.2, 0.9), (0.4, 0.7), (0.3, 0.8)]):
        write_run(tmp_path / "mt" / f"seed{seed}", {"reach": a, "push": b}, "mtsac", {"suite": "x"})
    for seed, (a, b) in enumerate([(0.9, 0.5), (1.0, 0.6)]):
        write_run(tmp_path / "st" / f"reach-{seed}", {"reach": a}, "mtsac", {"suite": "x", "tasks": ["reach"]})
        write_run(tmp_path / "st" / f"push-{seed}", {"push": b}, "mtsac", {"suite": "x", "tasks": ["push"]})
    out = tmp_path / "report"
    assert (
        main(["report", "--transfer", str(tmp_path / "mt"), "--single", str(tmp_path / "st"), "--out", str(out)]) == 0
    )
    rows = {r["task"]: r for r in csv.DictReader(open(out / "transfer.csv"))}
    assert np.isclose(float(rows["reach"]["transfer"]), 0.3 - 0.95)  # negative transfer
    assert np.isclose(float(rows["push"]["transfer"]), 0.8 - 0.55)  # positive
    assert float(rows["reach"]["ci_high"]) < 0 < float(rows["push"]["ci_low"])
    assert (out / "transfer.png").stat().st_size > 1000 and "reach" in (out / "transfer.md").read_text()
    assert "-0.650" in capsys.readouterr().out
    for seed, a in enumerate([0.1, 0.5, 0.6]):  # a second method joins: the first one's CIs do not move
        write_run(tmp_path / "mt2" / f"seed{seed}", {"reach": a, "push": a}, "care", {"suite": "x"})
    alone = write_transfer_report([tmp_path / "mt"], [tmp_path / "st"], tmp_path / "r1", reps=20).rows
    joined = write_transfer_report(
        [tmp_path / "mt2", tmp_path / "mt"], [tmp_path / "st"], tmp_path / "r2", reps=20
    ).rows
    assert [r for r in joined if r["method"] == "mtsac"] == alone and len(joined) == 4


@pytest.mark.parametrize(
    "args, message",
    [
        (["--transfer", "MT"], "takes both lists"),
        (["--single", "ST"], "takes both lists"),
        ([], "give the run directories"),
    ],
)
def test_transfer_bad_input_is_one_line(args, message, capsys):
    assert main(["report", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_single_task_trains_each_task_alone_at_the_per_task_budget_then_maps_transfer(tmp_path, toy_run, capsys):
    pytest.importorskip("ray")
    out = tmp_path / "single"
    tiny = [o for o in TINY_TOY if not o.startswith(("train.progress", "train.checkpoint_every"))]
    assert main(["single-task", "toy-mtsac", *tiny, "--seeds", "1", "--out", str(out)]) == 0
    manifest = json.loads((out / "sweep.json").read_text())
    assert sorted(t["name"] for t in manifest["trials"]) == sorted(
        ["reach-east", "reach-north", "reach-west", "reach-south"]
    )
    assert all(t["state"] == "done" and t["env_steps"] == 100 for t in manifest["trials"])  # 400 steps / 4 tasks
    north = (out / "reach-north" / "seed0" / "config.yaml").read_text()
    assert "num_tasks: 1" in north and "goal_angles:\n  - 90.0" in north
    report = tmp_path / "transfer"
    assert main(["report", "--transfer", str(toy_run), "--single", str(out), "--out", str(report)]) == 0
    rows = list(csv.DictReader(open(report / "transfer.csv")))
    assert sorted(r["task"] for r in rows) == sorted(["reach-east", "reach-north", "reach-west", "reach-south"])


@pytest.mark.parametrize("config", ["toy-mtsac", "study-mt10-mtsac", "kitchen-mtsac"])
def test_single_task_overrides_keep_exactly_that_task_under_its_name(config):
    from mtrl.builders import make_suite
    from mtrl.config import load_config
    from mtrl.sweeps.single_task import single_task_overrides

    if config.startswith("kitchen"):
        pytest.importorskip("gymnasium_robotics")
    points, common = single_task_overrides(config, ["train.total_steps=1000"])
    tasks = make_suite(load_config(config)).task_names
    assert list(points) == tasks
    assert "train.total_steps=" + str(1000 // len(tasks)) in common and "train.num_slots=1" in common
    assert not any(o == "train.total_steps=1000" for o in common)  # replaced by the per-task budget
    for task, overrides in points.items():
        assert make_suite(load_config(config, [*common, *overrides])).task_names == [task]
