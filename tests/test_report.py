"""``mtrl report``: grouping, rliable statistics against independent computations, files, CLI."""

import csv
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy.stats import trim_mean

from mtrl.analysis.report import find_runs, group_runs, probability_of_improvement, write_report
from mtrl.cli import main
from mtrl.config import ConfigError, TrainConfig
from mtrl.errors import install_hint

from conftest import TOY_FAST, make_config

TASKS = ["reach", "push", "pick", "door"]
# final per-task success, 3 seeds each: mtsac is poor, care clearly better
FINAL = {
    "mtsac": [[0.1, 0.2, 0.0, 0.3], [0.2, 0.1, 0.1, 0.2], [0.0, 0.3, 0.2, 0.1]],
    "care": [[0.9, 0.8, 1.0, 0.7], [0.8, 0.9, 0.9, 1.0], [1.0, 0.7, 0.8, 0.9]],
}
EARLY = [0.5, 0.5, 0.5, 0.5]  # step 1000 of mtsac seed 0 beats its final eval: its "best"
REPS = 300
ROOT = Path(__file__).resolve().parents[1]


def config(agent, seed, name=None, **extra):
    cfg = {
        "seed": seed,
        "device": "cpu",
        "resume": False,
        "run": {"name": name or f"{agent}-toy", "dir": f"/x/{seed}"},
        "env": {"suite": "toy", "num_tasks": 4},
        "agent": {"name": agent, "hidden_sizes": [64, 64], **extra},
        "train": {"total_steps": 2000, "progress": seed % 2 == 0},
    }
    return cfg


def eval_record(step, scores, tasks=TASKS):
    return {
        "step": step,
        "eval/success_mean": float(np.mean(scores)),
        "eval/return_mean": None,
        **{f"eval/success/{t}": s for t, s in zip(tasks, scores)},
    }


def write_run(path, cfg, records, tail=""):
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records) + tail)
    return path


def logged_extras(step):
    att = {f"attention/{t}/{i}": (i + 1) / 10 for t in TASKS for i in range(4)}
    cos = {f"conflict/critic/cosine/{a}|{b}": -0.5 for i, a in enumerate(TASKS) for b in TASKS[i + 1 :]}
    return {"step": step, "loss/critic": 1.0, **att, **cos}


@pytest.fixture
def runs_root(tmp_path):
    root = tmp_path / "runs"
    for agent, finals in FINAL.items():
        for seed, final in enumerate(finals):
            extra = {"num_encoders": 4} if agent == "care" else {}
            first = EARLY if (agent, seed) == ("mtsac", 0) else [s / 2 for s in final]
            records = [{"step": 500, "loss/critic": 2.0}, eval_record(1000, first), eval_record(2000, final)]
            if agent == "care":
                records.append(logged_extras(2000))
            write_run(root / agent / f"seed{seed}", config(agent, seed, **extra), records)
    return root


