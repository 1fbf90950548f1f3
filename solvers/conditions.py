"""The optimality conditions of the allocation problem, as the exact solver evaluates them.

See :mod:`solvers.exact` for the parametrisation (per-client ``s = ln z``, ``gap = T - floor`` and
``tau = ln sigma``) and the square system of equations. This module holds the clients' constants
(:class:`Clients`), one evaluation of the system and its derivatives at a point (:func:`evaluate_system`),
the per-client pull-back onto the client equations (:func:`pulled_back`) and the residuals measured
as relative latency errors (:func:`latency_error`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .problem import LN2, ResourceProblem

# Inner products are written x.dot(y): the same BLAS result as x @ y, with less overhead per call.
_SERIES_BELOW = 1e-2  # below this z the closed forms in evaluate_system lose digits to cancellation
# (z - ln(1+z)) / z^2 and (ln(1+z) - z/(1+z)) / z^2 as power series, highest power first
_Z_MINUS_LOG = np.array([(-1) ** n / n for n in range(11, 1, -1)])
_LOG_MINUS_FRACTION = np.array([(-1) ** n * (n - 1) / n for n in range(11, 1, -1)])

MAX_LOG_STEP = 4.0  # largest change of ln z or ln sigma in one step
_PULL_BACK_TOLERANCE = 0.1  # client residual below which a trial point needs no pull-back
_MAX_PULL_BACK_STEPS = 30


class Clients:
    """Constants of the clients in one system.

    Upload clients (``D > 0``): ``c, kappa, gamma, m`` (``m = gamma = 0`` for an upload-only
    one), ``a_kappa = a + kappa`` and ``d = floor - a_kappa``.  Compute-only clients
    (``D = 0 < C``): ``a_cpu, gamma_cpu`` and ``d_cpu = floor - a_cpu``.  ``floor`` is the
    infimum of the feasible latencies.
    """

    def __init__(self, problem: ResourceProblem, upload: np.ndarray, cpu_only: np.ndarray) -> None:
        everyone = upload.size == problem.num_clients
        pick = (lambda values: values) if everyone else (lambda values: values[upload])
        a = pick(problem.fixed_time_s)
        self.c = pick(problem.full_band_snr)
        self.kappa = pick(problem.upload_bits) * (LN2 / problem.bandwidth_hz) / self.c
        self.gamma = pick(problem.server_cycles) / problem.server_cpu_hz
        self.m = np.sqrt(self.gamma * self.kappa / self.c)
        self.gamma_over_m = _ratio_or_zero(self.gamma, self.m)
        self.a_kappa = a + self.kappa
        self.a_cpu = problem.fixed_time_s[cpu_only]
        self.gamma_cpu = problem.server_cycles[cpu_only] / problem.server_cpu_hz
        self.has_upload = upload.size > 0
        self.has_cpu_only = cpu_only.size > 0
        self.coupled = bool((self.m > 0).any())
        self.has_cpu = self.has_cpu_only or self.coupled
        floors = [self.a_kappa, self.a_cpu]
        self.floor = max(float(f.max()) for f in floors if f.size)
        # The iteration works with gap = T - floor, so a client's slack is gap + d: computing
        # T - a instead would lose all digits of a slack that is tiny next to T.
        self.d = self.floor - self.a_kappa
        self.d_cpu = self.floor - self.a_cpu


def _ratio_or_zero(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0."""
    if denominator.size and denominator.min() > 0:  # the common case: a plain division
        return numerator / denominator
    return np.divide(numerator, denominator, out=np.zeros_like(denominator), where=denominator > 0)


@dataclass(slots=True)
class Point:
    """An iterate (gap = T - floor, tau = ln sigma, s) and everything the Newton step needs there."""

    gap: float
    tau: float
    s: np.ndarray
    r: np.ndarray  # client residuals
    dr_ds: np.ndarray
    dr_dgap: np.ndarray
    dr_dtau: np.ndarray
    dlogq: np.ndarray  # d ln q / d ln z
    beta: np.ndarray
    phi: np.ndarray  # CPU share of the upload clients (0 for the upload-only ones)
    phi_cpu: np.ndarray  # CPU share of the compute-only clients
    sum_beta: float
    sum_phi: float  # of phi and phi_cpu
    sum_phi_upload: float  # of phi alone
    client_error: float  # largest |r|
    bandwidth_error: float  # |1 / sum(beta) - 1|
    cpu_error: float  # |1 / sum(phi) - 1|
    error: float  # largest residual, inf if any is not finite


def h_minus_1(z: np.ndarray) -> np.ndarray:
    """h(z) - 1 = (z - ln(1 + z)) / ln(1 + z), the first value of :func:`shape_functions` alone."""
    log1p = np.log1p(z)
    z_minus_log = z - log1p
    if z.size and z.min() < _SERIES_BELOW:
        small = z < _SERIES_BELOW
        zs = z[small]
        z_minus_log[small] = np.polyval(_Z_MINUS_LOG, zs) * zs * zs
    return z_minus_log * (1.0 / log1p)


