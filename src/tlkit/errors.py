"""Exceptions that carry an exit code, so the CLI can report without a traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class TlkitError(Exception):
    """A failure tlkit can explain. Runtime failures exit with code 1."""

    exit_code = 1


class UserError(TlkitError):
    """The user's input was wrong (flag, recipe, data, name). Exits with code 2."""

    exit_code = 2


class UnknownNameError(UserError, KeyError):
    """A name (model id, recipe, block) that does not exist, with the closest valid names."""

    def __init__(self, kind: str, name: str, valid: Iterable[str]):
        valid = sorted(valid)
        close = difflib.get_close_matches(str(name), valid, n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        super().__init__(f"unknown {kind} {name!r}.{hint} Valid: {', '.join(valid)}")
        self.name, self.valid, self.close = name, valid, close

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class InputSizeError(UserError, ValueError):
    """An input shape below an architecture's minimum."""


class WeightsError(UserError):
    """Weights that cannot be found or do not fit the model."""


def closest(name: str, valid: Iterable[str], n: int = 3) -> list[str]:
    """Return up to ``n`` names from ``valid`` closest to ``name``."""
    return difflib.get_close_matches(str(name), list(valid), n=n, cutoff=0.5)
