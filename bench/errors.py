"""Exceptions the harness raises on purpose; the CLI turns them into one-line messages."""

from __future__ import annotations

from typing import Any


MAX_VALUE_CHARS = 200  # of a bad value's repr in a ConfigError message


class AlbenchError(Exception):
    """Base class for errors the user can act on (the CLI prints them without a traceback)."""


class ConfigError(AlbenchError):
    """Bad input: names the config field, the bad value and the fix.

    The CLI maps it to exit code 2.
    """

    def __init__(self, field: str, problem: str, fix: str, value: Any = ...) -> None:
        self.field = field
        self.problem = problem
        self.fix = fix
        self.value = value
        shown = "" if value is ... else repr(value)
        if len(shown) > MAX_VALUE_CHARS:  # a huge value (a pasted list, an expanded alias) stays one short line
            shown = shown[:MAX_VALUE_CHARS] + f"... ({len(shown)} characters)"
        got = f" (got {shown})" if shown else ""
        super().__init__(f"{field}: {problem}{got}; fix: {fix}")

    def respelled(self, pattern: str, spelling: str) -> "ConfigError":
        """The same error with every match of the regex ``pattern`` in its field, problem and fix
        replaced by ``spelling`` (e.g. ``datasets[0]`` by ``dataset``, the key the user wrote)."""
        import re

        def sub(text: str) -> str:
            return re.sub(pattern, spelling, text)

        return ConfigError(sub(self.field), sub(self.problem), sub(self.fix), self.value)


class RunFailed(AlbenchError):
    """A run raised while executing; the CLI maps it to exit code 1."""


class RecordError(AlbenchError):
    """A records folder is missing, unreadable, or would be overwritten."""
