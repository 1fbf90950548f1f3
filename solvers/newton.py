"""The exact solver of :mod:`solvers.exact` for N problems, compiled with numba, one problem per row.

:func:`solve_rows` solves the rows of a :class:`~solvers.batch.ProblemBatch` in which every client
uploads and every client has server work (coupled) or none has. It follows ``exact.py`` step for
step: the client constants, the model's start, the pull-back onto the client equations,
the Newton step with its 2x2 solve, the halving line search, the stall test, and ``solve``'s checks
of the shares. It does not take the safeguarded fallback: a row on which ``exact.py`` would fall back
or raise (a division by zero, an overflowing ``exp``, a singular step, no convergence) and a row of
another kind come back unsolved, for the one-problem ``solve`` to handle.

A row is computed by the same scalar code whatever the other rows and however many, so its result
is bitwise independent of the batch. Sums run client by client, so they may differ from numpy's in
the last bits; agreement with the one-problem solve is to round-off, not bitwise.

Python's ``max(x, y)`` keeps ``x`` unless ``y > x``, and numpy's reductions propagate NaN; both are
written out here, so that a NaN ends a row where it ends the one-problem iteration.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit

from . import conditions, exact, model_root, problem
from .kernel_cache import drop_stale_kernels
from .model_root import model_gap, model_sigma
from .problem import LN2

__all__ = ["solve_row", "solve_rows"]

drop_stale_kernels(__file__, problem.__file__, model_root.__file__)  # LN2 and the model's root are compiled in
_COMPILE = {"cache": True, "error_model": "numpy", "nogil": True}  # numpy's error model: 1/0 is inf, not a raise


class Settings(NamedTuple):
    """The constants of exact.py and conditions.py, handed to the kernel as an argument: a compiled function
    cached on disk keeps the values of the globals it read, and its cache expires only with this file."""

    z_minus_log: np.ndarray  # power series of conditions.shape_functions
    log_minus_fraction: np.ndarray
    series_below: float
    pull_back_steps: int
    pull_back_tolerance: float
    max_log_step: float
    model_rounds: int
    min_elasticity: float
    model_floor_fraction: float
    model_root_tolerance: float
    model_root_steps: int
    floor_fraction: float
    stall_tolerance: float
    tolerance: float
    max_iterations: int
    max_halvings: int


def _settings() -> Settings:
    return Settings(
        np.ascontiguousarray(conditions._Z_MINUS_LOG, dtype=np.float64),
        np.ascontiguousarray(conditions._LOG_MINUS_FRACTION, dtype=np.float64),
        float(conditions._SERIES_BELOW), int(conditions._MAX_PULL_BACK_STEPS), float(conditions._PULL_BACK_TOLERANCE),
        float(conditions.MAX_LOG_STEP), int(exact._MODEL_ROUNDS), float(exact._MIN_ELASTICITY),
        float(exact._MODEL_FLOOR_FRACTION), float(exact._MODEL_ROOT_TOLERANCE), int(exact._MODEL_ROOT_STEPS),
        float(exact._FLOOR_FRACTION), float(exact._STALL_TOLERANCE),
        float(exact._TOLERANCE), int(exact._MAX_ITERATIONS), int(exact._MAX_HALVINGS),
    )  # fmt: skip


# The rows of a point's (8, K) array and the entries of its (9,) scalars.
S, R, DR_DS, DR_DGAP, DR_DTAU, DLOGQ, BETA, PHI = range(8)
GAP, TAU, SUM_BETA, SUM_PHI, CLIENT_ERROR, BANDWIDTH_ERROR, CPU_ERROR, ERROR, RAISED = range(9)


@njit(**_COMPILE)
def _py_max(x: float, y: float) -> float:
    return y if y > x else x


@njit(**_COMPILE)
def _py_min(x: float, y: float) -> float:
    return y if y < x else x


@njit(**_COMPILE)
def _nan_max(x: float, y: float) -> float:
    """A step of numpy's max: NaN, once seen, wins."""
    return y if (y > x or math.isnan(y)) else x


@njit(**_COMPILE)
def _horner(coefficients: np.ndarray, x: float) -> float:
    y = 0.0
    for c in coefficients:
        y = y * x + c
    return y