def shape_functions(z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(h(z) - 1, h'(z), q(z), d ln q / d ln z) for h(z) = z / ln(1 + z) and q = z sqrt(h')."""
    log1p = np.log1p(z)
    u = z / (1.0 + z)
    f = log1p - u  # = h'(z) ln(1+z)^2
    z_minus_log = z - log1p
    small = None
    if z.size and z.min() < _SERIES_BELOW:
        small = z < _SERIES_BELOW
        zs = z[small]
        z_minus_log[small] = np.polyval(_Z_MINUS_LOG, zs) * zs * zs
        f[small] = np.polyval(_LOG_MINUS_FRACTION, zs) * zs * zs
    inv_log = 1.0 / log1p
    dlogq = 1.0 + u * (u / (2.0 * f) - inv_log)
    if small is not None:
        dlogq[small] = 1.0 + zs * (-1.0 / 6.0 + zs * (7.0 / 36.0 - zs * 227.0 / 1080.0))
    return z_minus_log * inv_log, f * inv_log * inv_log, z * np.sqrt(f) * inv_log, dlogq


def evaluate_system(clients: Clients, gap: float, tau: float, s: np.ndarray) -> Point:
    z = np.exp(s)
    h_minus_1, dh, q, dlogq = shape_functions(z)
    sigma = math.exp(tau)
    sigma_mq = (sigma * clients.m) * q
    excess = clients.kappa * h_minus_1 + sigma_mq
    inv_excess = 1.0 / excess
    slack = gap + clients.d
    r = np.log(excess / slack)
    beta = clients.c / z
    phi = clients.gamma_over_m / (sigma * q)
    phi_cpu = clients.gamma_cpu / (gap + clients.d_cpu) if clients.has_cpu_only else clients.gamma_cpu
    sum_beta = float(beta.sum())
    sum_phi_upload = float(phi.sum())
    sum_phi = sum_phi_upload + (float(phi_cpu.sum()) if clients.has_cpu_only else 0.0)
    client_error = float(np.abs(r).max()) if r.size else 0.0
    bandwidth_error = abs(1.0 / sum_beta - 1.0) if clients.has_upload else 0.0
    cpu_error = abs(1.0 / sum_phi - 1.0) if clients.has_cpu else 0.0
    error = max(client_error, bandwidth_error, cpu_error)
    return Point(
        gap, tau, s, r,
        dr_ds=(clients.kappa * z * dh + sigma_mq * dlogq) * inv_excess,
        dr_dgap=-1.0 / slack,
        dr_dtau=sigma_mq * inv_excess,
        dlogq=dlogq, beta=beta, phi=phi, phi_cpu=phi_cpu,
        sum_beta=sum_beta, sum_phi=sum_phi, sum_phi_upload=sum_phi_upload, client_error=client_error,
        bandwidth_error=bandwidth_error, cpu_error=cpu_error,
        error=error if math.isfinite(error) else math.inf,
    )  # fmt: skip


def pulled_back(
    clients: Clients,
    gap: float,
    tau: float,
    s: np.ndarray,
    tolerance: float = _PULL_BACK_TOLERANCE,
    max_steps: int = _MAX_PULL_BACK_STEPS,
) -> Point:
    """The point at (gap, tau) after per-client Newton steps on s, until every client residual
    is below ``tolerance`` (or the step budget is spent; the caller judges the result)."""
    for _ in range(max_steps):
        p = evaluate_system(clients, gap, tau, s)
        if not p.r.size or not p.client_error >= tolerance:  # also stops at NaN
            return p
        s = s - np.clip(p.r / p.dr_ds, -MAX_LOG_STEP, MAX_LOG_STEP)
    return p


def latency_error(clients: Clients, p: Point) -> float:
    """The residuals as relative errors in latency: a client's weighted by its slack, a
    resource's by the longest time spent on it, all over T.  Unlike ``p.error`` this is not
    limited by round-off when some times are tiny next to others."""
    T = clients.floor + p.gap
    slack = p.gap + clients.d
    compute = np.divide(clients.gamma, p.phi, out=np.zeros_like(slack), where=p.phi > 0)
    longest_compute = max(float(compute.max(initial=0.0)), p.gap + float(clients.d_cpu.max(initial=-p.gap)))
    longest_upload = float((slack + clients.kappa - compute).max(initial=0.0))
    return max(
        float(np.abs(p.r * slack).max(initial=0.0)),
        p.bandwidth_error * longest_upload,
        p.cpu_error * longest_compute if clients.has_cpu else 0.0,
    ) / T
