"""Reference solver: the allocation problem as a DPP-compliant cvxpy program, solved by Clarabel.

The program is built once per number of clients K and re-solved with new parameter values.
With ``b`` the bandwidth share, ``c`` the full-band SNR and ``rate = b log2(1 + c / b)`` (the
share's bit/s per Hz of the whole band, concave in ``b``), client k is constrained by

    rate_k * up_k >= D_k / B,   cpu_k * comp_k >= C_k / F,   a_k + up_k + comp_k <= T,

each product constraint a rotated second-order cone with parameter ``sqrt(work)``; unlike
``work * inv_pos(x)`` it stays bounded when a work term is zero.  To keep the conic problem
well conditioned, all times are measured in units of the equal split's latency, so that the
optimal ``T`` is of order one.
"""

from __future__ import annotations

import warnings
from functools import lru_cache

import cvxpy as cp
import numpy as np

from .problem import LN2, ResourceProblem, iteration_latency

ACCEPTED_STATUSES = (cp.OPTIMAL, cp.OPTIMAL_INACCURATE)
# Clarabel settings tried in turn until one reaches an accepted status.  With SNRs spanning
# 60 dB the default step (0.99 of the way to the cone boundary) often stalls with
# "InsufficientProgress"; shorter steps rarely do, and the rare stalls of one setting are
# solved by another.  Every attempt names all varied settings because cvxpy re-uses the
# Clarabel instance, so settings would otherwise carry over from the previous solve.
CLARABEL_ATTEMPTS = (
    {"max_step_fraction": 0.9, "equilibrate_enable": True},
    {"max_step_fraction": 0.99, "equilibrate_enable": True},
    {"max_step_fraction": 0.9, "equilibrate_enable": False},
)


class _Program:
    """The cvxpy problem for K clients with its parameters and share variables; cvxpy compiles
    it at the first solve and re-uses the compiled form for every new parameter value."""

    def __init__(self, num_clients: int) -> None:
        k = num_clients
        self.snr = cp.Parameter(k, nonneg=True, name="full_band_snr")
        self.sqrt_upload = cp.Parameter(k, nonneg=True, name="sqrt_upload_work")  # sqrt(D / B), time-scaled
        self.sqrt_compute = cp.Parameter(k, nonneg=True, name="sqrt_compute_work")  # sqrt(C / F), time-scaled
        self.fixed_time = cp.Parameter(k, nonneg=True, name="fixed_time")
        self.bandwidth = cp.Variable(k, nonneg=True, name="bandwidth_share")
        self.cpu = cp.Variable(k, nonneg=True, name="server_cpu_share")
        rate = cp.Variable(k, nonneg=True, name="spectral_rate")
        upload_time = cp.Variable(k, nonneg=True, name="upload_time")
        compute_time = cp.Variable(k, nonneg=True, name="compute_time")
        self.latency = cp.Variable(name="latency")
        constraints = [
            rate <= -cp.rel_entr(self.bandwidth, self.bandwidth + self.snr) / LN2,
            _product_at_least(rate, upload_time, self.sqrt_upload),
            _product_at_least(self.cpu, compute_time, self.sqrt_compute),
            self.fixed_time + upload_time + compute_time <= self.latency,
            cp.sum(self.bandwidth) <= 1,
            cp.sum(self.cpu) <= 1,
        ]
        self.problem = cp.Problem(cp.Minimize(self.latency), constraints)

    def set_values(self, problem: ResourceProblem, time_unit_s: float) -> None:
        """Load ``problem`` with every time measured in units of ``time_unit_s``."""
        self.snr.value = problem.full_band_snr
        self.sqrt_upload.value = np.sqrt(problem.upload_bits / (problem.bandwidth_hz * time_unit_s))
        self.sqrt_compute.value = np.sqrt(problem.server_cycles / (problem.server_cpu_hz * time_unit_s))
        self.fixed_time.value = problem.fixed_time_s / time_unit_s


def _product_at_least(x: cp.Expression, y: cp.Expression, sqrt_work: cp.Parameter) -> cp.Constraint:
    """x * y >= sqrt_work**2 with x, y >= 0, as ||(2 sqrt_work, x - y)|| <= x + y."""
    return cp.SOC(x + y, cp.vstack([2 * sqrt_work, x - y]), axis=0)


def _time_unit(problem: ResourceProblem) -> float:
    """The equal split's latency: measured in it, the optimal latency is of order one."""
    share = np.full(problem.num_clients, 1.0 / problem.num_clients)
    latency = float(iteration_latency(problem, share, share).max())
    return latency if latency > 0 else 1.0


@lru_cache(maxsize=32)
def _program(num_clients: int) -> _Program:
    return _Program(num_clients)


def compiled_problem(num_clients: int) -> cp.Problem:
    """The cached cvxpy problem for ``num_clients`` clients (for inspection, e.g. is_dcp)."""
    return _program(num_clients).problem


def solve_convex(problem: ResourceProblem) -> tuple[np.ndarray | None, np.ndarray | None, str]:
    """(bandwidth_share, server_cpu_share, status) from Clarabel.

    An optimal_inaccurate result is kept while the remaining settings are tried for an optimal
    one.  Without any accepted result the shares are None and the status is the last failure.
    """
    program = _program(problem.num_clients)
    program.set_values(problem, _time_unit(problem))
    accepted = None
    for settings in CLARABEL_ATTEMPTS:
        status = _run_clarabel(program.problem, settings)
        if status in ACCEPTED_STATUSES and program.bandwidth.value is not None and program.cpu.value is not None:
            beta = _clean(program.bandwidth.value, problem.upload_bits > 0)
            phi = _clean(program.cpu.value, problem.server_cycles > 0)
            accepted = (beta, phi, status)
            if status == cp.OPTIMAL:
                break
    return accepted if accepted is not None else (None, None, status)


def _run_clarabel(problem: cp.Problem, settings: dict) -> str:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "may be inaccurate": the status says so
            problem.solve(solver=cp.CLARABEL, **settings)
    except cp.error.SolverError as error:
        return f"solver_error: {str(error).strip().splitlines()[0] if str(error).strip() else 'SolverError'}"
    return str(problem.status)


def _clean(share: np.ndarray, needed: np.ndarray) -> np.ndarray:
    """Drop shares of clients that have no such work and clip round-off below zero."""
    return np.where(needed, np.clip(np.asarray(share, dtype=np.float64), 0.0, None), 0.0)
