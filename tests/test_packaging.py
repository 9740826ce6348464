"""What a wheel of mtrl holds: one top-level package, mtrl, with agents/ and envs/ inside it
as mtrl.agents and mtrl.envs (pyproject.toml's package-dir), their data and the entry point."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "mtrl", "agents", "envs", "configs")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    """A wheel built by pip from a copy of the source tree (the checkout is left untouched)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, src / name)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
                           "-w", str(tmp / "out"), str(src)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (path,) = (tmp / "out").glob("mtrl-*.whl")
    return zipfile.ZipFile(path)


def test_agents_and_envs_install_inside_mtrl(wheel):
    names = wheel.namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].startswith("mtrl-")}
    assert top == {"mtrl"}, top  # no top-level `agents` or `envs` to clash with other projects
    assert {"mtrl/agents/care.py", "mtrl/envs/toy.py", "mtrl/envs/data/metaworld_embeddings.json"} <= set(names)


def test_the_kitchen_entry_point_names_mtrl_envs(wheel):
    (entry_points,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    text = wheel.read(entry_points).decode()
    assert "franka_kitchen = mtrl.envs.franka_kitchen:FrankaKitchenSuite" in text, text
