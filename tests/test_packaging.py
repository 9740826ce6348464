"""What a wheel of mtrl holds: one top-level package, mtrl, with agents/ and envs/ inside it
as mtrl.agents and mtrl.envs (pyproject.toml's package-dir), their data and the entry point;
and the install hints for extras, which fit how mtrl was installed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "mtrl", "agents", "envs", "configs")


@pytest.fixture(scope="module")
def wheel_path(tmp_path_factory) -> Path:
    """A wheel built by pip from a copy of the source tree (the checkout is left untouched)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, src / name)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-w",
            str(tmp / "out"),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    (path,) = (tmp / "out").glob("mtrl-*.whl")
    return path


@pytest.fixture(scope="module")
def wheel(wheel_path) -> zipfile.ZipFile:
    return zipfile.ZipFile(wheel_path)


def test_agents_and_envs_install_inside_mtrl(wheel):
    names = wheel.namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].startswith("mtrl-")}
    assert top == {"mtrl"}, top  # no top-level `agents` or `envs` to clash with other projects
    assert {"mtrl/agents/care.py", "mtrl/envs/toy.py", "mtrl/envs/data/metaworld_embeddings.json"} <= set(names)


def test_the_kitchen_entry_point_names_mtrl_envs(wheel):
    (entry_points,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    text = wheel.read(entry_points).decode()
    assert "franka_kitchen = mtrl.envs.franka_kitchen:FrankaKitchenSuite" in text, text


def install(wheel: Path, site: Path) -> Path:
    """The wheel installed by pip into the folder ``site``."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--target",
            str(site),
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return site


def run_in(site: Path, code: str) -> str:
    """``code``'s output in a fresh interpreter that sees only ``site`` (``python -S``: no
    site-packages, so no other mtrl and no other top-level agents or envs)."""
    proc = subprocess.run(
        [sys.executable, "-S", "-c", code],
        capture_output=True,
        text=True,
        cwd=site,
        env={"PYTHONPATH": str(site), "PATH": os.environ.get("PATH", "")},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_installed_there_is_mtrl_agents_and_no_agents(wheel_path, tmp_path):
    site = install(wheel_path, tmp_path / "site")
    out = run_in(
        site,
        "import importlib.util as u\nprint(u.find_spec('agents'), u.find_spec('envs'), "
        "u.find_spec('mtrl.agents').origin)",
    )
    assert out == f"None None {site / 'mtrl' / 'agents' / '__init__.py'}", out


def test_extra_hints_fit_how_mtrl_was_installed(wheel_path, tmp_path):
    from mtrl.errors import install_hint

    assert install_hint("report") == f"pip install -e '{ROOT}[report]'"  # this checkout (editable, or on PYTHONPATH)
    hint = "from mtrl.errors import install_hint\nprint(install_hint('report'))"
    assert (
        run_in(install(wheel_path, tmp_path / "a"), hint) == f"pip install '{wheel_path}[report]'"
    )  # the wheel pip recorded
    copy = Path(shutil.copy2(wheel_path, tmp_path / wheel_path.name))
    site = install(copy, tmp_path / "b")
    copy.unlink()  # that wheel is gone: the package by name
    assert run_in(site, hint) == "pip install 'mtrl[report]'"
