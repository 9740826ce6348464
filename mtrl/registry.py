"""Name -> component registry for suites, agents and schedulers.

Built-in components register themselves when the ``mtrl.envs``/``mtrl.agents`` packages and
``mtrl.training.scheduler`` are imported; a separately installed package adds a suite through
the entry-point group ``mtrl.envs`` (the entry point names a module that registers on
import, or a :class:`mtrl.suite.Suite` subclass registered under the entry point's name).
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from mtrl.errors import ConfigError, did_you_mean, install_hint

KINDS = ("suite", "agent", "scheduler")
ENTRY_POINT_GROUP = "mtrl.envs"


@dataclass(frozen=True)
class Entry:
    """A registered component: what builds it and the dataclass its config section must match."""

    kind: str
    name: str
    target: Any  # the class or factory function
    config_cls: type
    summary: str


_REGISTRY: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
# suite plug-ins whose entry point failed to load: name -> one line saying why
_BROKEN: dict[str, str] = {}
_loaded = False


def register(kind: str, name: str, config_cls: type) -> Callable[[Any], Any]:
    """Decorator: ``@register("agent", "mtsac", MTSACConfig)`` on a factory or class."""
    if kind not in KINDS:
        raise ValueError(f"unknown registry kind '{kind}', expected one of {KINDS}")

    def wrap(target: Any) -> Any:
        doc = (target.__doc__ or "").strip().splitlines()
        _REGISTRY[kind][name] = Entry(kind, name, target, config_cls, doc[0] if doc else "")
        return target

    return wrap


def _load_builtin_and_plugins() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in ("mtrl.envs", "mtrl.agents", "mtrl.training.scheduler"):
        importlib.import_module(module)
    _BROKEN.clear()
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as e:  # one broken plug-in must not take the other suites down with it
            first = (str(e).splitlines() or [""])[0][:160]
            _BROKEN[ep.name] = f"its entry point '{ep.value}' failed to import ({type(e).__name__}: {first})"
            continue
        config_cls = getattr(obj, "Config", None)
        if isinstance(obj, type) and config_cls is not None and ep.name not in _REGISTRY["suite"]:
            register("suite", ep.name, config_cls)(obj)


def get(kind: str, name: str, key: str | None = None) -> Entry:
    """Look a component up; unknown names fail with the closest registered ones, and a
    component whose optional dependency is missing with how to install it."""
    _load_builtin_and_plugins()
    table = _REGISTRY[kind]
    where = f"'{key}': " if key else ""
    if kind == "suite" and name in _BROKEN and name not in table:
        raise ConfigError(
            f"{where}suite '{name}' is installed but {_BROKEN[name]}; fix or reinstall the package "
            "that provides it, or uninstall it"
        )
    if name not in table:
        hint = did_you_mean(name, list(table), cutoff=0.4)
        raise ConfigError(f"{where}unknown {kind} '{name}'{hint}; registered: {', '.join(sorted(table))}")
    missing = unmet_requirement(table[name])
    if missing:
        raise ConfigError(f"{where}{kind} '{name}' {missing}")
    return table[name]


def unmet_requirement(entry: Entry) -> str | None:
    """How to install what a component needs, if it is missing: its target's ``requires =
    (module, extra)`` names a top-level module (looked for, not imported) and the mtrl extra
    that installs it. None when it has no such attribute or the module is there."""
    requires = getattr(entry.target, "requires", None)
    if not requires:
        return None
    module, extra = requires
    if importlib.util.find_spec(module) is not None:
        return None
    if getattr(entry.target, "__module__", "").startswith("mtrl."):  # one of mtrl's own extras
        return f"needs the {extra} extra: {install_hint(extra)}"
    return f"needs the {extra} extra: pip install -e '.[{extra}]'"  # the extra of the plugin's own package


def broken() -> dict[str, str]:
    """Suite plug-ins that failed to load: name -> why (for ``mtrl list``)."""
    _load_builtin_and_plugins()
    return dict(_BROKEN)


def names(kind: str) -> list[Entry]:
    """All registered components of one kind, sorted by name."""
    _load_builtin_and_plugins()
    return [_REGISTRY[kind][n] for n in sorted(_REGISTRY[kind])]
