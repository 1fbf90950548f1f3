"""A large batch of rows split into runs, each run on a thread, for the compiled kernels.

The compiled kernels (the exact solver's, :mod:`sfl_env.latency_kernels`') compute each row from its
own inputs only and release the GIL, so the runs of a large batch can go to threads and give the same
rows bit for bit. :func:`over_rows` does that from :data:`PARALLEL_FROM_ROWS` rows, on
``SFL_SOLVER_THREADS`` threads (default: the cores this process may use).

These are Python threads, not numba's ``parallel=True``: its OpenMP layer kills a forked child that
uses it, and its fallback layer aborts when two threads use it at once. The pool is dropped in a
forked child, which has none of its parent's threads.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait

import numpy as np

__all__ = ["PARALLEL_FROM_ROWS", "SOLVER_THREADS", "over_rows"]

# From this many rows a batch is split into SOLVER_THREADS runs.
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


def over_rows(rows: int, run: Callable[[int, int], None]) -> None:
    """Calls ``run(start, stop)`` on runs of rows covering ``range(rows)``: once for a small batch, else on
    SOLVER_THREADS threads at once, this one among them (``run`` must touch its own rows only)."""
    if rows < PARALLEL_FROM_ROWS or SOLVER_THREADS == 1:
        run(0, rows)
        return
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=SOLVER_THREADS - 1, thread_name_prefix="sfl-rows")
    bounds = np.linspace(0, rows, SOLVER_THREADS + 1).astype(int).tolist()
    futures = [_executor.submit(run, lo, hi) for lo, hi in zip(bounds[1:-1], bounds[2:])]
    try:
        run(bounds[0], bounds[1])  # the first run on this thread, while the pool's take the others
    finally:
        wait(futures)  # no run may still write when this returns, even after an error
    for future in futures:
        future.result()


def _forget_executor() -> None:  # a forked child has none of its parent's threads
    global _executor
    _executor = None


os.register_at_fork(after_in_child=_forget_executor)
