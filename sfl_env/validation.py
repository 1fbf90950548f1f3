"""Checks for option values: each failure raises :class:`ConfigError` naming the option, the value
and what is allowed."""

from __future__ import annotations

import math
import sys
from typing import Any

import numpy as np

from .errors import ConfigError

__all__ = ["ConfigError", "check_choice", "check_int", "check_number"]


def check_choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is unknown; allowed: {', '.join(map(repr, allowed))}")


def check_int(name: str, value: Any, *, low: int | None = None, high: int | None = None) -> None:
    """An integer (Python or numpy; never a bool) within ``[low, high]``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ConfigError(f"{name}={value!r} is invalid; allowed: an integer")
    check_number(name, int(value), low=low, high=high)


def check_number(
    name: str, value: Any, *, low: float | None = None, high: float | None = None,
    low_open: bool = False, high_open: bool = False,
) -> None:
    """A finite number within the interval; a positive one (``low=0, low_open``) must also be a normal
    float, since a denormal such as 5e-324 turns into inf or NaN once divided."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value):
        raise ConfigError(f"{name}={value!r} is invalid; allowed: a finite number")
    if low == 0 and low_open and 0 < value < sys.float_info.min:
        raise ConfigError(f"{name}={value!r} is a denormal number; allowed: a positive number of at least "
                          f"{sys.float_info.min:.3g}")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        interval = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
        raise ConfigError(f"{name}={value!r} is out of range; allowed: {interval}")