def test_grouping_statistics_and_files(runs_root, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    state = np.random.get_state()
    report = write_report([runs_root / "mtsac", runs_root / "care"], out, reps=REPS)
    assert np.array_equal(np.random.get_state()[1], state[1])  # the global RNG is left as it was
    assert [m.label for m in report.methods] == ["mtsac-toy", "care-toy"]  # run.name, in order of appearance
    assert [len(m.runs) for m in report.methods] == [3, 3]
    mtsac, care = report.results["methods"]
    for entry, finals in zip((mtsac, care), FINAL.values()):
        flat = np.sort(np.ravel(finals))
        brute = flat[len(flat) // 4 : len(flat) - len(flat) // 4].mean()  # middle 50 % of 12 scores
        assert entry["final"]["iqm"] == pytest.approx(brute) == pytest.approx(trim_mean(flat, 0.25))
        assert entry["final"]["mean"] == pytest.approx(flat.mean())
        for which in ("final", "best"):
            for stat in ("iqm", "mean"):
                lo, hi = entry[which][stat + "_ci"]
                assert 0 <= lo <= entry[which][stat] <= hi <= 1
        assert entry["final_step"] == [2000, 2000] and entry["curve"]["step"] == [1000, 2000]
        assert entry["curve"]["iqm"][-1] == pytest.approx(brute)
        assert entry["curve"]["lo"][-1] <= brute <= entry["curve"]["hi"][-1]
    best = np.array([EARLY, *FINAL["mtsac"][1:]]).ravel()
    assert mtsac["best"]["iqm"] == pytest.approx(trim_mean(best, 0.25))
    assert mtsac["runs"][0]["best_step"] == 1000 and mtsac["runs"][1]["best_step"] == 2000
    poi = {(p["x"], p["y"]): p for p in report.results["probability_of_improvement"]}
    assert poi[("care-toy", "mtsac-toy")]["p"] > 0.9 and poi[("care-toy", "mtsac-toy")]["ci"][0] > 0.9
    assert poi[("mtsac-toy", "care-toy")]["p"] == pytest.approx(1 - poi[("care-toy", "mtsac-toy")]["p"])
    with open(out / "per_task.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8
    for row in rows:
        finals = np.array(FINAL[row["method"].split("-")[0]])[:, TASKS.index(row["task"])]
        assert float(row["mean"]) == pytest.approx(finals.mean()) and float(row["std"]) == pytest.approx(finals.std())
        assert row["n"] == "3"
    with open(out / "summary.csv") as f:
        summary = list(csv.DictReader(f))
    assert float(summary[1]["final_iqm"]) == pytest.approx(care["final"]["iqm"])
    matrix, tasks, encoders = report.methods[1].runs[0].attention()
    assert tasks == TASKS and encoders == ["0", "1", "2", "3"] and np.allclose(matrix, [[0.1, 0.2, 0.3, 0.4]] * 4)
    matrix, tasks, _ = report.methods[1].runs[0].conflict()
    assert tasks == TASKS and np.allclose(matrix, np.where(np.eye(4) > 0, 1.0, -0.5))
    assert report.methods[0].runs[0].attention() is None and report.methods[0].runs[0].conflict() is None
    for name in ("success_curve", "per_task_curves", "attention", "conflict"):
        assert (out / f"{name}.png").stat().st_size > 1000
    md = (out / "summary.md").read_text()
    assert "mtsac-toy" in md and "care-toy" in md and f"{care['final']['iqm']:.3f}" in md
    assert "| reach | 0.10 ± 0.08 | 0.90 ± 0.08 |" in md and "mtrl report " in md
    assert json.loads((out / "summary.json").read_text())["methods"][1]["final"] == care["final"]
    assert (out / "keep.txt").read_text() == "mine"
    again = write_report(
        [runs_root / "mtsac", runs_root / "care"], tmp_path / "again", reps=REPS
    )  # same seed: the same report
    assert again.results["methods"] == report.results["methods"]


def test_a_methods_confidence_intervals_do_not_depend_on_the_other_methods(runs_root, tmp_path):
    alone = write_report([runs_root / "care"], tmp_path / "alone", reps=REPS).results["methods"][0]
    both = write_report([runs_root / "mtsac", runs_root / "care"], tmp_path / "both", reps=REPS).results["methods"][1]
    assert both["label"] == alone["label"] == "care-toy"
    assert both["final"] == alone["final"] and both["best"] == alone["best"] and both["curve"] == alone["curve"]
    assert alone["final"]["mean_ci"][0] < alone["final"]["mean_ci"][1]  # a real interval, not a point


def test_vectorised_probability_of_improvement_matches_rliable():
    from rliable import metrics

    rng = np.random.default_rng(0)
    for shape_x, shape_y in (((3, 5), (3, 5)), ((2, 4), (5, 4)), ((1, 3), (1, 3))):
        x, y = rng.integers(0, 4, shape_x) / 4, rng.integers(0, 4, shape_y) / 4  # many ties
        assert probability_of_improvement(x, y)[0] == pytest.approx(metrics.probability_of_improvement(x, y))
    x = rng.random((3, 4))
    assert probability_of_improvement(x, x.copy())[0] == metrics.probability_of_improvement(x, x.copy()) == 0.5


def test_labels_from_differing_config_keys_and_a_foreign_config(tmp_path):
    write_run(tmp_path / "a1", config("mtsac", 1, name="run"), [eval_record(1000, FINAL["mtsac"][0])])
    write_run(tmp_path / "a2", config("mtsac", 2, name="run"), [eval_record(1000, FINAL["mtsac"][1])])
    write_run(tmp_path / "b1", config("care", 1, name="run", num_encoders=4), [eval_record(1000, FINAL["care"][0])])
    sb3 = {"seed": 1, "agent": {"name": "sb3-sac", "learning_rate": 0.0003}, "env": {"suite": "toy", "num_tasks": 4}}
    write_run(tmp_path / "c1", sb3, [eval_record(1000, FINAL["care"][1])])
    methods = group_runs(find_runs([tmp_path]))
    assert [len(m.runs) for m in methods] == [2, 1, 1]
    labels = [m.label for m in methods]
    assert labels[0].startswith("agent.name=mtsac") and labels[1].startswith("agent.name=care")
    assert "agent.num_encoders=4" in labels[1] and labels[2].startswith("agent.name=sb3-sac") and len(set(labels)) == 3


def test_a_distillation_with_each_seeds_own_teachers_is_one_method(tmp_path):
    def distilled(seed, root="/st"):
        cfg = config("mtsac", seed, name="distilled")
        cfg["distill"] = {"teachers": [f"{root}/{t}/seed{seed}" for t in TASKS], "weight": 1.0}
        return cfg

    for seed in (0, 1):
        write_run(tmp_path / f"d{seed}", distilled(seed), [eval_record(1000, FINAL["mtsac"][seed])])
    write_run(tmp_path / "other", distilled(0, root="/elsewhere"), [eval_record(1000, FINAL["care"][0])])
    methods = group_runs(find_runs([tmp_path]))
    assert [len(m.runs) for m in methods] == [2, 1]  # other teachers: another method
    assert methods[0].key["distill.teachers"] == json.dumps([f"/st/{t}" for t in TASKS])


def test_a_single_run_and_running_runs(tmp_path, capsys):
    single = write_run(tmp_path / "one", config("care", 0), [eval_record(1000, FINAL["care"][0])])
    report = write_report([single], tmp_path / "out1", reps=REPS)
    (entry,) = report.results["methods"]
    assert entry["final"]["iqm_ci"] == [pytest.approx(entry["final"]["iqm"])] * 2  # one run: degenerate CI
    assert report.results["probability_of_improvement"] == [] and not (tmp_path / "out1" / "attention.png").exists()
    # still running: seed 1 is one eval ahead, its last line is half written; seed 2 has not evaluated
    root = tmp_path / "running"
    write_run(root / "s0", config("mtsac", 0), [eval_record(1000, EARLY), eval_record(2000, FINAL["mtsac"][0])])
    write_run(
        root / "s1",
        config("mtsac", 1),
        [eval_record(1000, EARLY), eval_record(2000, EARLY), eval_record(3000, FINAL["mtsac"][1])],
        tail='{"step": 4000, "eval/success_mean": 1.0, "eval/succ',
    )
    write_run(root / "s2", config("mtsac", 2), [{"step": 500, "loss/critic": 1.0}])
    assert main(["report", str(root), "--out", str(tmp_path / "out2"), "--reps", "200"]) == 0
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines() == [f"mtrl: warning: '{root / 's2'}' has no evaluation yet; skipped"]
    assert "mtsac-toy" in captured.out
    (entry,) = json.loads((tmp_path / "out2" / "summary.json").read_text())["methods"]
    assert [r["final_step"] for r in entry["runs"]] == [2000, 3000] and entry["curve"]["step"] == [1000, 2000]
    assert entry["final"]["iqm"] == pytest.approx(trim_mean(np.ravel(FINAL["mtsac"][:2]), 0.25))
    assert "| mtsac-toy | 2 | 2,000..3,000 |" in (tmp_path / "out2" / "summary.md").read_text()
    with pytest.raises(ConfigError, match="no run has an evaluation yet"):
        write_report([root / "s2"], tmp_path / "out3")


def test_a_resumed_run_replaces_the_re_done_evaluations(tmp_path):
    records = [eval_record(1000, EARLY), eval_record(2000, [1.0] * 4), eval_record(2000, FINAL["care"][0])]
    (run,) = find_runs([write_run(tmp_path / "r", config("care", 0), records)])
    assert [e["step"] for e in run.evals] == [1000, 2000] and run.evals[-1]["eval/success/reach"] == 0.9


def test_errors(tmp_path, capsys, monkeypatch):
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"mtrl: error: '{tmp_path / 'missing'}' does not exist"]
    (tmp_path / "empty" / "a" / "b").mkdir(parents=True)
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "no run directory" in capsys.readouterr().err
    write_run(tmp_path / "t" / "a", config("care", 0), [eval_record(1000, FINAL["care"][0])])
    write_run(tmp_path / "t" / "b", config("care", 1), [eval_record(1000, [0.5, 0.5], ["x", "y"])])
    with pytest.raises(ConfigError, match="same config but evaluate different tasks"):
        write_report([tmp_path / "t"], tmp_path / "out")
    monkeypatch.setitem(sys.modules, "rliable", None)
    with pytest.raises(ConfigError, match=re.escape(f"needs the report extra: {install_hint('report')}")):
        write_report([tmp_path / "t"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_report_of_real_toy_runs(tmp_path):
    fast = {
        "total_steps": 3000,
        "warmup_steps": 1000,
        "eval_every": 1000,
        "eval_episodes": 2,
        "batch_per_task": 16,
        "buffer_per_task": 3000,
        "log_every": 1000,
        "checkpoint_every": 0,
    }
    if "final_eval_episodes" in TrainConfig.__dataclass_fields__:
        fast["final_eval_episodes"] = 2
    from mtrl.training.trainer import train

    for seed in (1, 2):
        train(
            make_config(
                TOY_FAST,
                seed=seed,
                agent={"hidden_sizes": [32, 32]},
                train=fast,
                run={"dir": str(tmp_path / "runs" / f"seed{seed}")},
            )
        )
    report = write_report([tmp_path / "runs"], tmp_path / "report", reps=REPS)
    (method,) = report.methods
    assert len(method.runs) == 2 and len(method.tasks) == 4
    (entry,) = report.results["methods"]
    assert entry["final_step"] == [3000, 3000] and entry["curve"]["step"][-1] == 3000
    assert (tmp_path / "report" / "success_curve.png").stat().st_size > 1000


def test_step_reads_every_run_as_it_stood_then(runs_root, tmp_path):
    report = write_report([runs_root], tmp_path / "at1000", reps=REPS, step=1000)
    for method in report.methods:
        assert all(r.final_step == 1000 for r in method.runs)
    halves = np.array([[s / 2 for s in final] for final in FINAL["care"]])
    care = next(m for m in report.methods if "care" in m.label)
    assert np.allclose(care.scores("final"), halves)
    assert "--step 1000" in report.results["command"]
    assert main(["report", str(runs_root), "--out", str(tmp_path / "bad"), "--step", "-1"]) == 2


def test_eval_json_from_mtrl_eval_counts_as_an_evaluation(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "toy-mtsac",
                "train.total_steps=400",
                "train.warmup_steps=100",
                "train.eval_every=0",
                "train.final_eval_episodes=1",
                "train.progress=false",
                "agent.hidden_sizes=[16]",
                "device=cpu",
                f"run.dir={run_dir}",
            ]
        )
        == 0
    )
    metrics = run_dir / "metrics.jsonl"  # as if stopped before its first evaluation
    metrics.write_text(
        "".join(line + "\n" for line in metrics.read_text().splitlines() if "eval/success_mean" not in line)
    )
    with pytest.raises(ConfigError, match="no run has an evaluation yet"):
        write_report([run_dir], tmp_path / "out0", reps=REPS)
    assert main(["eval", str(run_dir), "--episodes", "2", "--device", "cpu"]) == 0
    evaluated = json.loads((run_dir / "eval.json").read_text())
    report = write_report([run_dir], tmp_path / "out", reps=REPS)
    (run,) = report.results["methods"][0]["runs"]
    assert run["final_step"] == 400 and run["final_source"] == "eval.json"
    assert run["final_success_mean"] == pytest.approx(evaluated["success_mean"])
    assert "| 400 (eval.json) |" in (tmp_path / "out" / "summary.md").read_text()


def test_eval_json_adds_a_later_evaluation_but_training_wins_a_tie(tmp_path):
    def with_eval_json(path, step, success):
        (path / "eval.json").write_text(
            json.dumps(
                {
                    "checkpoint": f"step_{step}.pt",
                    "env_steps": step,
                    "episodes_per_task": 50,
                    "success_mean": success,
                    "return_mean": 0.0,
                    "tasks": {t: {"success": success, "return": 0.0, "episodes": 50} for t in TASKS},
                }
            )
        )
        return path

    later = with_eval_json(write_run(tmp_path / "a", config("care", 0), [eval_record(1000, EARLY)]), 1500, 1.0)
    tie = with_eval_json(write_run(tmp_path / "b", config("care", 1), [eval_record(1000, EARLY)]), 1000, 1.0)
    (a,), (b,) = find_runs([later]), find_runs([tie])
    assert [(e["step"], e["eval/success_mean"]) for e in a.evals] == [(1000, 0.5), (1500, 1.0)]
    assert [(e["step"], e["eval/success_mean"]) for e in b.evals] == [(1000, 0.5)]
    (tmp_path / "a" / "eval.json").write_text("{not json")
    with pytest.raises(ConfigError, match="is not an evaluation written by `mtrl eval`"):
        find_runs([later])


def test_a_stopped_run_and_its_restart_count_as_one_seed(tmp_path, capsys):
    stopped = write_run(tmp_path / "runs" / "a-stopped", config("mtsac", 0), [eval_record(1000, EARLY)])
    finished = write_run(
        tmp_path / "runs" / "b-finished",
        config("mtsac", 0),
        [eval_record(1000, EARLY), eval_record(2000, FINAL["mtsac"][0])],
    )
    write_run(
        tmp_path / "runs" / "c-seed1",
        config("mtsac", 1),
        [eval_record(1000, EARLY), eval_record(2000, FINAL["mtsac"][1])],
    )
    assert main(["report", str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--reps", "200"]) == 0
    (entry,) = json.loads((tmp_path / "out" / "summary.json").read_text())["methods"]
    assert [r["dir"] for r in entry["runs"]] == [str(finished), str(tmp_path / "runs" / "c-seed1")]
    assert entry["curve"]["step"] == [1000, 2000]  # the curve and the table read the same runs
    (warning,) = capsys.readouterr().err.strip().splitlines()
    assert warning.startswith(f"mtrl: warning: '{stopped}' repeats the method and seed 0 of '{finished}'"), warning


def test_the_committed_quickstart_report_is_what_mtrl_report_gives(tmp_path):
    """docs/results/quickstart/report is reproduced number for number by its own command."""
    results = ROOT / "docs" / "results" / "quickstart"
    committed = json.loads((results / "report" / "summary.json").read_text())
    again = write_report([results], tmp_path / "report").results
    for old, new in zip(committed["methods"], again["methods"], strict=True):
        assert {k: old[k] for k in ("final", "best", "per_task", "curve")} == {
            k: new[k] for k in ("final", "best", "per_task", "curve")
        }


def test_nineteen_methods_get_nineteen_distinct_looks_in_both_legends(tmp_path, monkeypatch):
    """19 methods (the MT10 study's count) each get their own (colour, line style) pair in the
    success curve's legend and in the per-task figure's, not 10 colours cycled twice."""
    from matplotlib.colors import to_hex

    import mtrl.analysis.report as report

    figures = {}
    monkeypatch.setattr(report, "save_figure", lambda fig, path: figures.__setitem__(Path(path).name, fig))
    for k in range(19):
        scores = [(k + i) % 5 / 4 for i in range(len(TASKS))]
        # the last method is not evaluated on the first task: it must still be in the per-task legend
        tasks = TASKS[1:] if k == 18 else TASKS
        write_run(
            tmp_path / "runs" / f"m{k}",
            config("mtsac", 0, name=f"method-{k}", hidden=k),
            [eval_record(1000, scores[: len(tasks)], tasks)],
        )
    write_report([tmp_path / "runs"], tmp_path / "out", reps=5)
    curve_legend = figures["success_curve.png"].axes[0].get_legend()
    per_task_legend = figures["per_task_curves.png"].legends[0]
    for legend in (curve_legend, per_task_legend):
        labels = [t.get_text() for t in legend.get_texts()]
        looks = [(to_hex(h.get_color()), h.get_linestyle()) for h in legend.legend_handles]
        assert sorted(labels) == sorted(f"method-{k}" for k in range(19))
        assert len(set(looks)) == 19, looks


def test_committed_results_record_run_dir_relative_to_their_results_folder():
    """docs/results/<study>/<method>/seed<s>/config.yaml says ``run.dir: <method>/seed<s>``:
    where the run is inside its results folder, not the path of the machine that trained it."""
    results = ROOT / "docs" / "results"
    configs = sorted(results.rglob("config.yaml"))
    assert configs
    for path in configs:
        config = yaml.safe_load(path.read_text())
        run_dir = config["run"]["dir"]
        inside = path.parent.relative_to(results)
        assert run_dir == Path(*inside.parts[1:]).as_posix(), f"{path.relative_to(ROOT)}: run.dir {run_dir}"
        for teacher in (config.get("distill") or {}).get("teachers") or []:  # relative to the results folder too
            assert not Path(teacher).is_absolute(), f"{path.relative_to(ROOT)}: teacher {teacher}"
            assert (results / inside.parts[0] / teacher).is_dir(), f"{path.relative_to(ROOT)}: teacher {teacher}"


def test_read_metrics_skips_what_it_cannot_read_as_the_report_did(tmp_path):
    """The one reader of metrics.jsonl (report, sweep, tests): unreadable lines, records
    without a finite step and a trailing line still being written are skipped; a value that
    is not a finite number reads as None."""
    from mtrl.training.logger import read_metrics

    lines = [
        '{"step": 1, "a": 0.5}',
        "not json",
        "[1, 2]",
        '{"step": "2", "a": 1}',
        '{"step": NaN}',
        '{"step": 3, "a": Infinity, "b": "x", "c": true, "d": 2}',
        '{"step": 4, "a": 0.25}',
    ]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines))  # the last line's newline not written yet
    assert read_metrics(tmp_path) == [{"step": 1, "a": 0.5}, {"step": 3, "a": None, "b": None, "c": None, "d": 2}]
