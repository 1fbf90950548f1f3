"""The equation in the gap of the exact solver's starting model, compiled: :func:`solvers.exact._model_gap`
for :mod:`solvers.newton`, one row at a time.

A client with upload work contributes ``U / S``, ``M / S``, ``gamma / S`` and ``(M / e) / S`` to the sums
A, B, C and D (``S`` its slack at the gap; see :func:`solvers.exact._model_solution`); the gap sought
is where ``(1 - A)(1 - C) = B D``. Sums run client by client, so they may differ from exact.py's in the
last bits.
"""

from __future__ import annotations

import math

from numba import njit

__all__ = ["model_gap", "model_sums"]

_COMPILE = {"cache": True, "error_model": "numpy", "nogil": True}


@njit(**_COMPILE)
def model_sums(work, mixed, mixed_over_e, gamma, slack, gap):
    """exact._model_solution's ``sums`` at ``gap``: A, B, C, D and their derivatives in the gap."""
    A = B = C = D = dA = dB = dC = dD = 0.0
    for k in range(work.size):
        x = 1.0 / (gap + slack[k])
        x2 = x * x
        A += work[k] * x
        B += mixed[k] * x
        C += gamma[k] * x
        D += mixed_over_e[k] * x
        dA -= work[k] * x2
        dB -= mixed[k] * x2
        dC -= gamma[k] * x2
        dD -= mixed_over_e[k] * x2
    return A, B, C, D, dA, dB, dC, dD


@njit(**_COMPILE)
def model_gap(work, mixed, mixed_over_e, gamma, slack, lo, hi, gap, tolerance, max_steps) -> float:
    """exact._model_gap, with the sums of :func:`model_sums`."""
    a, b = lo, hi
    tried_lo = tried_hi = False
    for _ in range(max_steps):
        A, B, C, D, dA, dB, dC, dD = model_sums(work, mixed, mixed_over_e, gamma, slack, gap)
        tried_lo, tried_hi = tried_lo or gap == lo, tried_hi or gap == hi
        h = ((1.0 - A) * (1.0 - C) - B * D) / (A + C) if (A < 1.0 or C < 1.0) else -math.inf
        if h > 0:
            b = gap
        elif h < 0:
            a = gap
        else:
            return gap
        if b - a <= tolerance * b:
            return gap
        dh = (-dA * (1.0 - C) - (1.0 - A) * dC - dB * D - B * dD - h * (dA + dC)) / (A + C)
        step = h / dh if (math.isfinite(h) and dh > 0) else math.inf
        new = gap - step
        if abs(step) <= tolerance * gap and a <= new <= b:
            return new
        if not a < new < b:  # try an untried bound the step overshot, else bisect in the ratio
            if new <= a and a == lo and not tried_lo:
                new = lo
            elif new >= b and b == hi and not tried_hi:
                new = hi
            else:
                new = math.sqrt(a * b)
        gap = new
    return gap