@njit(**_COMPILE)
def _h_minus_1(z: float, st: Settings) -> float:
    log1p = math.log1p(z)
    z_minus_log = z - log1p
    if z < st.series_below:
        z_minus_log = _horner(st.z_minus_log, z) * z * z
    return z_minus_log * (1.0 / log1p)


@njit(**_COMPILE)
def _evaluate(c, kappa, m, gamma_over_m, d, coupled, gap, tau, p, scalars, st) -> None:
    """conditions.evaluate_system at (gap, tau, p[S]): fills the rest of p and the scalars."""
    sigma = math.exp(tau)
    sum_beta = sum_phi = 0.0
    client_error = 0.0
    for k in range(c.size):
        z = math.exp(p[S, k])
        log1p = math.log1p(z)
        u = z / (1.0 + z)
        f = log1p - u
        z_minus_log = z - log1p
        small = z < st.series_below
        if small:
            z_minus_log = _horner(st.z_minus_log, z) * z * z
            f = _horner(st.log_minus_fraction, z) * z * z
        inv_log = 1.0 / log1p
        if small:
            dlogq = 1.0 + z * (-1.0 / 6.0 + z * (7.0 / 36.0 - z * 227.0 / 1080.0))
        else:
            dlogq = 1.0 + u * (u / (2.0 * f) - inv_log)
        h_minus_1 = z_minus_log * inv_log
        dh = f * inv_log * inv_log
        q = z * np.sqrt(f) * inv_log
        sigma_mq = (sigma * m[k]) * q
        excess = kappa[k] * h_minus_1 + sigma_mq
        inv_excess = 1.0 / excess
        slack = gap + d[k]
        r = np.log(excess / slack)
        p[R, k] = r
        p[DR_DS, k] = (kappa[k] * z * dh + sigma_mq * dlogq) * inv_excess
        p[DR_DGAP, k] = -1.0 / slack
        p[DR_DTAU, k] = sigma_mq * inv_excess
        p[DLOGQ, k] = dlogq
        p[BETA, k] = c[k] / z
        p[PHI, k] = gamma_over_m[k] / (sigma * q) if coupled else 0.0
        sum_beta += p[BETA, k]
        sum_phi += p[PHI, k]
        client_error = _nan_max(client_error, abs(r))
    bandwidth_error = abs(1.0 / sum_beta - 1.0)
    cpu_error = abs(1.0 / sum_phi - 1.0) if coupled else 0.0
    error = _py_max(_py_max(client_error, bandwidth_error), cpu_error)
    scalars[GAP], scalars[TAU] = gap, tau
    scalars[SUM_BETA], scalars[SUM_PHI] = sum_beta, sum_phi
    scalars[CLIENT_ERROR], scalars[BANDWIDTH_ERROR], scalars[CPU_ERROR] = client_error, bandwidth_error, cpu_error
    scalars[ERROR] = error if math.isfinite(error) else math.inf
    # where exact.py raises: a float division by zero, math.exp overflowing
    scalars[RAISED] = 1.0 if (sum_beta == 0.0 or sigma == math.inf or (coupled and sum_phi == 0.0)) else 0.0


@njit(**_COMPILE)
def _pulled_back(c, kappa, m, gamma_over_m, d, coupled, gap, tau, p, scalars, st) -> None:
    """conditions.pulled_back from (gap, tau, p[S]), in place."""
    _evaluate(c, kappa, m, gamma_over_m, d, coupled, gap, tau, p, scalars, st)
    for _ in range(st.pull_back_steps - 1):
        if not scalars[CLIENT_ERROR] >= st.pull_back_tolerance or scalars[RAISED]:  # NaN stops too
            return
        for k in range(c.size):
            step = p[R, k] / p[DR_DS, k]
            if step < -st.max_log_step:  # np.clip: NaN stays NaN
                step = -st.max_log_step
            elif step > st.max_log_step:
                step = st.max_log_step
            p[S, k] -= step
        _evaluate(c, kappa, m, gamma_over_m, d, coupled, gap, tau, p, scalars, st)


