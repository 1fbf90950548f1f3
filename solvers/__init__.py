"""Bandwidth and server-CPU allocation for one local iteration of split federated learning.

``solve(problem, method)`` returns the allocation that minimises the iteration latency of a
:class:`ResourceProblem`.  Methods: ``"exact"`` (a vectorised Newton solver, the default) and
``"cvxpy"`` (the same problem as a compiled cvxpy program solved by Clarabel, the reference).
A failed solve never raises: it returns the equal split with ``fallback=True`` and a status
that says what failed.

``solve_batch(batch, method)`` does the same for the N problems of a :class:`ProblemBatch` at once
(:mod:`solvers.batch`): row i of its :class:`AllocationBatch` is ``solve(batch.problem(i), method)``'s.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from . import batch as batched
from . import exact
from .batch import AllocationBatch, ProblemBatch, equal_split_batch, iteration_latency_batch
from .problem import Allocation, ResourceProblem, iteration_latency, shannon_rate_bps, uplink_rate

__all__ = [
    "ROUND_OFF",
    "SOLVER_METHODS",
    "Allocation",
    "AllocationBatch",
    "ProblemBatch",
    "ResourceProblem",
    "equal_split",
    "equal_split_batch",
    "iteration_latency",
    "iteration_latency_batch",
    "shannon_rate_bps",
    "solve",
    "solve_batch",
    "uplink_rate",
]

SOLVER_METHODS = ("exact", "cvxpy")

_ACCEPTED_STATUSES = ("optimal", "optimal_inaccurate")
ROUND_OFF = 1e-9  # allowed in shares (below 0) and in their totals (above 1), then removed


def _solve_cvxpy(problem: ResourceProblem) -> tuple[np.ndarray | None, np.ndarray | None, str]:
    from . import convex  # cvxpy is imported only when this method is used

    return convex.solve_convex(problem)


def _solve_exact(problem: ResourceProblem) -> tuple[np.ndarray, np.ndarray, str]:
    beta, phi = exact.solve_exact(problem)
    return beta, phi, "optimal"


_SOLVERS: dict[str, Callable[[ResourceProblem], tuple]] = {"exact": _solve_exact, "cvxpy": _solve_cvxpy}


def equal_split(problem: ResourceProblem) -> Allocation:
    """Every client gets 1/K of the band and of the server CPU, status ``"equal"``.

    Clients without upload (or server) work still receive their 1/K, which then goes unused.
    """
    start = time.perf_counter()
    beta, phi, latency = _equal_shares(problem)
    return Allocation(beta, phi, latency, "equal", time.perf_counter() - start, "equal", False)


def solve(problem: ResourceProblem, method: str = "exact") -> Allocation:
    """Latency-minimising shares of ``problem`` by ``method`` (one of :data:`SOLVER_METHODS`).

    ``latency_s`` is recomputed from the returned shares.  If the solver raises, reports a
    status other than optimal/optimal_inaccurate, or returns unusable shares, the equal split
    is returned with ``fallback=True``, ``method`` still naming the solver that failed and
    ``status`` saying what failed (``"solver_error: ..."``, ``"infeasible"``, ``"nonfinite"``
    or the solver's own status).
    """
    if method not in _SOLVERS:
        raise ValueError(f"unknown solver method {method!r}; allowed are {', '.join(map(repr, SOLVER_METHODS))}")
    start = time.perf_counter()
    try:
        beta, phi, status = _SOLVERS[method](problem)
    except Exception as error:  # noqa: BLE001 - the contract is to fall back, whatever went wrong
        beta, phi, status = None, None, f"solver_error: {type(error).__name__}: {error}"
    if beta is not None and status in _ACCEPTED_STATUSES:
        shares, failure = _feasible_shares(problem, beta, phi)
        if failure is None:
            latency = float(iteration_latency(problem, *shares).max())
            if np.isfinite(latency):
                return Allocation(*shares, latency, status, time.perf_counter() - start, method, False)
            failure = "nonfinite"
        status = failure
    beta, phi, latency = _equal_shares(problem)
    return Allocation(beta, phi, latency, status, time.perf_counter() - start, method, True)


def solve_batch(batch: ProblemBatch, method: str = "exact") -> AllocationBatch:
    """:func:`solve` of every problem of ``batch``, as one :class:`AllocationBatch`.

    With ``method="exact"`` the rows it can are solved together (see :mod:`solvers.batch`), each
    row's result bitwise independent of the other rows; the rest go to :func:`solve` one by one.
    """
    return batched.solve_batch(batch, method, solve_row=solve, round_off=ROUND_OFF)


def _equal_shares(problem: ResourceProblem) -> tuple[np.ndarray, np.ndarray, float]:
    share = np.full(problem.num_clients, 1.0 / problem.num_clients)
    return share, share.copy(), float(iteration_latency(problem, share, share).max())


def _feasible_shares(
    problem: ResourceProblem, beta: np.ndarray, phi: np.ndarray
) -> tuple[tuple[np.ndarray, np.ndarray], str | None]:
    """The shares with round-off removed (tiny negatives clipped, totals rescaled to at most 1),
    or a failure status if they are unusable."""
    shares = []
    for share in (beta, phi):
        share = np.asarray(share, dtype=np.float64).reshape(-1)
        if share.shape != (problem.num_clients,):
            return (), "solver_error: shares of the wrong shape"
        if not np.isfinite(share).all():
            return (), "nonfinite"
        lowest = share.min()
        if lowest < -ROUND_OFF:
            return (), "infeasible"
        share = np.clip(share, 0.0, None) if lowest < 0 else share.copy()  # a fresh array either way
        total = float(share.sum())
        if total > 1.0 + ROUND_OFF:
            return (), "infeasible"
        shares.append(share / total if total > 1.0 else share)
    return tuple(shares), None
