"""The errors SFL-Env raises for a user's mistakes, and the one way they are worded.

Every mistake a user can make (an unknown or out-of-range option, a missing or malformed data file, an
action the env refuses) raises a :class:`UserError` whose message names what is wrong and what is
allowed. They derive from ``ValueError``, so ``except ValueError`` keeps working.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(ValueError):
    """A mistake in what the user asked for; the message names it and what is allowed."""


class ConfigError(UserError):
    """An unknown option, or an option with a value outside what is allowed."""


class DatasetError(UserError):
    """A dataset that cannot be loaded as asked: missing, malformed or inconsistent files or sizes."""


class ActionError(UserError):
    """An action the environment refuses: outside the action space, or a cut privacy forbids."""


class CorruptFileError(UserError):
    """A file the project reads back (a checkpoint, a log, results) that is torn or foreign; the message
    names the file, where, and what to do."""


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``known`` to ``name``, or an empty string."""
    close = difflib.get_close_matches(name, sorted(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_name(kind: str, name: str, known: Iterable[str], error: type[UserError] = ConfigError) -> UserError:
    """The error for a name that is not one of ``known``: it suggests the closest and lists them all."""
    known = sorted(known)
    return error(f"unknown {kind} {name!r}{did_you_mean(name, known)}; allowed: {', '.join(known)}")
