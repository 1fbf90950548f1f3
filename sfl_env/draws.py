"""Each episode's draws from its own generator, for E episodes at once, in compiled loops.

A process of E episodes (the channel, the CPUs, the twin) keeps one numpy ``Generator`` per episode,
so that episode e draws exactly what a single env seeded alike draws. A Python loop over E generators
costs microseconds per episode and call, more than the maths of a step; :class:`EpisodeGenerators`
loops in code compiled by numba instead. numba's ``Generator`` calls the generator's own bit generator
(its state is shared, not copied) with numpy's algorithms, so row e of a fill holds the values, and
generator e ends in the state, that ``rngs[e].<method>(out=row)`` gives (``tests/test_draws.py`` checks
this for every method, on generators in every state, other bit generators included). One episode (a
single env) makes numpy's own call, which costs less than reaching the compiled loop; the vector env's
tests compare the two paths through whole episodes. A fill of :data:`THREADED_FROM_DRAWS` draws or more
is split into runs on threads (:func:`solvers.row_runs.over_rows`) when no generator serves two rows: a
run draws from its own rows' generators only, so it gives the same values. A smaller fill stays on this
thread, because handing a run to another thread costs as much as the draws it would save.
:meth:`EpisodeGenerators.over_episodes` hands numba's list of the generators to compiled code that draws
as it goes (the channel's round); threads share its rows from ``PARALLEL_FROM_ROWS`` episodes, where no
generator serves two rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
from numba import njit, typed

from solvers import row_runs
from solvers.row_runs import over_rows, sharing_rows

from .episode_seeds import seed_in_place, state_addresses

__all__ = ["THREADED_FROM_DRAWS", "EpisodeGenerators"]

_COMPILE = {"cache": True, "nogil": True}
# From this many draws a fill goes to threads: handing a run to another thread and back costs ~0.1 ms on 2
# cores (measured), what ~10,000 draws cost.
THREADED_FROM_DRAWS = 65_536

_STANDARD_NORMAL, _STANDARD_EXPONENTIAL, _RANDOM, _UNIFORM, _NORMAL, _EXPONENTIAL = range(6)


@njit(**_COMPILE)
def _fill(gens, rows, kind, a, b, out):  # out: (E, n); row r of out from gens[r], for r in rows
    for r in rows:
        g = gens[r]
        for k in range(out.shape[1]):
            if kind == _STANDARD_NORMAL:
                out[r, k] = g.standard_normal()
            elif kind == _STANDARD_EXPONENTIAL:
                out[r, k] = g.standard_exponential()
            elif kind == _RANDOM:
                out[r, k] = g.random()
            elif kind == _UNIFORM:
                out[r, k] = g.uniform(a, b)
            elif kind == _NORMAL:
                out[r, k] = g.normal(a, b)
            else:
                out[r, k] = g.exponential(a)


@njit(**_COMPILE)
def _integers(gens, rows, high, out):
    for r in rows:
        out[r, :] = gens[r].integers(0, high, out.shape[1])


def _assign(row: np.ndarray, values: np.ndarray) -> None:
    row[:] = values


_NUMPY_FILLS = {
    _STANDARD_NORMAL: lambda rng, a, b, row: rng.standard_normal(out=row),
    _STANDARD_EXPONENTIAL: lambda rng, a, b, row: rng.standard_exponential(out=row),
    _RANDOM: lambda rng, a, b, row: rng.random(out=row),
    _UNIFORM: lambda rng, a, b, row: _assign(row, rng.uniform(a, b, row.size)),
    _NORMAL: lambda rng, a, b, row: _assign(row, rng.normal(a, b, row.size)),
    _EXPONENTIAL: lambda rng, a, b, row: _assign(row, rng.exponential(a, row.size)),
}


class EpisodeGenerators(Sequence[np.random.Generator]):
    """The generators of E episodes, generator e drawing row e of each fill.

    Each fill takes ``out`` of shape (E, ...) (C-contiguous; a row is filled in C order, as numpy fills
    ``out=``) and ``rows``, the episodes that draw (all of them by default); the other rows of ``out``
    are left as they are. :meth:`replace` puts new generators in some rows, :meth:`seed` seeds the generators
    some rows hold anew (new episodes, without a new numba handle).
    """

    def __init__(self, rngs: Sequence[np.random.Generator]) -> None:
        self._rngs = list(rngs)
        self._all = np.arange(len(self._rngs))
        self._typed: typed.List | None = None  # numba's list of the same generators, built on first use
        self._distinct: bool | None = None  # whether no generator serves two rows, known on first use
        self._addresses: np.ndarray | None = None  # where each row's PCG64 state lies, known on first seed

    def __len__(self) -> int:
        return len(self._rngs)

    def __getitem__(self, row):  # type: ignore[override]
        return self._rngs[row]

    def __iter__(self) -> Iterator[np.random.Generator]:
        return iter(self._rngs)

    @classmethod
    def of(cls, rngs: Sequence[np.random.Generator]) -> EpisodeGenerators:
        """``rngs`` itself if it is one (processes drawing from the same generators share it), else a new one."""
        return rngs if isinstance(rngs, EpisodeGenerators) else cls(rngs)

    def replace(self, rows: Sequence[int] | np.ndarray, rngs: Sequence[np.random.Generator]) -> None:
        """Row r's generator becomes the matching one of ``rngs`` (a row that already holds it is left)."""
        for row, rng in zip(rows, rngs):
            if self._rngs[row] is not rng:
                self._rngs[row] = rng
                self._distinct, self._addresses = None, None
                if self._typed is not None:
                    self._typed[row] = rng  # numba's handle to a new generator: ~40 us

    def seed(self, rows: Sequence[int] | np.ndarray, words: np.ndarray) -> None:
        """Row r's generator goes on as PCG64 seeded with the matching row of ``words`` (R, 8), as
        :func:`~sfl_env.episode_seeds.seed_in_place` seeds it; the object, and numba's handle to it, stay."""
        if self._addresses is None:
            self._addresses = state_addresses(self._rngs)
        rows = np.asarray(rows, dtype=np.int64)
        seed_in_place([self._rngs[row] for row in rows], words,
                      None if self._addresses is None else self._addresses[rows])

    def standard_normal(self, out: np.ndarray, rows: np.ndarray | None = None) -> None:
        self._fill(_STANDARD_NORMAL, 0.0, 0.0, out, rows)

    def standard_exponential(self, out: np.ndarray, rows: np.ndarray | None = None) -> None:
        self._fill(_STANDARD_EXPONENTIAL, 0.0, 0.0, out, rows)

    def random(self, out: np.ndarray, rows: np.ndarray | None = None) -> None:
        self._fill(_RANDOM, 0.0, 0.0, out, rows)

    def uniform(self, low: float, high: float, out: np.ndarray, rows: np.ndarray | None = None) -> None:
        self._fill(_UNIFORM, low, high, out, rows)

    def normal(self, loc: float, scale: float, out: np.ndarray, rows: np.ndarray | None = None) -> None:
        self._fill(_NORMAL, loc, scale, out, rows)

    def exponential(self, scale: float, out: np.ndarray, rows: np.ndarray | None = None) -> None:
        self._fill(_EXPONENTIAL, scale, 0.0, out, rows)

    def integers(self, high: int, out: np.ndarray, rows: np.ndarray | None = None) -> None:
        """``rngs[e].integers(0, high, n)`` into row e of the (E, n) int64 ``out``."""
        table = self._table(out, np.int64)
        if len(self._rngs) == 1:  # one episode: numpy's own call, which the compiled loop equals
            if rows is None or len(rows):
                table[0] = self._rngs[0].integers(0, int(high), table.shape[1])
            return
        gens, rows = self._compiled(), self._rows(rows)
        self._over_rows(rows.size, table.shape[1],
                        lambda start, stop: _integers(gens, rows[start:stop], int(high), table))

    def __getstate__(self) -> dict:
        return {"_rngs": self._rngs, "_all": self._all, "_typed": None, "_distinct": None,
                "_addresses": None}  # rebuilt where used

    def _fill(self, kind: int, a: float, b: float, out: np.ndarray, rows: np.ndarray | None) -> None:
        table = self._table(out, np.float64)
        if len(self._rngs) == 1:  # one episode: numpy's own call, which the compiled loop equals
            if rows is None or len(rows):
                _NUMPY_FILLS[kind](self._rngs[0], float(a), float(b), table[0])
            return
        gens, rows = self._compiled(), self._rows(rows)
        self._over_rows(rows.size, table.shape[1],
                        lambda start, stop: _fill(gens, rows[start:stop], kind, float(a), float(b), table))

    def over_episodes(self, run: Callable[[typed.List, np.ndarray], None]) -> None:
        """``run(generators, claims)``, ``generators`` numba's list of the generators (row r draws from
        ``generators[r]`` only): a compiled loop that draws as it goes, over the rows it takes from ``claims``
        (:func:`solvers.row_runs.claim_rows`). From ``PARALLEL_FROM_ROWS`` rows, threads share the rows
        (:func:`solvers.row_runs.sharing_rows`) where every row has a generator of its own."""
        gens = self._compiled()
        if self.distinct:
            sharing_rows(len(self._rngs), lambda claims: run(gens, claims), from_rows=row_runs.PARALLEL_FROM_ROWS)
        else:
            run(gens, np.array([0, len(self._rngs)], dtype=np.int64))

    @property
    def distinct(self) -> bool:
        """Whether every row has a generator of its own (no generator serves two rows)."""
        if self._distinct is None:
            self._distinct = len({id(rng) for rng in self._rngs}) == len(self._rngs)
        return self._distinct

    def _compiled(self) -> typed.List:
        if self._typed is None:
            self._typed = typed.List(self._rngs)
        return self._typed

    def _over_rows(self, rows: int, draws_per_row: int, run: Callable[[int, int], None]) -> None:
        """``run`` over runs of rows, on threads for a large fill where every row has a generator of its own."""
        if self.distinct and rows * draws_per_row >= THREADED_FROM_DRAWS:
            over_rows(rows, run)
        else:
            run(0, rows)

    def _rows(self, rows: np.ndarray | None) -> np.ndarray:
        return self._all if rows is None else np.asarray(rows, dtype=np.int64)

    def _table(self, out: np.ndarray, dtype: type) -> np.ndarray:
        if out.dtype != dtype or not out.flags.c_contiguous or len(out) != len(self._rngs):
            raise ValueError(f"out must be a C-contiguous {np.dtype(dtype)} array of {len(self._rngs)} rows; "
                             f"got {out.dtype} of shape {out.shape}")  # fmt: skip
        return out.reshape(len(out), -1)
