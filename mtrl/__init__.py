"""mtrl: multi-task reinforcement learning for robot manipulation (Meta-World v3)."""

import sys
from importlib.machinery import PathFinder
from pathlib import Path

__version__ = "0.1.0"

# agents/ and envs/ sit beside mtrl/ in the repository and install as mtrl.agents and
# mtrl.envs (pyproject.toml's package-dir). Run from a source tree without installing it
# (PYTHONPATH=the checkout), nothing maps them: this finder does, for that tree only.
_ROOT = Path(__file__).resolve().parent.parent
_SUBPACKAGES = ("agents", "envs")
# The checkout this mtrl runs from (an editable install, or PYTHONPATH), or None when it is
# installed from a wheel: install hints for extras differ (mtrl.errors.install_hint).
SOURCE_CHECKOUT: Path | None = _ROOT if (_ROOT / "pyproject.toml").is_file() else None


class _SourceTreeFinder:
    """Finds ``mtrl.agents`` / ``mtrl.envs`` in the checkout this mtrl was imported from."""

    @staticmethod
    def find_spec(fullname: str, path=None, target=None):
        if fullname in (f"{__name__}.{name}" for name in _SUBPACKAGES):
            return PathFinder.find_spec(fullname, [str(_ROOT)])
        return None


if SOURCE_CHECKOUT is not None and not (Path(__file__).parent / "agents").exists():
    sys.meta_path.insert(0, _SourceTreeFinder())


def __getattr__(name: str):
    """``mtrl.load`` (and ``mtrl.TrainedPolicy``) on first use, so that ``import mtrl`` stays cheap."""
    if name in ("load", "TrainedPolicy"):
        from mtrl.inference import policy

        return getattr(policy, name)
    raise AttributeError(f"module 'mtrl' has no attribute '{name}'")
