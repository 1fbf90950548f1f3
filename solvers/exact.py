"""Fast exact solver for the resource allocation problem, vectorised over clients (no cvxpy).

Parametrisation.  A client with upload work is described by its per-Hz SNR ``z = c / beta``
(``c = p g / (B N0)`` is its SNR over the whole band): its bandwidth share is ``beta = c / z``
and its upload time ``kappa * h(z)``, with ``h(z) = z / ln(1 + z)`` and ``kappa = D ln2 / (B c)``
the upload time with unlimited bandwidth.  Both are explicit and monotone in ``z``; the solver
works with ``s = ln z``.

Optimality conditions.  Every client with work finishes exactly at ``T``.  A client with both
upload and server work splits its slack so that its marginal values of bandwidth and CPU are
in a ratio ``sigma**2`` common to all clients, which makes its compute time
``sigma * m * q(z)`` with ``q(z) = z sqrt(h'(z))`` and ``m = sqrt(gamma kappa / c)``
(``gamma = C / F``).  With ``sum(beta) = 1`` and ``sum(phi) = 1`` this is a square system in
``(s_1, ..., s_n, gap, ln sigma)``, where ``gap = T - floor`` and ``floor = max(a + kappa)``:

    client k:   ln(kappa_k (h(z_k) - 1) + sigma m_k q(z_k)) - ln(gap + floor - a_k - kappa_k) = 0
    resources:  1 / sum(beta) - 1 = 0,   1 / sum(phi) - 1 = 0

The client equations are nearly linear in ``s`` and the resource equations in ``T``.

Algorithm.  Newton's method on this system, with the diagonal client block eliminated first,
so that a step costs one vectorised pass and a 2x2 solve.  It starts from the optimum of a
model that freezes each client's upload work and its elasticity at the current shares (one
equation in the gap), re-solved a few times at its own shares; trial points are pulled back
onto the client equations by per-client Newton steps and accepted when the largest residual
decreases.  Should Newton still fail, a slower safeguarded
method takes over: bracketed root finding on ``ln sigma`` (CPU balance) nested inside one on
``gap`` (bandwidth balance), both monotone.  Clients without upload work get no bandwidth and
clients without server work no CPU; when no client has both kinds of work, the two resources
decouple into two one-dimensional problems.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .conditions import (
    MAX_LOG_STEP,
    Clients,
    h_minus_1,
    latency_error,
    Point,
    pulled_back,
)
from .model_root import model_gap, model_sigma
from .problem import ResourceProblem

# Newton iteration
_TOLERANCE = 1e-10  # largest residual at convergence
_STALL_TOLERANCE = 1e-9  # relative latency error accepted when round-off stalls the iteration
_MAX_ITERATIONS = 60
_MAX_HALVINGS = 30
_FLOOR_FRACTION = 0.9  # a step may close at most this fraction of the gap
# starting point
# A fourth round of the model brings the start's residual on tests/test_solvers.py's client-bound problems
# from ~2e-3 to ~4e-4 (median; worst 0.18 to 0.05). The model's gap to 1e-2 instead of 1e-8 makes a solve ~5%
# cheaper (benchmarks/solver_start.py) and moves the start by ~1e-9: Newton's next step would be ~1e-4 of it.
_MODEL_ROUNDS = 4  # re-solves of the model
_MIN_ELASTICITY = 0.01  # keeps the model finite for clients in bandwidth saturation
_MODEL_FLOOR_FRACTION = 0.1  # the start keeps at least this fraction of the equal split's gap
_MODEL_ROOT_TOLERANCE = 1e-2  # relative Newton step (or bracket) at which the model's gap is taken
_MODEL_ROOT_STEPS = 100
# safeguarded fallback
_FALLBACK_TOLERANCE = 1e-8  # relative latency error accepted from it
_SETTLED = 1e-13  # client residual of its evaluations, and tolerance of its root finding
_MAX_SETTLE_STEPS = 300
_MAX_ABS_TAU = 700.0  # |ln sigma| beyond this overflows
_CLAMP = 1e3  # |ln(sum of shares)| is capped at this for the root finder


class ExactSolverError(RuntimeError):
    """Raised when neither the Newton iteration nor the safeguarded fallback converges."""


def _newton_step(clients: Clients, p: Point) -> tuple[np.ndarray, float, float]:
    """(ds, dgap, dtau) solving the linearised system.

    Each client's linearised equation gives ``ds = -(r + dr_dgap dgap + dr_dtau dtau) / dr_ds``.
    With it, ``d ln(sum)`` of each resource is linear in ``(dgap, dtau)``, and Newton on
    ``1 / sum - 1`` asks for ``d ln(sum) = 1 - sum``: a 2x2 system.
    """
    ds_dr = 1.0 / p.dr_ds
    rows, rhs = [], []
    if clients.has_upload:  # d ln(sum beta) = -sum(beta ds) / sum(beta)
        w = p.beta * ds_dr / p.sum_beta
        rows.append((float(w.dot(p.dr_dgap)), float(w.dot(p.dr_dtau))))
        rhs.append(1.0 - p.sum_beta - float(w.dot(p.r)))
    if clients.has_cpu:  # d ln(sum phi) = -(sum(phi (dlogq ds + dtau)) + cpu-only terms) / sum(phi)
        w = p.phi * p.dlogq * ds_dr / p.sum_phi
        cpu_only = float((p.phi_cpu / (p.gap + clients.d_cpu)).sum()) if clients.has_cpu_only else 0.0
        rows.append((
            float(w.dot(p.dr_dgap)) - cpu_only / p.sum_phi,
            float(w.dot(p.dr_dtau)) - p.sum_phi_upload / p.sum_phi,
        ))
        rhs.append(1.0 - p.sum_phi - float(w.dot(p.r)))
    if clients.coupled:
        (j11, j12), (j21, j22) = rows
        det = j11 * j22 - j12 * j21
        dgap = (rhs[0] * j22 - j12 * rhs[1]) / det
        dtau = (j11 * rhs[1] - j21 * rhs[0]) / det
    else:
        dgap, dtau = rhs[0] / rows[0][0], 0.0
    ds = (p.r + p.dr_dgap * dgap + p.dr_dtau * dtau) * -ds_dr
    return ds, dgap, dtau


def _step_length(p: Point, ds: np.ndarray, dgap: float, dtau: float) -> float:
    largest_log_step = max(float(np.abs(ds).max()) if ds.size else 0.0, abs(dtau))
    alpha = min(1.0, MAX_LOG_STEP / largest_log_step) if largest_log_step > 0 else 1.0
    if dgap < 0:
        alpha = min(alpha, _FLOOR_FRACTION * p.gap / -dgap)
    return alpha


def _newton(clients: Clients, p: Point) -> Point:
    if not math.isfinite(p.error):
        raise ExactSolverError("non-finite values at the starting point")
    for _ in range(_MAX_ITERATIONS):
        if p.error < _TOLERANCE:
            return p
        ds, dgap, dtau = _newton_step(clients, p)
        alpha = _step_length(p, ds, dgap, dtau)
        for _ in range(_MAX_HALVINGS):
            trial = pulled_back(clients, p.gap + alpha * dgap, p.tau + alpha * dtau, p.s + alpha * ds)
            if trial.error < p.error:
                break
            alpha *= 0.5
        else:
            break
        if trial.error > 0.5 * p.error and latency_error(clients, trial) < _STALL_TOLERANCE:
            return trial  # progress has stalled at round-off level
        p = trial
    if latency_error(clients, p) < _STALL_TOLERANCE:
        return p
    raise ExactSolverError(f"Newton iteration did not converge (residual {p.error:.3g})")


def _equal_split_gap(clients: Clients) -> float:
    """Latency of the equal split among the clients of this system, minus the floor."""
    n_upload = clients.c.size
    n_cpu = clients.a_cpu.size + int(np.count_nonzero(clients.gamma))
    z = clients.c * n_upload
    upload_excess = clients.kappa * h_minus_1(z)  # upload time minus kappa
    gaps = (upload_excess + clients.gamma * n_cpu - clients.d, clients.gamma_cpu * n_cpu - clients.d_cpu)
    return max(float(gap.max()) for gap in gaps if gap.size)


def _model_solution(clients: Clients, equal_gap: float) -> tuple[float, float, np.ndarray]:
    """(gap, sigma, beta) of a model of the problem that is solved exactly, re-solved at its own shares.

    The model freezes, at the current shares, each client's upload work ``U = u * beta`` (its upload
    time ``u`` at bandwidth share ``beta``) and the elasticity ``e = -d ln u / d ln beta``. With a
    client's slack ``S = T - a`` its optimum is ``beta = (U + sigma M) / S`` and
    ``phi = (gamma + M / (e sigma)) / S`` with ``M = sqrt(e U gamma)`` (a compute-only client:
    ``phi = gamma / S``). Summed over the clients, ``sum(beta) = A + sigma B`` and
    ``sum(phi) = C + D / sigma``, where A, B, C, D are the sums of U, M, gamma and M / e over S; both
    equal 1 where ``(1 - A)(1 - C) = B D``, a single equation in the gap
    (:func:`solvers.model_root.model_gap`).
    At a fixed point of the re-solves the model's conditions are the problem's, so each re-solve
    brings the start closer; the gap stays between ``_MODEL_FLOOR_FRACTION`` of the equal split's
    and the equal split's.
    """
    upload_per_log = clients.kappa * clients.c  # upload work U = this / ln(1 + z)
    # model_root's sums run over the upload clients, then the compute-only ones (no U, M or M / e)
    slack = np.concatenate([clients.d + clients.kappa, clients.d_cpu])  # S - gap
    gamma = np.concatenate([clients.gamma, clients.gamma_cpu])
    no_upload = np.zeros(clients.gamma_cpu.size)
    beta = np.full(clients.c.size, 1.0 / max(clients.c.size, 1))
    lo, hi = _MODEL_FLOOR_FRACTION * equal_gap, equal_gap
    gap, sigma = hi, 1.0
    for _ in range(_MODEL_ROUNDS):
        z = clients.c / beta
        log1p = np.log1p(z)
        work = upload_per_log / log1p
        elasticity = np.maximum(1.0 - z / ((1.0 + z) * log1p), _MIN_ELASTICITY)
        mixed = np.sqrt(work * clients.gamma * elasticity)
        terms = (np.concatenate([work, no_upload]), np.concatenate([mixed, no_upload]),
                np.concatenate([mixed / elasticity, no_upload]), gamma, slack)  # fmt: skip
        gap = model_gap(*terms, lo, hi, gap, _MODEL_ROOT_TOLERANCE, _MODEL_ROOT_STEPS)
        sigma = model_sigma(*terms, gap, sigma)
        beta = (work + sigma * mixed) / (gap + slack[: clients.c.size])
        beta /= beta.sum()  # when the gap is held at a bound, the shares of the model's optimum do not sum to 1
    return gap, sigma, beta


def _initial_point(clients: Clients) -> Point:
    """The model's solution, or the equal split should it be unusable."""
    equal_gap = _equal_split_gap(clients)
    gap, sigma, beta = _model_solution(clients, equal_gap)
    if not (math.isfinite(gap) and 0 < sigma < math.inf and _all_positive_finite(beta)):
        gap, sigma, beta = equal_gap, 1.0, np.full(clients.c.size, 1.0 / max(clients.c.size, 1))
    return pulled_back(clients, gap, math.log(sigma), np.log(clients.c / beta))


