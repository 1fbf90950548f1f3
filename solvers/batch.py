"""Many allocation problems of K clients solved at once, as (N, K) arrays, for vectorised environments.

:class:`ProblemBatch` holds N problems; :func:`solvers.solve_batch` returns an :class:`AllocationBatch`
whose row i is what ``solve(batch.problem(i), method)`` returns. With ``method="exact"`` the rows in
which every client uploads and every client or none has server work (coupled or upload-only) are solved
together by the Newton iteration of :mod:`solvers.exact`, each row with its own iterations; the other
rows, those it leaves unsolved and all rows of other methods go to the one-problem ``solve``.

Rows never interact: a row's result is bitwise the same whatever the other rows and however many. So
reductions run only along the client axis of C-contiguous arrays (``(x * y).sum(-1)``, never ``dot`` or
``@``, whose summation order may depend on the shape) and rows are compacted by fancy indexing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import exact
from .conditions import _MAX_PULL_BACK_STEPS, _PULL_BACK_TOLERANCE, MAX_LOG_STEP, h_minus_1, shape_functions
from .problem import _PER_CLIENT_FIELDS, _SCALAR_FIELDS, LN2, Allocation, ResourceProblem, shannon_rate_bps
from .problem import _allowed, _as_positive_scalar

__all__ = ["AllocationBatch", "ProblemBatch", "equal_split_batch", "iteration_latency_batch", "solve_batch"]

RowSolver = Callable[[ResourceProblem, str], Allocation]
_CLIENT_FIELDS = tuple(name for name, _, _ in _PER_CLIENT_FIELDS)


@dataclass(frozen=True, eq=False)
class ProblemBatch:
    """N allocation problems of K clients each; the fields of :class:`~solvers.problem.ResourceProblem`.

    The per-client fields take anything that broadcasts to one shape (N, K) and are stored as read-only
    C-contiguous float64 (N, K) arrays; the system fields are scalars shared by all rows. Invalid values
    raise ValueError naming the field, value, (row, client) and what is allowed; :meth:`trusted` skips that.
    """

    fixed_time_s: np.ndarray
    upload_bits: np.ndarray
    server_cycles: np.ndarray
    channel_gain: np.ndarray
    tx_power_w: np.ndarray
    noise_psd_w_per_hz: float
    bandwidth_hz: float
    server_cpu_hz: float

    def __post_init__(self) -> None:
        _store_fields(self, check=True)

    @classmethod
    def trusted(cls, fixed_time_s, upload_bits, server_cycles, channel_gain, tx_power_w,
                noise_psd_w_per_hz, bandwidth_hz, server_cpu_hz) -> ProblemBatch:  # fmt: skip
        """A batch of values valid by construction: stored as usual, without the range checks."""
        batch = object.__new__(cls)
        values = (fixed_time_s, upload_bits, server_cycles, channel_gain, tx_power_w,
                  noise_psd_w_per_hz, bandwidth_hz, server_cpu_hz)  # fmt: skip
        for name, value in zip(_CLIENT_FIELDS + _SCALAR_FIELDS, values):
            object.__setattr__(batch, name, value)
        _store_fields(batch, check=False)
        return batch

    @property
    def num_problems(self) -> int:
        return int(self.fixed_time_s.shape[0])

    @property
    def num_clients(self) -> int:
        return int(self.fixed_time_s.shape[1])

    @property
    def full_band_snr(self) -> np.ndarray:
        """(N, K) SNR ``p g / (B N0)`` of each client holding the whole band."""
        return self.tx_power_w * self.channel_gain / (self.bandwidth_hz * self.noise_psd_w_per_hz)

    def problem(self, i: int) -> ResourceProblem:
        """Row ``i`` as a one-problem instance."""
        rows = (getattr(self, name)[i] for name in _CLIENT_FIELDS)
        return ResourceProblem(*rows, self.noise_psd_w_per_hz, self.bandwidth_hz, self.server_cpu_hz)


def _store_fields(batch: ProblemBatch, check: bool) -> None:
    arrays = {}
    for name in _CLIENT_FIELDS:
        try:
            arrays[name] = np.asarray(getattr(batch, name), dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{name}: cannot convert {getattr(batch, name)!r} to a float array ({error})") from None
    try:
        shape = np.broadcast_shapes(*(array.shape for array in arrays.values()))
    except ValueError:
        shape = ()
    if len(shape) != 2 or 0 in shape:
        shapes = ", ".join(f"{name}={array.shape}" for name, array in arrays.items())
        raise ValueError(f"per-client fields must broadcast to one shape (N, K) with N, K >= 1; got shapes {shapes}")
    # One fresh read-only (fields, N, K) block holds them all; each field is a C-contiguous slice of it.
    block = np.empty((len(arrays), *shape))
    for values, array in zip(block, arrays.values()):
        values[...] = array
    if check:
        _check_per_client(block)
    block.setflags(write=False)
    for name, values in zip(arrays, block):
        object.__setattr__(batch, name, values)
    for name in _SCALAR_FIELDS:
        value = getattr(batch, name)
        object.__setattr__(batch, name, _as_positive_scalar(name, value) if check else float(value))


def _check_per_client(block: np.ndarray) -> None:
    """Raises for the first out-of-range value of the first per-client field that has one."""
    for (name, lower, inclusive), values in zip(_PER_CLIENT_FIELDS, block):
        ok = np.isfinite(values) & ((values >= lower) if inclusive else (values > lower))
        if not ok.all():
            row, client = (int(i) for i in np.argwhere(~ok)[0])
            raise ValueError(f"{name}: got {float(values[row, client])!r} at index ({row}, {client}); "
                             f"allowed are {_allowed(lower, inclusive)}")  # fmt: skip


@dataclass(frozen=True, eq=False)
class AllocationBatch:
    """An :class:`~solvers.problem.Allocation` per problem of a batch: shares (N, K), ``latency_s`` and ``fallback``
    (N,), ``status`` N strings; ``method`` and ``solve_time_s`` (of the whole batch) are shared by the rows."""

    bandwidth_share: np.ndarray
    server_cpu_share: np.ndarray
    latency_s: np.ndarray
    status: tuple[str, ...]
    fallback: np.ndarray
    method: str
    solve_time_s: float

    def row(self, i: int) -> Allocation:
        """Row ``i`` as an Allocation (fresh arrays), its solve time the batch's divided by N."""
        beta, phi = self.bandwidth_share[i].copy(), self.server_cpu_share[i].copy()
        latency, seconds = float(self.latency_s[i]), self.solve_time_s / len(self.status)
        return Allocation(beta, phi, latency, self.status[i], seconds, self.method, bool(self.fallback[i]))


