"""User-facing errors, in a module that imports nothing of mtrl's, so that every module
(config, registry, schedulers, suites) can raise them without importing each other."""

from __future__ import annotations

import difflib


class ConfigError(ValueError):
    """A user-facing configuration mistake; its message is one line saying what and how to fix."""


def did_you_mean(word: str, options: list[str], cutoff: float = 0.5) -> str:
    """`` (did you mean 'a' or 'b'?)`` for the closest options, or an empty string."""
    close = difflib.get_close_matches(word, options, n=3, cutoff=cutoff)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