def _all_positive_finite(values: np.ndarray) -> bool:
    """Whether every value is > 0 and finite (True when there are none)."""
    return not values.size or bool(values.min() > 0 and values.max() < math.inf)


def _solve_nested(clients: Clients, start: Point) -> Point:
    """Safeguarded fallback for when Newton fails: nested bracketed 1-D root finding.

    At a given gap, ln sigma is the root of ln(sum phi), which decreases in ln sigma (no root:
    the CPU cannot suffice, the gap is too small).  The gap is the root of ln(sum beta) at that
    sigma (of the single resource equation for an uncoupled system), which decreases in the gap.
    Slow but sure.  Every evaluation starts from the same point and settles the client
    equations fully, so that the functions handed to the root finder are deterministic.
    """
    from scipy.optimize import brentq  # only needed on this rare path

    def settle(gap: float, tau: float) -> Point:
        return pulled_back(clients, gap, tau, start.s, _SETTLED, _MAX_SETTLE_STEPS)

    def balanced(gap: float) -> Point | None:
        if not clients.coupled:
            return settle(gap, 0.0)
        cpu_excess = lambda tau: _clamped_log(settle(gap, tau).sum_phi)  # noqa: E731
        bracket = _bracket_decreasing(cpu_excess, start.tau, _MAX_ABS_TAU)
        if bracket is None:
            return None
        return settle(gap, brentq(cpu_excess, *bracket, xtol=_SETTLED))

    def resource_excess(log_gap: float) -> float:
        p = balanced(math.exp(log_gap))
        if p is None:
            return _CLAMP
        return _clamped_log(p.sum_beta if clients.has_upload else p.sum_phi)

    upper = math.log(start.gap) + 1.0 if start.gap > 0 else math.nan
    bracket = _bracket_decreasing(resource_excess, upper, abs(upper) + 2.0 * _MAX_ABS_TAU)
    if bracket is None:
        raise ExactSolverError("no bracket for the latency")
    p = balanced(math.exp(brentq(resource_excess, *bracket, xtol=_SETTLED)))
    if p is None or not latency_error(clients, p) < _FALLBACK_TOLERANCE:
        raise ExactSolverError("the safeguarded iteration did not converge either")
    return p


