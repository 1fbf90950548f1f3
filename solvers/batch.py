"""Many allocation problems of K clients solved at once, as (N, K) arrays, for vectorised environments.

:class:`ProblemBatch` holds N problems; :func:`solvers.solve_batch` returns an :class:`AllocationBatch`
whose row i is what ``solve(batch.problem(i), method)`` returns. With ``method="exact"`` the rows in
which every client uploads and every client or none has server work (coupled or upload-only) go to the
compiled Newton iteration of :mod:`solvers.newton`, a row at a time; the other rows, those it leaves
unsolved and all rows of other methods go to the one-problem ``solve``.

Rows never interact: a row's result is bitwise the same whatever the other rows and however many. So
the numpy code here is elementwise or reduces along the client axis only, and a large batch is solved
in runs of rows on threads (``SFL_SOLVER_THREADS``), each row by the same compiled code.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from .newton import solve_rows
from .problem import _PER_CLIENT_FIELDS, _SCALAR_FIELDS, Allocation, ResourceProblem, shannon_rate_bps
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
    """Row i is ``solve_row(batch.problem(i), method)``, or for ``method="exact"`` the compiled solver's
    result where it solves the row. :func:`solvers.solve_batch` passes the one-problem ``solve`` and its
    allowance for shares below 0 and totals above 1 (importing them here would make an import cycle)."""
    start = time.perf_counter()
    n, k = batch.num_problems, batch.num_clients
    if method == "exact":
        solved, beta, phi = np.zeros(n, dtype=bool), np.full((n, k), np.nan), np.full((n, k), np.nan)
        _solve_exact_rows(batch, round_off, solved, beta, phi)
        with np.errstate(all="ignore"):  # the unsolved rows' garbage
            for share in (beta, phi):  # solve's last step, with numpy's sum
                total = share.sum(-1)[:, None]
                np.divide(share, total, out=share, where=total > 1.0)
            latency = iteration_latency_batch(batch, beta, phi).max(-1)
        solved &= np.isfinite(latency)
    else:
        solved, beta, phi, latency = np.zeros(n, dtype=bool), np.zeros((n, k)), np.zeros((n, k)), np.zeros(n)
    status, fallback = ["optimal"] * n, np.zeros(n, dtype=bool)
    for i in np.flatnonzero(~solved):
        allocation = solve_row(batch.problem(i), method)
        beta[i], phi[i], latency[i] = allocation.bandwidth_share, allocation.server_cpu_share, allocation.latency_s
        status[i], fallback[i] = allocation.status, allocation.fallback
    return AllocationBatch(beta, phi, latency, tuple(status), fallback, method, time.perf_counter() - start)


# From this many rows a batch is split into SOLVER_THREADS runs of rows, solved on as many threads (the compiled
# solver releases the GIL; a row's result is the same on any thread). SFL_SOLVER_THREADS sets the number.
PARALLEL_FROM_ROWS = 256


def _solver_threads() -> int:
    value = os.environ.get("SFL_SOLVER_THREADS")
    if value is None:
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if not value.strip().isdigit() or int(value) < 1:
        raise ValueError(f"SFL_SOLVER_THREADS={value!r}; allowed: a whole number of threads >= 1")
    return int(value)


SOLVER_THREADS = _solver_threads()
_executor: ThreadPoolExecutor | None = None


def _solve_exact_rows(batch: ProblemBatch, round_off: float, solved: np.ndarray, beta: np.ndarray,
                      phi: np.ndarray) -> None:  # fmt: skip
    """The compiled solver on every row, in runs of rows on threads for a large batch."""
    arrays = (batch.fixed_time_s, batch.upload_bits, batch.server_cycles, batch.full_band_snr)
    scalars = (batch.bandwidth_hz, batch.server_cpu_hz, round_off)
    n = batch.num_problems
    if n < PARALLEL_FROM_ROWS or SOLVER_THREADS == 1:
        return solve_rows(*arrays, *scalars, solved, beta, phi)
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=SOLVER_THREADS, thread_name_prefix="sfl-solver")
    bounds = np.linspace(0, n, SOLVER_THREADS + 1).astype(int)
    runs = [_executor.submit(solve_rows, *(a[lo:hi] for a in arrays), *scalars, solved[lo:hi], beta[lo:hi],
                             phi[lo:hi]) for lo, hi in zip(bounds[:-1], bounds[1:])]  # fmt: skip
    for run in runs:
        run.result()


def _forget_executor() -> None:  # a forked child has none of its parent's threads
    global _executor
    _executor = None


os.register_at_fork(after_in_child=_forget_executor)
