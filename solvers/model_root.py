"""The equation in the gap of the exact solver's starting model, compiled: one root finder for exact.py and
for newton.py's rows alike.

Each client contributes ``U / S``, ``M / S``, ``gamma / S`` and ``(M / e) / S`` to the sums A, B, C and D
(``S`` its slack at the gap, ``S - gap`` given; a compute-only client has no U, M or M / e; see
:func:`solvers.exact._model_solution`); the gap sought is where ``(1 - A)(1 - C) = B D``.
"""

from __future__ import annotations

import math

from numba import njit

__all__ = ["model_gap", "model_sigma", "model_sums"]

_COMPILE = {"cache": True, "error_model": "numpy", "nogil": True}


@njit(**_COMPILE)
def model_sums(work, mixed, mixed_over_e, gamma, slack, gap):
    """A, B, C, D at ``gap`` and their derivatives in the gap."""
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
    """The root in [lo, hi] of ``H = (1 - A)(1 - C) - B D`` (lo or hi should it lie outside).

    H is negative below the root and positive above it: where A and C are below 1 it increases with
    the gap; where one of them is not, H is negative (the gap is too small), and where both are not it
    is taken as -inf. Newton's method runs on ``H / (A + C)``, nearly linear in the gap (``1 / A - 1``
    for one resource), from ``gap``, until a step is below ``tolerance`` of the gap; a step that would
    leave the bracket tries the bound it overshot once, else the bracket is bisected in the ratio."""
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


@njit(**_COMPILE)
def model_sigma(work, mixed, mixed_over_e, gamma, slack, gap, sigma) -> float:
    """The model's sigma at ``gap``: ``(1 - A) / B`` or ``D / (1 - C)``, whichever has no cancellation
    (``sigma`` as it was where B is 0 or the root is not positive and finite)."""
    A, B, C, D, _, _, _, _ = model_sums(work, mixed, mixed_over_e, gamma, slack, gap)
    if B > 0:
        root = (1.0 - A) / B if A <= C else D / (1.0 - C)
        sigma = root if 0 < root < math.inf else sigma
    return sigma