def _clamped_log(value: float) -> float:
    """ln(value) limited to +-_CLAMP, so that root finders see finite values (NaN stays NaN)."""
    if math.isnan(value):
        return value
    return max(-_CLAMP, min(_CLAMP, math.log(value))) if value > 0 else -_CLAMP


def _bracket_decreasing(f: Callable[[float], float], x: float, limit: float) -> tuple[float, float] | None:
    """(lo, hi) with f(lo) >= 0 >= f(hi) for a decreasing f, searched outwards from x by doubling
    steps while |x| stays below limit; None if there is none."""
    if not math.isfinite(x):
        return None
    step = 1.0
    lo = hi = x
    f_lo = f_hi = f(x)
    while f_lo < 0:
        hi, lo = lo, lo - step
        step *= 2.0
        if abs(lo) > limit:
            return None
        f_lo = f(lo)
    while f_hi > 0:
        lo, hi = hi, hi + step
        step *= 2.0
        if abs(hi) > limit:
            return None
        f_hi = f(hi)
    return (lo, hi) if f_lo >= 0 >= f_hi else None  # not so when f is NaN


def _solve_system(problem: ResourceProblem, upload: np.ndarray, cpu_only: np.ndarray) -> Point:
    clients = Clients(problem, upload, cpu_only)
    start = _initial_point(clients)
    try:
        return _newton(clients, start)
    except ExactSolverError:
        settled = _solve_nested(clients, start)
    try:
        return _newton(clients, settled)  # polish, now from close by
    except ExactSolverError:
        return settled