def iteration_latency_batch(batch: ProblemBatch, beta: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """(N, K) latencies ``a + D / r(beta) + C / (phi F)`` as :func:`~solvers.problem.iteration_latency`
    gives each row: a term is 0 without its work and inf where its work has no share."""
    beta, phi = np.asarray(beta, dtype=np.float64), np.asarray(phi, dtype=np.float64)
    rate = shannon_rate_bps(beta, batch.full_band_snr, batch.bandwidth_hz)
    has_upload, has_compute = batch.upload_bits > 0, batch.server_cycles > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        upload = np.where(has_upload, batch.upload_bits / rate, 0.0)
        compute = np.where(has_compute, batch.server_cycles / (phi * batch.server_cpu_hz), 0.0)
    upload = np.where(has_upload & ~(rate > 0), np.inf, upload)
    compute = np.where(has_compute & ~(phi > 0), np.inf, compute)
    return batch.fixed_time_s + upload + compute


def equal_split_batch(batch: ProblemBatch) -> AllocationBatch:
    """:func:`solvers.equal_split` of every row: every share 1/K, status ``"equal"``."""
    start = time.perf_counter()
    n, k = batch.num_problems, batch.num_clients
    share = np.full((n, k), 1.0 / k)
    latency = iteration_latency_batch(batch, share, share).max(-1)
    return AllocationBatch(share, share.copy(), latency, ("equal",) * n, np.zeros(n, dtype=bool), "equal",
                           time.perf_counter() - start)  # fmt: skip


def solve_batch(
    batch: ProblemBatch, method: str = "exact", *, solve_row: RowSolver, round_off: float
) -> AllocationBatch:
    """Row i is ``solve_row(batch.problem(i), method)``, or for ``method="exact"`` the batched iteration's
    result where it solves the row. :func:`solvers.solve_batch` passes the one-problem ``solve`` and its
    allowance for shares below 0 and totals above 1 (importing them here would make an import cycle)."""
    start = time.perf_counter()
    n, k = batch.num_problems, batch.num_clients
    if method == "exact":
        with np.errstate(all="ignore"):  # overflow or 0/0 far from the solution shows up as an inf error
            solved, beta, phi = _solve_exact_rows(batch)
            (beta, beta_ok), (phi, phi_ok) = _as_solve_returns(beta, round_off), _as_solve_returns(phi, round_off)
            latency = iteration_latency_batch(batch, beta, phi).max(-1)
        solved &= beta_ok & phi_ok & np.isfinite(latency)
    else:
        solved, beta, phi, latency = np.zeros(n, dtype=bool), np.zeros((n, k)), np.zeros((n, k)), np.zeros(n)
    status, fallback = ["optimal"] * n, np.zeros(n, dtype=bool)
    for i in np.flatnonzero(~solved):
        allocation = solve_row(batch.problem(i), method)
        beta[i], phi[i], latency[i] = allocation.bandwidth_share, allocation.server_cpu_share, allocation.latency_s
        status[i], fallback[i] = allocation.status, allocation.fallback
    return AllocationBatch(beta, phi, latency, tuple(status), fallback, method, time.perf_counter() - start)


def _as_solve_returns(share: np.ndarray, round_off: float) -> tuple[np.ndarray, np.ndarray]:
    """A share after solve_exact's last step (share / its total, 1 if 0) and solve's _feasible_shares (negatives
    down to -round_off clipped, totals up to 1 + round_off scaled to 1), and whether each row is usable."""
    total = share.sum(-1)
    share = share / np.where(total == 0, 1.0, total)[:, None]
    lowest = share.min(-1)
    usable = np.isfinite(total) & np.isfinite(share).all(-1) & ~(lowest < -round_off)
    share = np.where((lowest < 0)[:, None], np.clip(share, 0.0, None), share)
    total = share.sum(-1)
    usable &= ~(total > 1.0 + round_off)
    return np.where((total > 1.0)[:, None], share / total[:, None], share), usable


# --- the batched Newton iteration of solvers.exact ----------------------------------------------


def _solve_exact_rows(batch: ProblemBatch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(solved, beta, phi): the rows the batched iteration solved, and their shares (NaN elsewhere)."""
    n, k = batch.num_problems, batch.num_clients
    solved, beta, phi = np.zeros(n, dtype=bool), np.full((n, k), np.nan), np.full((n, k), np.nan)
    uploads = (batch.upload_bits > 0).all(-1)
    for coupled, kind in ((True, (batch.server_cycles > 0).all(-1)), (False, (batch.server_cycles == 0).all(-1))):
        rows = np.flatnonzero(uploads & kind)
        if rows.size:
            clients = _Clients.of(batch, rows, coupled)
            well_posed = clients.well_posed()
            rows, clients = rows[well_posed], clients.take(well_posed)
            beta[rows], phi[rows], solved[rows] = _newton(clients, _initial_point(clients))
    return solved, beta, phi


class _Rows:
    """Named arrays of a row per system, (n,) or (n, K), taken (self if a mask keeps every row) and put
    back by rows; other attributes are shared."""

    def __init__(self, **values: object) -> None:
        self.__dict__.update(values)

    def take(self, rows: np.ndarray) -> _Rows:  # rows: a mask, or sorted distinct indices (flatnonzero's)
        if rows.all() if rows.dtype == bool else rows.size == len(self.s if isinstance(self, _Point) else self.c):
            return self
        return type(self)(**{name: v[rows] if isinstance(v, np.ndarray) else v for name, v in vars(self).items()})

    def put(self, rows: np.ndarray, other: _Rows) -> None:  # every row: take other's arrays as they are
        if rows.size == len(self.s):
            return vars(self).update(vars(other))
        for name, values in vars(self).items():
            values[rows] = getattr(other, name)


class _Clients(_Rows):
    """exact.py's Clients of n systems, a row each: ``c, kappa, gamma, m, gamma_over_m, a_kappa, d`` (n, K),
    ``floor`` (n,); ``coupled``: every client has server work, else none has (never compute-only clients)."""

    @classmethod
    def of(cls, batch: ProblemBatch, rows: np.ndarray, coupled: bool) -> _Clients:
        c = batch.full_band_snr[rows]
        kappa = batch.upload_bits[rows] * (LN2 / batch.bandwidth_hz) / c
        gamma = batch.server_cycles[rows] / batch.server_cpu_hz
        m = np.sqrt(gamma * kappa / c)
        a_kappa = batch.fixed_time_s[rows] + kappa
        floor = a_kappa.max(-1)
        gamma_over_m = gamma / m if coupled else np.zeros_like(m)
        return cls(coupled=coupled, c=c, kappa=kappa, gamma=gamma, m=m, gamma_over_m=gamma_over_m,
                   a_kappa=a_kappa, floor=floor, d=floor[:, None] - a_kappa)  # fmt: skip

    def well_posed(self) -> np.ndarray:
        """Rows whose constants are positive and finite (over- or underflow can spoil them)."""
        ok = np.isfinite(self.a_kappa).all(-1)
        for values in (self.c, self.kappa) + ((self.m, self.gamma_over_m) if self.coupled else ()):
            ok &= ((values > 0) & (values < np.inf)).all(-1)
        return ok


class _Point(_Rows):
    """conditions.Point of n rows (less phi_cpu and sum_phi_upload), and ``raised``: where exact.py
    raises (a float division by zero, math.exp overflowing), so the row goes to the one-problem solve."""


def _py_max(x: np.ndarray | float, y: np.ndarray | float) -> np.ndarray:
    """Python's max(x, y) elementwise: x unless y > x (a NaN y is ignored, a NaN x kept); _py_min alike."""
    return np.where(y > x, y, x)


def _py_min(x: np.ndarray | float, y: np.ndarray | float) -> np.ndarray:
    return np.where(y < x, y, x)


def _evaluate(cl: _Clients, gap: np.ndarray, tau: np.ndarray, s: np.ndarray) -> _Point:
    """conditions.evaluate_system of every row."""
    z = np.exp(s)
    h_minus_1_, dh, q, dlogq = shape_functions(z)
    sigma = np.exp(tau)[:, None]
    sigma_mq = (sigma * cl.m) * q
    excess = cl.kappa * h_minus_1_ + sigma_mq
    inv_excess = 1.0 / excess
    slack = gap[:, None] + cl.d
    r = np.log(excess / slack)
    beta = cl.c / z
    phi = cl.gamma_over_m / (sigma * q) if cl.coupled else np.zeros_like(z)  # upload-only: exact.py gives 0
    sum_beta, sum_phi = beta.sum(-1), phi.sum(-1)
    client_error = np.abs(r).max(-1)
    bandwidth_error = np.abs(1.0 / sum_beta - 1.0)
    cpu_error = np.abs(1.0 / sum_phi - 1.0) if cl.coupled else np.zeros_like(sum_phi)
    error = _py_max(_py_max(client_error, bandwidth_error), cpu_error)
    raised = (sum_beta == 0) | (sigma[:, 0] == np.inf) | ((sum_phi == 0) & cl.coupled)
    return _Point(gap=gap, tau=tau, s=s, r=r, dr_ds=(cl.kappa * z * dh + sigma_mq * dlogq) * inv_excess,
                  dr_dgap=-1.0 / slack, dr_dtau=sigma_mq * inv_excess, dlogq=dlogq, beta=beta, phi=phi,
                  sum_beta=sum_beta, sum_phi=sum_phi, client_error=client_error, bandwidth_error=bandwidth_error,
                  cpu_error=cpu_error, error=np.where(np.isfinite(error), error, np.inf), raised=raised)  # fmt: skip


def _pulled_back(cl: _Clients, gap: np.ndarray, tau: np.ndarray, s: np.ndarray) -> _Point:
    """conditions.pulled_back of every row, each with its own steps (the point's s is s, updated in place)."""
    p = _evaluate(cl, gap, tau, s)
    rows = np.flatnonzero((p.client_error >= _PULL_BACK_TOLERANCE) & ~p.raised)  # NaN stops too
    for _ in range(_MAX_PULL_BACK_STEPS - 1):
        if not rows.size:
            break
        step = np.clip(p.r[rows] / p.dr_ds[rows], -MAX_LOG_STEP, MAX_LOG_STEP)
        moved = _evaluate(cl.take(rows), gap[rows], tau[rows], p.s[rows] - step)
        p.put(rows, moved)
        rows = rows[(moved.client_error >= _PULL_BACK_TOLERANCE) & ~moved.raised]
    return p


def _equal_split_gap(cl: _Clients) -> np.ndarray:
    """exact._equal_split_gap of every row."""
    k = cl.c.shape[1]
    upload_excess = cl.kappa * h_minus_1(cl.c * k)
    return (upload_excess + cl.gamma * (k if cl.coupled else 0) - cl.d).max(-1)


def _model_solution(cl: _Clients, T: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """exact._model_solution of every row: (T, sigma, beta)."""
    a = cl.a_kappa - cl.kappa
    upload_per_log = cl.kappa * cl.c
    beta = np.full(cl.c.shape, 1.0 / cl.c.shape[1])
    sigma = np.ones(len(T))
    for _ in range(exact._MODEL_ROUNDS):
        z = cl.c / beta
        log1p = np.log1p(z)
        work = upload_per_log / log1p
        elasticity = np.maximum(1.0 - z / ((1.0 + z) * log1p), exact._MIN_ELASTICITY)
        mixed = np.sqrt(work * cl.gamma * elasticity)
        weight = T[:, None] / np.maximum(T[:, None] - a, 1e-3 * T[:, None])
        upload_total = (weight * work).sum(-1)
        m1 = (weight * mixed).sum(-1)
        m2 = (weight * (mixed / elasticity)).sum(-1)
        cpu_total = (weight * cl.gamma).sum(-1)
        b = upload_total - cpu_total  # sigma: exact._positive_root of m1 x^2 + b x - m2
        root = np.sqrt(b * b - 4.0 * m1 * -m2)
        sigma = np.where(m1 > 0, np.where(b < 0, (root - b) / (2.0 * m1), -2.0 * -m2 / (root + b)), sigma)
        T = upload_total + sigma * m1
        beta = weight * (work + sigma[:, None] * mixed) / T[:, None]
    return T, sigma, beta


def _initial_point(cl: _Clients) -> _Point:
    """exact._initial_point of every row."""
    equal_gap = _equal_split_gap(cl)
    T, sigma, beta = _model_solution(cl, cl.floor + equal_gap)
    gap = T - cl.floor
    usable = np.isfinite(gap) & (sigma > 0) & (sigma < np.inf) & ((beta > 0) & (beta < np.inf)).all(-1)
    gap, sigma = np.where(usable, gap, equal_gap), np.where(usable, sigma, 1.0)
    beta = np.where(usable[:, None], beta, 1.0 / cl.c.shape[1])
    gap = _py_min(_py_max(gap, exact._MODEL_FLOOR_FRACTION * equal_gap), equal_gap)
    return _pulled_back(cl, gap, np.log(sigma), np.log(cl.c / beta))


def _newton_step(cl: _Clients, p: _Point) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """exact._newton_step of every row: (ds, dgap, dtau, singular), singular where exact.py divides by 0."""
    ds_dr = 1.0 / p.dr_ds
    w = p.beta * ds_dr / p.sum_beta[:, None]
    j11, j12 = (w * p.dr_dgap).sum(-1), (w * p.dr_dtau).sum(-1)
    rhs0 = 1.0 - p.sum_beta - (w * p.r).sum(-1)
    if cl.coupled:
        w = p.phi * p.dlogq * ds_dr / p.sum_phi[:, None]
        # exact.py subtracts sum(phi of the upload clients) / sum(phi): 1, there being no compute-only clients
        j21, j22 = (w * p.dr_dgap).sum(-1), (w * p.dr_dtau).sum(-1) - 1.0
        rhs1 = 1.0 - p.sum_phi - (w * p.r).sum(-1)
        det = j11 * j22 - j12 * j21
        dgap = (rhs0 * j22 - j12 * rhs1) / det
        dtau = (j11 * rhs1 - j21 * rhs0) / det
        singular = det == 0
    else:
        dgap, dtau, singular = rhs0 / j11, np.zeros_like(rhs0), j11 == 0
    ds = (p.r + p.dr_dgap * dgap[:, None] + p.dr_dtau * dtau[:, None]) * -ds_dr
    return ds, dgap, dtau, singular


def _step_length(p: _Point, ds: np.ndarray, dgap: np.ndarray, dtau: np.ndarray) -> np.ndarray:
    """exact._step_length of every row."""
    largest_log_step = _py_max(np.abs(ds).max(-1), np.abs(dtau))
    alpha = np.where(largest_log_step > 0, _py_min(1.0, MAX_LOG_STEP / largest_log_step), 1.0)
    return np.where(dgap < 0, _py_min(alpha, exact._FLOOR_FRACTION * p.gap / -dgap), alpha)


def _line_search(cl: _Clients, p: _Point, ds: np.ndarray, dgap: np.ndarray, dtau: np.ndarray,
                 alpha: np.ndarray) -> tuple[_Point, np.ndarray]:  # fmt: skip
    """exact._newton's halving search of every row: (trial, improved); a row not improved has spent
    its halvings or raised (then ``trial.raised``)."""
    trial = _pulled_back(cl, p.gap + alpha * dgap, p.tau + alpha * dtau, p.s + alpha[:, None] * ds)
    improved = trial.error < p.error
    rows = np.flatnonzero(~improved & ~trial.raised)
    for _ in range(exact._MAX_HALVINGS - 1):
        if not rows.size:
            break
        alpha[rows] *= 0.5
        a = alpha[rows]
        moved = _pulled_back(cl.take(rows), p.gap[rows] + a * dgap[rows], p.tau[rows] + a * dtau[rows],
                             p.s[rows] + a[:, None] * ds[rows])  # fmt: skip
        trial.put(rows, moved)
        improved[rows] = moved.error < p.error[rows]
        rows = rows[~improved[rows] & ~moved.raised]
    return trial, improved


def _stalled(cl: _Clients, p: _Point, among: np.ndarray) -> np.ndarray:
    """The rows among these whose conditions.latency_error is below exact._STALL_TOLERANCE."""
    if not among.any():
        return among
    slack = p.gap[:, None] + cl.d
    compute = np.divide(cl.gamma, p.phi, out=np.zeros_like(slack), where=p.phi > 0)
    longest_compute = compute.max(-1, initial=0.0)
    longest_upload = (slack + cl.kappa - compute).max(-1, initial=0.0)
    error = _py_max(np.abs(p.r * slack).max(-1, initial=0.0), p.bandwidth_error * longest_upload)
    error = _py_max(error, p.cpu_error * longest_compute if cl.coupled else 0.0)
    return among & (error / (cl.floor + p.gap) < exact._STALL_TOLERANCE)


def _newton(cl: _Clients, p: _Point) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """exact._newton of every row from its start p: (beta, phi, converged), each row with its own
    iterations and halvings; a row stops changing once it has converged or failed."""
    n, k = p.s.shape
    beta, phi, converged = np.full((n, k), np.nan), np.full((n, k), np.nan), np.zeros(n, dtype=bool)

    def accept(done: np.ndarray, point: _Point) -> None:  # done: a mask of the rows now iterating
        if done.any():
            beta[rows[done]], phi[rows[done]], converged[rows[done]] = point.beta[done], point.phi[done], True

    rows, going = np.arange(n), np.isfinite(p.error) & ~p.raised
    for _ in range(exact._MAX_ITERATIONS):
        done = going & (p.error < exact._TOLERANCE)
        accept(done, p)
        going &= ~done
        rows, cl, p = rows[going], cl.take(going), p.take(going)
        if not rows.size:
            break
        ds, dgap, dtau, singular = _newton_step(cl, p)
        trial, improved = _line_search(cl, p, ds, dgap, dtau, _step_length(p, ds, dgap, dtau))
        improved &= ~singular
        accept(_stalled(cl, p, ~improved & ~trial.raised & ~singular), p)  # halvings spent: exact.py stops
        stalled = _stalled(cl, trial, improved & (trial.error > 0.5 * p.error))
        accept(stalled, trial)  # progress has stalled at round-off level
        going, p = improved & ~stalled, trial
    else:
        accept(_stalled(cl, p, going), p)
    return beta, phi, converged
