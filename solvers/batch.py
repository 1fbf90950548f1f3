"""Many allocation problems of K clients solved at once, as (N, K) arrays, for vectorised environments.

:class:`ProblemBatch` holds N problems; :func:`solvers.solve_batch` returns an :class:`AllocationBatch`
whose row i is what ``solve(batch.problem(i), method)`` returns. With ``method="exact"`` the rows in
which every client uploads and every client or none has server work (coupled or upload-only) go to the
compiled Newton iteration of :mod:`solvers.newton`, a row at a time; the other rows, those it leaves
unsolved and all rows of other methods go to the one-problem ``solve``.

solve's last steps on a solved row (shares scaled to their total, the latency recomputed from them) are
compiled too (:func:`finish_row`, summing as numpy does: :func:`numpy_sum`).

Rows never interact: a row's result is bitwise the same whatever the other rows and however many. So
the numpy code here is elementwise or reduces along the client axis only, and a large batch is solved
in runs of rows on threads (:mod:`solvers.row_runs`), each row by the same compiled code.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numba import njit

from . import problem
from .kernel_cache import drop_stale_kernels
from .newton import solve_rows
from .row_runs import over_rows
from .problem import _PER_CLIENT_FIELDS, _SCALAR_FIELDS, Allocation, ResourceProblem, shannon_rate, shannon_rate_bps
from .problem import _allowed, _as_positive_scalar

__all__ = ["AllocationBatch", "ProblemBatch", "equal_split_batch", "iteration_latency_batch", "solve_batch"]

RowSolver = Callable[[ResourceProblem, str], Allocation]
drop_stale_kernels(__file__, problem.__file__)  # the compiled Shannon rate is compiled in
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

    @classmethod
    def from_block(cls, block: np.ndarray, noise_psd_w_per_hz: float, bandwidth_hz: float,
                   server_cpu_hz: float) -> ProblemBatch:  # fmt: skip
        """A batch of values valid by construction that takes ``block``, a fresh C-contiguous float64 (5, N, K)
        array of the per-client fields in their order, as its storage (no copy; it becomes read-only)."""
        batch = object.__new__(cls)
        block.setflags(write=False)
        for name, values in zip(_CLIENT_FIELDS, block):
            object.__setattr__(batch, name, values)
        for name, value in zip(_SCALAR_FIELDS, (noise_psd_w_per_hz, bandwidth_hz, server_cpu_hz)):
            object.__setattr__(batch, name, float(value))
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
    """Row i is ``solve_row(batch.problem(i), method)``, or for ``method="exact"`` the compiled solver's
    result where it solves the row. :func:`solvers.solve_batch` passes the one-problem ``solve`` and its
    allowance for shares below 0 and totals above 1 (importing them here would make an import cycle)."""
    start = time.perf_counter()
    n, k = batch.num_problems, batch.num_clients
    if method == "exact":
        solved, beta, phi = np.zeros(n, dtype=bool), np.full((n, k), np.nan), np.full((n, k), np.nan)
        latency = np.full(n, np.nan)
        _solve_exact_rows(batch, round_off, solved, beta, phi, latency)
    else:
        solved, beta, phi, latency = np.zeros(n, dtype=bool), np.zeros((n, k)), np.zeros((n, k)), np.zeros(n)
    status, fallback = ["optimal"] * n, np.zeros(n, dtype=bool)
    for i in np.flatnonzero(~solved):
        allocation = solve_row(batch.problem(i), method)
        beta[i], phi[i], latency[i] = allocation.bandwidth_share, allocation.server_cpu_share, allocation.latency_s
        status[i], fallback[i] = allocation.status, allocation.fallback
    return AllocationBatch(beta, phi, latency, tuple(status), fallback, method, time.perf_counter() - start)


@njit(cache=True, error_model="numpy", nogil=True)
def numpy_sum(values, start, stop) -> float:
    """The sum of ``values[start:stop]`` in numpy's order, so that ``0.0 + numpy_sum(a, 0, a.size)`` equals
    ``a.sum()`` to the bit: numpy's pairwise summation halves a run (at a multiple of 8) until it has at most 128
    values (:func:`_block_sum`). Its recursion is written out with a stack (numba's cache cannot hold a recursive
    function)."""
    if stop - start <= 128:
        return _block_sum(values, start, stop)
    lows, highs, stages, lefts = np.empty(64, np.int64), np.empty(64, np.int64), np.empty(64, np.int64), np.empty(64)
    top, returned = 0, 0.0
    lows[0], highs[0], stages[0] = start, stop, 0
    while top >= 0:
        low, high = lows[top], highs[top]
        half = (high - low) // 2
        half -= half % 8
        if high - low <= 128:
            returned = _block_sum(values, low, high)
            top -= 1
        elif stages[top] == 0:  # the left half first
            stages[top] = 1
            top += 1
            lows[top], highs[top], stages[top] = low, low + half, 0
        elif stages[top] == 1:  # then the right half
            lefts[top], stages[top] = returned, 2
            top += 1
            lows[top], highs[top], stages[top] = low + half, high, 0
        else:
            returned = lefts[top] + returned
            top -= 1
    return returned


@njit(cache=True, error_model="numpy", nogil=True)
def _block_sum(values, start, stop) -> float:
    """numpy's sum of at most 128 values: fewer than 8 left to right, else 8 interleaved partial sums."""
    n = stop - start
    if n < 8:
        total = 0.0
        for i in range(start, stop):
            total += values[i]
        return total
    p0, p1, p2, p3 = values[start], values[start + 1], values[start + 2], values[start + 3]
    p4, p5, p6, p7 = values[start + 4], values[start + 5], values[start + 6], values[start + 7]
    i = start + 8
    while i < stop - n % 8:
        p0, p1, p2, p3 = p0 + values[i], p1 + values[i + 1], p2 + values[i + 2], p3 + values[i + 3]
        p4, p5, p6, p7 = p4 + values[i + 4], p5 + values[i + 5], p6 + values[i + 6], p7 + values[i + 7]
        i += 8
    total = ((p0 + p1) + (p2 + p3)) + ((p4 + p5) + (p6 + p7))
    for j in range(i, stop):
        total += values[j]
    return total