def solve_exact(problem: ResourceProblem) -> tuple[np.ndarray, np.ndarray]:
    """Optimal (bandwidth_share, server_cpu_share); raises ExactSolverError on failure."""
    with np.errstate(all="ignore"):  # overflow or 0/0 far from the solution shows up as an inf error
        return _solve(problem)


def _solve(problem: ResourceProblem) -> tuple[np.ndarray, np.ndarray]:
    if problem.every_client_has_work:
        everyone = np.arange(problem.num_clients)  # the common case: one coupled system of everyone
        p = _solve_system(problem, everyone, everyone[:0])
        beta, phi = p.beta, p.phi
    else:
        beta, phi = _solve_by_kind(problem, problem.upload_bits > 0, problem.server_cycles > 0)
    beta_total, phi_total = float(beta.sum()), float(phi.sum())
    if not (math.isfinite(beta_total) and math.isfinite(phi_total)):  # a NaN or inf share spoils its total
        raise ExactSolverError("non-finite shares")
    # Both resources bind at the optimum: hand out exactly all of each one that is used.
    return beta / (beta_total or 1.0), phi / (phi_total or 1.0)


def _solve_by_kind(
    problem: ResourceProblem, has_upload: np.ndarray, has_compute: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Shares when some clients lack upload or server work (idle clients get nothing)."""
    upload = np.flatnonzero(has_upload)
    cpu_only = np.flatnonzero(has_compute & ~has_upload)
    beta = np.zeros(problem.num_clients)
    phi = np.zeros(problem.num_clients)
    if np.any(has_upload & has_compute):
        p = _solve_system(problem, upload, cpu_only)
        beta[upload], phi[upload], phi[cpu_only] = p.beta, p.phi, p.phi_cpu
    else:  # the resources decouple
        if upload.size:
            beta[upload] = _solve_system(problem, upload, cpu_only[:0]).beta
        if cpu_only.size:
            phi[cpu_only] = _solve_system(problem, upload[:0], cpu_only).phi_cpu
    return beta, phi
