"""User-facing errors, in a module that imports nothing of mtrl's, so that every module
(config, registry, schedulers, suites) can raise them without importing each other."""

from __future__ import annotations

import difflib
import math
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

# Every character str.splitlines() breaks at, shown escaped: a message quoting user input
# (an override, a file name, a YAML key) stays one line whatever that input holds.
_LINE_BREAKS = str.maketrans({c: repr(c)[1:-1] for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"})


def one_line(message: object) -> str:
    """``message`` as text with its line breaks escaped (``\\n``); an exception other than
    mtrl's own (whose messages are one line already) as ``Type: its first line``."""
    if isinstance(message, BaseException) and not isinstance(message, (ConfigError, RunError)):
        text = str(message).strip().splitlines()
        message = f"{type(message).__name__}: {text[0]}" if text else type(message).__name__
    return str(message).translate(_LINE_BREAKS)


def install_hint(extra: str) -> str:
    """The pip command that adds mtrl's optional ``extra``, fitting how this mtrl was installed:
    ``pip install -e '/checkout[extra]'`` from a source checkout (editable, or on PYTHONPATH),
    ``pip install '/where/it/came/from[extra]'`` for a local wheel or folder pip recorded
    (PEP 610's direct_url.json), else ``pip install 'mtrl[extra]'``."""
    import json
    from importlib import metadata
    from urllib.parse import unquote, urlparse

    from mtrl import SOURCE_CHECKOUT

    if SOURCE_CHECKOUT is not None:
        return f"pip install -e '{SOURCE_CHECKOUT}[{extra}]'"
    try:
        url = json.loads(metadata.distribution("mtrl").read_text("direct_url.json") or "{}").get("url", "")
    except (metadata.PackageNotFoundError, ValueError):
        url = ""
    source = urlparse(url)
    if source.scheme == "file" and Path(unquote(source.path)).exists():
        return f"pip install '{unquote(source.path)}[{extra}]'"
    return f"pip install 'mtrl[{extra}]'"


class ConfigError(ValueError):
    """A user-facing configuration mistake; its message is one line saying what and how to fix."""

    def __init__(self, message: object = "") -> None:
        super().__init__(one_line(message))


def did_you_mean(word: str, options: list[str], cutoff: float = 0.5) -> str:
    """`` (did you mean 'a' or 'b'?)`` for the closest options, or an empty string."""
    close = difflib.get_close_matches(word, options, n=3, cutoff=cutoff)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


class RunError(RuntimeError):
    """A run cannot go on (a failed write, repeated divergence, a broken environment); the
    message is one line saying what happened and what was kept."""

    def __init__(self, message: object = "") -> None:
        super().__init__(one_line(message))


class WriteError(RunError):
    """A file could not be written (disk full, no permission); nothing half-written is left."""


class RunStopped(RunError):
    """SIGINT/SIGTERM stopped a run after saving a checkpoint; the message says how to resume."""


def exit_status(prog: str, error: ConfigError | RunError) -> int:
    """Print ``error`` as ``prog``'s one line on stderr and return the command's exit status:
    2 a configuration mistake, 143 / 130 a run stopped by SIGTERM / SIGINT, 1 any other run error."""
    if isinstance(error, RunStopped):
        print(f"{prog}: {error}", file=sys.stderr)
        return 143 if "SIGTERM" in str(error) else 130
    print(f"{prog}: error: {error}", file=sys.stderr)
    return 2 if isinstance(error, ConfigError) else 1


class RenderUnavailable(RuntimeError):
    """An env that can render cannot here (no OpenGL backend for MuJoCo): the message is one
    line saying what to install. ``mtrl eval --video`` says it and still evaluates."""


# --- value checks -----------------------------------------------------------------------
# A config's range checks are a table of rows (key, value, predicate, "must be ..."), so that
# every message reads alike: ``train.total_steps must be at least 1, got -5``.


def check_values(rows: Iterable[tuple[str, Any, Callable[[Any], bool], str]]) -> None:
    """Raise a :class:`ConfigError` for the first row whose value fails its predicate."""
    for key, value, ok, must in rows:
        if not ok(value):
            raise ConfigError(f"{key} must be {must}, got {value!r}")


def finite(v: Any) -> bool:
    """Not NaN and not infinite: every float a config holds must be (YAML's .inf and .nan,
    1e999, are floats too). Checked with the field's type, before its range."""
    return math.isfinite(v)


def at_least(bound: float) -> Callable[[Any], bool]:
    return lambda v: v >= bound


def positive(v: Any) -> bool:
    return v > 0


def in_unit_interval(v: Any) -> bool:
    """In (0, 1]."""
    return 0 < v <= 1


def one_of(choices: Iterable[str]) -> tuple[Callable[[Any], bool], str]:
    """A row's predicate *and* text: ``(key, value, *one_of(NAMES))``."""
    choices = tuple(choices)
    return (lambda v: v in choices), f"one of {', '.join(choices)}"


def or_null(ok: Callable[[Any], bool]) -> Callable[[Any], bool]:
    """``ok``, or ``None`` (YAML's null)."""
    return lambda v: v is None or ok(v)


def layer_sizes(v: Any) -> bool:
    """A non-empty list of layer widths, each at least 1."""
    return len(v) > 0 and all(s >= 1 for s in v)


def each_at_least_1(v: Any) -> bool:
    """Every width at least 1 (an empty list is allowed: no hidden layer)."""
    return all(s >= 1 for s in v)