@njit(**_COMPILE)
def _initial_point(c, kappa, gamma, m, gamma_over_m, d, coupled, p, scalars, st):
    """exact._initial_point: the model's solution (exact._model_solution), pulled back."""
    n = c.size
    equal_gap = -math.inf
    for k in range(n):
        gap_k = kappa[k] * _h_minus_1(c[k] * n, st) + gamma[k] * (n if coupled else 0) - d[k]
        equal_gap = _nan_max(equal_gap, gap_k)
    beta = np.full(n, 1.0 / n)
    work, mixed, mixed_over_e, slack = np.empty(n), np.empty(n), np.empty(n), np.empty(n)
    for k in range(n):
        slack[k] = d[k] + kappa[k]
    lo, hi = st.model_floor_fraction * equal_gap, equal_gap
    gap, sigma = hi, 1.0
    for _ in range(st.model_rounds):
        for k in range(n):
            z = c[k] / beta[k]
            log1p = np.log1p(z)
            work[k] = kappa[k] * c[k] / log1p
            e = 1.0 - z / ((1.0 + z) * log1p)
            elasticity = e if (e > st.min_elasticity or math.isnan(e)) else st.min_elasticity
            mixed[k] = np.sqrt(work[k] * gamma[k] * elasticity)
            mixed_over_e[k] = mixed[k] / elasticity
        gap = model_gap(work, mixed, mixed_over_e, gamma, slack, lo, hi, gap, st.model_root_tolerance,
                        st.model_root_steps)
        sigma = model_sigma(work, mixed, mixed_over_e, gamma, slack, gap, sigma)
        total = 0.0
        for k in range(n):
            beta[k] = (work[k] + sigma * mixed[k]) / (gap + slack[k])
            total += beta[k]
        for k in range(n):
            beta[k] /= total
    usable = math.isfinite(gap) and 0 < sigma < math.inf
    for k in range(n):
        usable = usable and 0 < beta[k] < math.inf
    if not usable:
        gap, sigma = equal_gap, 1.0
        beta[:] = 1.0 / n
    for k in range(n):
        p[S, k] = np.log(c[k] / beta[k])
    _pulled_back(c, kappa, m, gamma_over_m, d, coupled, gap, np.log(sigma), p, scalars, st)


@njit(**_COMPILE)
def _newton_step(d, coupled, p, scalars, ds):
    """exact._newton_step: fills ds, returns (dgap, dtau, singular)."""
    n = d.size
    sum_beta, sum_phi = scalars[SUM_BETA], scalars[SUM_PHI]
    j11 = j12 = w_r = 0.0
    for k in range(n):
        w = p[BETA, k] * (1.0 / p[DR_DS, k]) / sum_beta
        j11 += w * p[DR_DGAP, k]
        j12 += w * p[DR_DTAU, k]
        w_r += w * p[R, k]
    rhs0 = 1.0 - sum_beta - w_r
    if coupled:
        j21 = j22 = w_r = 0.0
        for k in range(n):
            w = p[PHI, k] * p[DLOGQ, k] * (1.0 / p[DR_DS, k]) / sum_phi
            j21 += w * p[DR_DGAP, k]
            j22 += w * p[DR_DTAU, k]
            w_r += w * p[R, k]
        j22 -= 1.0  # exact.py: sum(phi of the upload clients) / sum(phi), 1 without compute-only clients
        rhs1 = 1.0 - sum_phi - w_r
        det = j11 * j22 - j12 * j21
        dgap = (rhs0 * j22 - j12 * rhs1) / det
        dtau = (j11 * rhs1 - j21 * rhs0) / det
        singular = det == 0.0
    else:
        dgap, dtau, singular = rhs0 / j11, 0.0, j11 == 0.0
    for k in range(n):
        ds[k] = (p[R, k] + p[DR_DGAP, k] * dgap + p[DR_DTAU, k] * dtau) * -(1.0 / p[DR_DS, k])
    return dgap, dtau, singular


@njit(**_COMPILE)
def _step_length(scalars, ds, dgap, dtau, st) -> float:
    """exact._step_length."""
    largest_step = abs(ds[0])
    for k in range(1, ds.size):
        largest_step = _nan_max(largest_step, abs(ds[k]))
    largest_step = _py_max(largest_step, abs(dtau))
    alpha = _py_min(1.0, st.max_log_step / largest_step) if largest_step > 0 else 1.0
    if dgap < 0:
        alpha = _py_min(alpha, st.floor_fraction * scalars[GAP] / -dgap)
    return alpha


