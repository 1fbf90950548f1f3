"""Checks for option values: each failure raises :class:`ConfigError` naming the option, the value
and what is allowed."""

from __future__ import annotations

from typing import Any

from .errors import ConfigError

__all__ = ["ConfigError", "check_choice", "check_int", "check_number"]


def check_choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is unknown; allowed: {', '.join(map(repr, allowed))}")


def check_int(name: str, value: Any, *, low: int | None = None, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name}={value!r} is invalid; allowed: an integer")
    check_number(name, value, low=low, high=high)


def check_number(
    name: str, value: Any, *, low: float | None = None, high: float | None = None,
    low_open: bool = False, high_open: bool = False,
) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise ConfigError(f"{name}={value!r} is invalid; allowed: a number")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        interval = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
        raise ConfigError(f"{name}={value!r} is out of range; allowed: {interval}")
