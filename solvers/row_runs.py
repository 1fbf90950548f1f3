"""A large batch of rows split into runs, each run on a thread, for the compiled kernels.

The compiled kernels (the exact solver's, :mod:`sfl_env.latency_kernels`') compute each row from its
own inputs only and release the GIL, so the runs of a large batch can go to threads and give the same
rows bit for bit. :func:`over_rows` does that from :data:`PARALLEL_FROM_ROWS` rows, on
``SFL_SOLVER_THREADS`` threads (default: the cores this process may use).

A fixed split leaves threads waiting: another thread starts ~0.1 ms after the call (longer on a
virtual machine whose idle core must wake) and may run slower. :func:`sharing_rows` lets the
threads share the rows instead: each compiled run takes the next chunk of rows that no run has
taken (:func:`claim_rows`, an atomic add on a shared counter) until none is left, so the threads
end within a chunk of each other, however late one of them starts.

These are Python threads, not numba's ``parallel=True``: its OpenMP layer kills a forked child that
uses it, and its fallback layer aborts when two threads use it at once. The pool is dropped in a
forked child, which has none of its parent's threads.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

__all__ = ["PARALLEL_FROM_ROWS", "SHARING_FROM_ROWS", "SOLVER_THREADS", "claim_rows", "over_rows", "sharing_rows"]

# From this many rows a batch is split into SOLVER_THREADS runs.
PARALLEL_FROM_ROWS = 256
# From this many rows threads share a batch (sharing_rows): no thread waits for another to start.
SHARING_FROM_ROWS = 32


def _solver_threads() -> int:
    value = os.environ.get("SFL_SOLVER_THREADS")
    if value is None:
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if not value.strip().isdigit() or int(value) < 1:
        raise ValueError(f"SFL_SOLVER_THREADS={value!r}; allowed: a whole number of threads >= 1")
    return int(value)


SOLVER_THREADS = _solver_threads()
_executor: ThreadPoolExecutor | None = None


def over_rows(rows: int, run: Callable[[int, int], None]) -> None:
    """Calls ``run(start, stop)`` on runs of rows covering ``range(rows)``: once for a small batch, else on
    SOLVER_THREADS threads at once, this one among them (``run`` must touch its own rows only)."""
    if rows < PARALLEL_FROM_ROWS or SOLVER_THREADS == 1:
        run(0, rows)
        return
    bounds = [rows * i // SOLVER_THREADS for i in range(SOLVER_THREADS + 1)]
    _on_threads(run, *zip(bounds[:-1], bounds[1:]))


def sharing_rows(rows: int, run: Callable[[np.ndarray], None], from_rows: int | None = None) -> None:
    """Calls ``run(claims)`` once for a batch of fewer than ``from_rows`` rows (default
    :data:`SHARING_FROM_ROWS`), else on SOLVER_THREADS threads at once, this one among them: ``claims`` is
    the int64 counter array from which a compiled ``run`` takes its rows with :func:`claim_rows` until none
    of ``range(rows)`` is left (``run`` must touch the rows it took only)."""
    claims = np.array([0, rows], dtype=np.int64)
    if rows < (SHARING_FROM_ROWS if from_rows is None else from_rows) or SOLVER_THREADS == 1:
        run(claims)
        return
    _on_threads(lambda *args: run(claims), *[()] * SOLVER_THREADS)


def _on_threads(run: Callable[..., None], *arguments: tuple) -> None:
    """``run(*arguments[0])`` on this thread while the pool's threads run the others; returns when every run has
    ended, then raises the first error."""
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=SOLVER_THREADS - 1, thread_name_prefix="sfl-rows")
    futures = [_executor.submit(run, *args) for args in arguments[1:]]
    try:
        run(*arguments[0])
    finally:
        wait(futures)  # no run may still write when this returns, even after an error
    for future in futures:
        future.result()


@intrinsic
def _fetch_add(typingctx, counter, value):
    """``counter[0] += value`` as one atomic operation; returns the value before."""
    if not (isinstance(counter, types.Array) and counter.dtype == types.int64 and isinstance(value, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        array = context.make_array(signature.args[0])(context, builder, args[0])
        increment = context.cast(builder, args[1], signature.args[1], types.int64)
        return builder.atomic_rmw("add", array.data, increment, "monotonic")

    return types.int64(counter, value), codegen


@njit(cache=True, nogil=True)
def claim_rows(claims: np.ndarray, chunk: int) -> tuple[int, int]:
    """The next ``chunk`` rows no run has taken, ``[start, stop)`` (``start == stop``: none is left), from
    ``claims``: [the next row, the number of rows]."""
    start = _fetch_add(claims, chunk)
    if start >= claims[1]:
        return claims[1], claims[1]
    return start, min(start + chunk, claims[1])


def _forget_executor() -> None:  # a forked child has none of its parent's threads
    global _executor
    _executor = None


os.register_at_fork(after_in_child=_forget_executor)