@njit(**_COMPILE)
def _stalled(gamma, kappa, d, floor, coupled, p, scalars, st) -> bool:
    """conditions.latency_error(...) < exact._STALL_TOLERANCE."""
    gap = scalars[GAP]
    longest_compute = longest_upload = client = 0.0
    for k in range(d.size):
        slack = gap + d[k]
        compute = gamma[k] / p[PHI, k] if p[PHI, k] > 0 else 0.0
        longest_compute = _nan_max(longest_compute, compute)
        longest_upload = _nan_max(longest_upload, slack + kappa[k] - compute)
        client = _nan_max(client, abs(p[R, k] * slack))
    error = _py_max(client, scalars[BANDWIDTH_ERROR] * longest_upload)
    error = _py_max(error, scalars[CPU_ERROR] * longest_compute if coupled else 0.0)
    return error / (floor + gap) < st.stall_tolerance


@njit(**_COMPILE)
def _solve_row(c, kappa, gamma, m, gamma_over_m, d, floor, coupled, st):
    """exact._newton from exact._initial_point: (converged, the accepted point's (8, K) array)."""
    n = c.size
    p, scalars = np.empty((8, n)), np.empty(9)
    trial, trial_scalars = np.empty((8, n)), np.empty(9)
    ds = np.empty(n)
    _initial_point(c, kappa, gamma, m, gamma_over_m, d, coupled, p, scalars, st)
    if not math.isfinite(scalars[ERROR]) or scalars[RAISED]:
        return False, p
    for _ in range(st.max_iterations):
        if scalars[ERROR] < st.tolerance:
            return True, p
        dgap, dtau, singular = _newton_step(d, coupled, p, scalars, ds)
        alpha = _step_length(scalars, ds, dgap, dtau, st)
        improved = False
        for _ in range(st.max_halvings):
            for k in range(n):
                trial[S, k] = p[S, k] + alpha * ds[k]
            _pulled_back(c, kappa, m, gamma_over_m, d, coupled, scalars[GAP] + alpha * dgap,
                         scalars[TAU] + alpha * dtau, trial, trial_scalars, st)  # fmt: skip
            improved = trial_scalars[ERROR] < scalars[ERROR]
            if improved or trial_scalars[RAISED]:
                break
            alpha *= 0.5
        if singular or (trial_scalars[RAISED] and not improved):
            return False, p  # exact.py raises
        if not improved:  # halvings spent: exact.py stops here
            return _stalled(gamma, kappa, d, floor, coupled, p, scalars, st), p
        if trial_scalars[ERROR] > 0.5 * scalars[ERROR] and _stalled(gamma, kappa, d, floor, coupled, trial,
                                                                   trial_scalars, st):  # fmt: skip
            return True, trial  # progress has stalled at round-off level
        p, trial = trial, p
        scalars, trial_scalars = trial_scalars, scalars
    return _stalled(gamma, kappa, d, floor, coupled, p, scalars, st), p


@njit(**_COMPILE)
def _constants(fixed_time_s, upload_bits, server_cycles, snr, bandwidth_hz, server_cpu_hz, coupled, out):
    """exact.py's Clients of one row into out's rows (c, kappa, gamma, m, gamma_over_m, a_kappa, d); returns
    (floor, well_posed): whether they are positive and finite (over- or underflow can spoil them)."""
    c, kappa, gamma, m, gamma_over_m, a_kappa, d = out[0], out[1], out[2], out[3], out[4], out[5], out[6]
    floor, well_posed = -math.inf, True
    for k in range(snr.size):
        c[k] = snr[k]
        kappa[k] = upload_bits[k] * (LN2 / bandwidth_hz) / c[k]
        gamma[k] = server_cycles[k] / server_cpu_hz
        m[k] = np.sqrt(gamma[k] * kappa[k] / c[k])
        gamma_over_m[k] = gamma[k] / m[k] if coupled else 0.0
        a_kappa[k] = fixed_time_s[k] + kappa[k]
        floor = _nan_max(floor, a_kappa[k])
        well_posed = well_posed and math.isfinite(a_kappa[k]) and 0 < c[k] < math.inf and 0 < kappa[k] < math.inf
        if coupled:
            well_posed = well_posed and 0 < m[k] < math.inf and 0 < gamma_over_m[k] < math.inf
    for k in range(snr.size):
        d[k] = floor - a_kappa[k]
    return floor, well_posed