@njit(cache=True, error_model="numpy", nogil=True)
def finish_row(i, solved, beta, phi, fixed_time_s, upload_bits, server_cycles, snr, bandwidth_hz, server_cpu_hz,
               latency) -> None:  # fmt: skip
    """``solve``'s last steps on row i if solved, in place: shares whose total exceeds 1 (by round-off) scaled to
    sum to 1, the latency recomputed from the shares (:func:`iteration_latency_batch`'s maximum, NaN-propagating); a row
    whose latency is not finite is unsolved."""
    if not solved[i]:
        return
    for share in (beta[i], phi[i]):
        total = 0.0 + numpy_sum(share, 0, share.size)
        if total > 1.0:
            for k in range(share.size):
                share[k] /= total
    worst = -math.inf
    for k in range(snr.shape[1]):
        seconds = fixed_time_s[i, k]
        if upload_bits[i, k] > 0:
            rate = shannon_rate(beta[i, k], snr[i, k], bandwidth_hz)
            seconds = seconds + (upload_bits[i, k] / rate if rate > 0 else math.inf)
        else:
            seconds = seconds + 0.0
        if server_cycles[i, k] > 0:
            seconds = seconds + (server_cycles[i, k] / (phi[i, k] * server_cpu_hz) if phi[i, k] > 0 else math.inf)
        else:
            seconds = seconds + 0.0
        if not math.isnan(worst) and not seconds <= worst:  # a larger value, or a NaN (which stays)
            worst = seconds
    latency[i] = worst
    solved[i] = math.isfinite(worst)


@njit(cache=True, error_model="numpy", nogil=True)
def _finish_rows(solved, beta, phi, fixed_time_s, upload_bits, server_cycles, snr, bandwidth_hz, server_cpu_hz,
                 latency) -> None:  # fmt: skip
    for i in range(solved.size):
        finish_row(i, solved, beta, phi, fixed_time_s, upload_bits, server_cycles, snr, bandwidth_hz, server_cpu_hz,
                   latency)  # fmt: skip


def _solve_exact_rows(batch: ProblemBatch, round_off: float, solved: np.ndarray, beta: np.ndarray, phi: np.ndarray,
                      latency: np.ndarray) -> None:  # fmt: skip
    """The compiled solver and solve's last steps on every row, in runs of rows on threads for a large batch."""
    arrays = (batch.fixed_time_s, batch.upload_bits, batch.server_cycles, batch.full_band_snr)
    scalars = (batch.bandwidth_hz, batch.server_cpu_hz)

    def run(start: int, stop: int) -> None:
        rows = tuple(array[start:stop] for array in arrays)
        solve_rows(*rows, *scalars, round_off, solved[start:stop], beta[start:stop], phi[start:stop])
        _finish_rows(solved[start:stop], beta[start:stop], phi[start:stop], *rows, *scalars, latency[start:stop])

    over_rows(batch.num_problems, run)