@njit(**_COMPILE)
def _finished(share, round_off) -> bool:
    """solve_exact's last step (share / its total, unless 0) and solve's _feasible_shares (negatives down to
    -round_off clipped, a total up to 1 + round_off allowed), in place; False if the share is unusable."""
    total = 0.0
    for value in share:
        total += value
    if not math.isfinite(total):
        return False
    lowest = math.inf
    for k in range(share.size):
        share[k] = share[k] / (total if total != 0.0 else 1.0)
        if not math.isfinite(share[k]) or share[k] < -round_off:
            return False
        lowest = min(lowest, share[k])
    if lowest < 0:
        for k in range(share.size):
            share[k] = max(share[k], 0.0)
    total = 0.0
    for value in share:
        total += value
    return not total > 1.0 + round_off  # a total above 1 by round-off is scaled by the caller, with numpy's sum


@njit(**_COMPILE)
def solve_row(i, fixed_time_s, upload_bits, server_cycles, snr, bandwidth_hz, server_cpu_hz, round_off,
              solved, beta, phi, st) -> None:  # fmt: skip
    """Row i of (N, K) problem arrays solved into solved[i], beta[i] and phi[i] (see :func:`solve_rows`); ``st``:
    :data:`SETTINGS`. Compiled code that builds its problems row by row (the pricer's one pass) calls it."""
    k = snr.shape[1]
    uploads, coupled, uncoupled = True, True, True
    for j in range(k):
        uploads = uploads and upload_bits[i, j] > 0
        coupled = coupled and server_cycles[i, j] > 0
        uncoupled = uncoupled and server_cycles[i, j] == 0
    if not (uploads and (coupled or uncoupled)):
        return
    constants = np.empty((7, k))
    floor, well_posed = _constants(fixed_time_s[i], upload_bits[i], server_cycles[i], snr[i], bandwidth_hz,
                                   server_cpu_hz, coupled, constants)  # fmt: skip
    if not well_posed:
        return
    ok, p = _solve_row(constants[0], constants[1], constants[2], constants[3], constants[4], constants[6], floor,
                       coupled, st)  # fmt: skip
    if ok:
        beta[i, :] = p[BETA]
        phi[i, :] = p[PHI]
        solved[i] = _finished(beta[i], round_off) and _finished(phi[i], round_off)


@njit(**_COMPILE)
def _solve_rows(fixed_time_s, upload_bits, server_cycles, snr, bandwidth_hz, server_cpu_hz, round_off,
                solved, beta, phi, st) -> None:  # fmt: skip
    for i in range(snr.shape[0]):
        solve_row(i, fixed_time_s, upload_bits, server_cycles, snr, bandwidth_hz, server_cpu_hz, round_off,
                  solved, beta, phi, st)  # fmt: skip


def solve_rows(fixed_time_s: np.ndarray, upload_bits: np.ndarray, server_cycles: np.ndarray,
               full_band_snr: np.ndarray, bandwidth_hz: float, server_cpu_hz: float, round_off: float,
               solved: np.ndarray, beta: np.ndarray, phi: np.ndarray, settings: Settings | None = None) -> None:  # fmt: skip
    """Solves N problems given as C-contiguous (N, K) float64 arrays into ``solved`` (N,) and the shares ``beta``
    and ``phi`` (N, K), in place; it releases the GIL, so runs of rows may be solved on threads. ``settings``:
    :data:`SETTINGS` unless given (``benchmarks/solver_start.py`` times others).

    Row i is solved where every client uploads and every client or none has server work, the iteration
    converges, and its shares pass ``solve``'s checks: below 0 by at most ``round_off`` (then clipped), a
    total above 1 by at most ``round_off`` (the caller scales it to 1). Unsolved rows are left as they are.
    """
    _solve_rows(fixed_time_s, upload_bits, server_cycles, full_band_snr, float(bandwidth_hz), float(server_cpu_hz),
                float(round_off), solved, beta, phi, SETTINGS if settings is None else settings)


SETTINGS = _settings()  # the constants every solve of this module reads
