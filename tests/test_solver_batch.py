"""Tests of the batched solver: agreement with the one-problem solve, row independence, fallback, validation."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from numba import njit

import solvers
from solvers import (
    AllocationBatch,
    ProblemBatch,
    ResourceProblem,
    equal_split,
    equal_split_batch,
    iteration_latency,
    iteration_latency_batch,
    solve,
    solve_batch,
)
from solvers import batch as batch_module
from solvers import row_runs

ROOT = Path(__file__).resolve().parents[1]

NOISE_PSD_W_PER_HZ = 10 ** (-174 / 10) * 1e-3  # -174 dBm/Hz
BANDWIDTH_HZ = 10e6
SERVER_CPU_HZ = 100e9
SYSTEM = (NOISE_PSD_W_PER_HZ, BANDWIDTH_HZ, SERVER_CPU_HZ)
SHARE_ATOL = 1e-9
LATENCY_RTOL = 1e-9
FIELDS = ("fixed_time_s", "upload_bits", "server_cycles", "channel_gain", "tx_power_w")
KINDS = ("coupled", "upload", "mixed", "coupled", "compute")


def random_batch(rng: np.random.Generator, num_problems: int, num_clients: int, kinds=KINDS) -> ProblemBatch:
    """Rows over wide ranges: gains log-uniform over 10 orders of magnitude (-150 to -50 dB), fixed
    times 0, up to 50 ms or up to 100 s, bits (1e3 to 1e8) and cycles (1e6 to 1e12) log-uniform.
    Row i is of kind ``kinds[i % len(kinds)]``: ``coupled`` (every client has both kinds of work),
    ``upload`` (no server work), ``compute`` (no upload work) or ``mixed`` (some clients lack one
    or both kinds of work)."""
    shape = (num_problems, num_clients)
    scale = rng.choice([0.0, 0.05, 100.0], size=(num_problems, 1))
    fixed = scale * rng.random(shape) ** rng.choice([1.0, 4.0], size=(num_problems, 1))
    bits = 10 ** rng.uniform(3, 8, shape)
    cycles = 10 ** rng.uniform(6, 12, shape)
    for i in range(num_problems):
        kind = kinds[i % len(kinds)]
        if kind == "upload":
            cycles[i] = 0.0
        elif kind == "compute":
            bits[i] = 0.0
        elif kind == "mixed":
            bits[i, rng.random(num_clients) < 0.3] = 0.0
            cycles[i, rng.random(num_clients) < 0.3] = 0.0
            cycles[i, rng.integers(num_clients)] = 0.0  # at least one client without server work
    gain = 10 ** (rng.uniform(-150, -50, shape) / 10)
    power = rng.uniform(0.01, 1.0, shape)
    return ProblemBatch(fixed, bits, cycles, gain, power, *SYSTEM)


def rows_of(batch: ProblemBatch, rows) -> ProblemBatch:
    """The batch of the given rows of ``batch``, in that order."""
    return ProblemBatch(*(getattr(batch, name)[rows] for name in FIELDS), *SYSTEM)


def assert_rows_equal(result: AllocationBatch, i: int, other: AllocationBatch, j: int) -> None:
    """Row i of result and row j of other are bitwise equal."""
    np.testing.assert_array_equal(result.bandwidth_share[i], other.bandwidth_share[j])
    np.testing.assert_array_equal(result.server_cpu_share[i], other.server_cpu_share[j])
    np.testing.assert_array_equal(result.latency_s[i], other.latency_s[j])
    assert (result.status[i], result.fallback[i]) == (other.status[j], other.fallback[j])


def assert_is_allocation(result: AllocationBatch, i: int, allocation: solvers.Allocation) -> None:
    """Row i of result is bitwise the one-problem allocation."""
    np.testing.assert_array_equal(result.bandwidth_share[i], allocation.bandwidth_share)
    np.testing.assert_array_equal(result.server_cpu_share[i], allocation.server_cpu_share)
    assert result.latency_s[i] == allocation.latency_s
    assert (result.status[i], bool(result.fallback[i])) == (allocation.status, allocation.fallback)


Calls = list[tuple[ResourceProblem, solvers.Allocation]]


@pytest.fixture
def one_problem_calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    """The problems that solve_batch hands to the one-problem solve, with what it returned."""
    calls: Calls = []
    real_solve = solvers.solve

    def spy(problem: ResourceProblem, method: str = "exact") -> solvers.Allocation:
        calls.append((problem, real_solve(problem, method)))
        return calls[-1][1]

    monkeypatch.setattr(solvers, "solve", spy)
    return calls


def handed_over(batch: ProblemBatch, calls: Calls) -> dict[int, solvers.Allocation]:
    """The rows of batch that went to the one-problem solve, and what it returned for them."""
    return {i: allocation for i in range(batch.num_problems) for problem, allocation in calls
            if all(np.array_equal(getattr(batch, f)[i], getattr(problem, f)) for f in FIELDS)}  # fmt: skip


# --- agreement with the one-problem solve -------------------------------------------------------


@pytest.mark.parametrize(("num_clients", "num_problems", "seed"), [(1, 80, 1), (2, 80, 2), (10, 80, 3), (50, 30, 4)])
def test_batch_agrees_with_one_problem_solve(num_clients: int, num_problems: int, seed: int,
                                             one_problem_calls: Calls) -> None:  # fmt: skip
    batch = random_batch(np.random.default_rng(seed), num_problems, num_clients)
    result = solve_batch(batch)
    assert result.method == "exact" and result.bandwidth_share.shape == (num_problems, num_clients)
    handed = handed_over(batch, one_problem_calls)
    coupled = (batch.upload_bits > 0).all(-1) & (batch.server_cycles > 0).all(-1)
    upload_only = (batch.upload_bits > 0).all(-1) & (batch.server_cycles == 0).all(-1)
    assert set(handed) == set(np.flatnonzero(~(coupled | upload_only)))  # the batch solved all the others
    assert coupled.sum() >= num_problems // 3 and upload_only.sum() >= num_problems // 6
    for i in range(num_problems):
        expected = solve(batch.problem(i), "exact")
        if i in handed:
            assert_is_allocation(result, i, expected)
            continue
        assert (result.status[i], result.fallback[i]) == ("optimal", False) == (expected.status, expected.fallback)
        np.testing.assert_allclose(result.bandwidth_share[i], expected.bandwidth_share, rtol=0, atol=SHARE_ATOL)
        np.testing.assert_allclose(result.server_cpu_share[i], expected.server_cpu_share, rtol=0, atol=SHARE_ATOL)
        assert result.latency_s[i] == pytest.approx(expected.latency_s, rel=LATENCY_RTOL, abs=0)
        per_client = iteration_latency(batch.problem(i), result.bandwidth_share[i], result.server_cpu_share[i])
        # Recomputed from the shares, as solve does (compiled: the C library's log1p, so to round-off).
        assert result.latency_s[i] == pytest.approx(per_client.max(), rel=1e-14, abs=0)
        assert result.bandwidth_share[i].sum() <= 1.0 and result.server_cpu_share[i].sum() <= 1.0
        if upload_only[i]:
            assert np.all(result.server_cpu_share[i] == 0)


def test_cvxpy_rows_are_the_one_problem_results(one_problem_calls: Calls) -> None:
    batch = random_batch(np.random.default_rng(5), 3, 3, kinds=("coupled", "upload", "mixed"))
    result = solve_batch(batch, "cvxpy")
    assert result.method == "cvxpy"
    handed = handed_over(batch, one_problem_calls)
    assert sorted(handed) == [0, 1, 2]
    for i, allocation in handed.items():
        assert_is_allocation(result, i, allocation)
        assert result.latency_s[i] == pytest.approx(solve(batch.problem(i), "exact").latency_s, rel=1e-6)


def test_unknown_method_lists_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown solver method 'newton'.*'exact', 'cvxpy'"):
        solve_batch(random_batch(np.random.default_rng(6), 2, 3), "newton")


# --- row independence ---------------------------------------------------------------------------


@pytest.mark.parametrize(("num_clients", "seed"), [(1, 7), (3, 8), (10, 9), (50, 10)])
def test_a_row_is_bitwise_the_same_whatever_the_other_rows(num_clients: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    batch = random_batch(rng, 12, num_clients)
    together = solve_batch(batch)
    for i in range(batch.num_problems):
        assert_rows_equal(together, i, solve_batch(rows_of(batch, [i])), 0)
    order = rng.permutation(batch.num_problems)
    shuffled = solve_batch(rows_of(batch, order))
    for j, i in enumerate(order):
        assert_rows_equal(together, i, shuffled, j)
    # among many other rows, coupled only (one long iteration for all), and twice over
    others = random_batch(rng, 40, num_clients, kinds=("coupled",))
    mixed = ProblemBatch(*(np.concatenate([getattr(others, f), getattr(batch, f), getattr(batch, f)]) for f in FIELDS),
                         *SYSTEM)  # fmt: skip
    crowded = solve_batch(mixed)
    for i in range(batch.num_problems):
        assert_rows_equal(together, i, crowded, 40 + i)
        assert_rows_equal(together, i, crowded, 40 + batch.num_problems + i)


def test_the_batch_a_row_of_three_problems_is_the_batch_of_it_alone() -> None:
    rng = np.random.default_rng(11)
    a, b, c = (random_batch(rng, 1, 10, kinds=(kind,)) for kind in ("coupled", "upload", "coupled"))
    stacked = ProblemBatch(*(np.concatenate([getattr(x, f) for x in (a, b, c)]) for f in FIELDS), *SYSTEM)
    together = solve_batch(stacked)
    for i, alone in enumerate((a, b, c)):
        assert_rows_equal(together, i, solve_batch(alone), 0)


def test_rows_solved_on_threads_are_bitwise_the_rows_solved_in_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    batch = random_batch(np.random.default_rng(21), 300, 10, kinds=("coupled", "upload"))
    monkeypatch.setattr(row_runs, "PARALLEL_FROM_ROWS", 10**9)
    in_turn = solve_batch(batch)
    monkeypatch.setattr(row_runs, "PARALLEL_FROM_ROWS", 1)
    monkeypatch.setattr(row_runs, "SOLVER_THREADS", 3)  # three runs of rows, whatever the cores
    monkeypatch.setattr(row_runs, "_executor", None)
    on_threads = solve_batch(batch)
    for i in range(batch.num_problems):
        assert_rows_equal(on_threads, i, in_turn, i)


@pytest.mark.parametrize("failing", [0, 2])  # the run on the calling thread, a run on the pool's
def test_an_error_in_one_run_reaches_the_caller_after_every_run_has_ended(monkeypatch: pytest.MonkeyPatch,
                                                                          failing: int) -> None:  # fmt: skip
    monkeypatch.setattr(row_runs, "PARALLEL_FROM_ROWS", 1)
    monkeypatch.setattr(row_runs, "SOLVER_THREADS", 3)
    monkeypatch.setattr(row_runs, "_executor", None)
    ended = []

    def run(start: int, stop: int) -> None:
        if start == [0, 100, 200][failing]:
            raise ArithmeticError(f"rows {start}-{stop}")
        time.sleep(0.2)  # still writing its rows when the failing run has raised
        ended.append(start)

    with pytest.raises(ArithmeticError, match=f"rows {[0, 100, 200][failing]}-"):
        row_runs.over_rows(300, run)
    assert sorted(ended) == sorted({0, 100, 200} - {[0, 100, 200][failing]})


@njit(nogil=True)
def _take_rows(claims: np.ndarray, taken: np.ndarray, chunk: int) -> None:
    while True:
        start, stop = row_runs.claim_rows(claims, chunk)
        if start == stop:
            return
        for i in range(start, stop):
            taken[i] += 1


@pytest.mark.parametrize(("rows", "chunk"), [(1000, 8), (7, 3), (0, 4)])
def test_threads_sharing_rows_take_each_row_once(monkeypatch: pytest.MonkeyPatch, rows: int, chunk: int) -> None:
    monkeypatch.setattr(row_runs, "SHARING_FROM_ROWS", 1)
    monkeypatch.setattr(row_runs, "SOLVER_THREADS", 3)
    monkeypatch.setattr(row_runs, "_executor", None)
    taken, runs = np.zeros(rows, dtype=np.int64), []
    row_runs.sharing_rows(rows, lambda claims: runs.append(1) or _take_rows(claims, taken, chunk))
    np.testing.assert_array_equal(taken, 1)
    assert len(runs) == (3 if rows else 1)


def test_an_error_in_a_sharing_run_reaches_the_caller_after_every_run_has_ended(monkeypatch: pytest.MonkeyPatch
                                                                               ) -> None:  # fmt: skip
    monkeypatch.setattr(row_runs, "SHARING_FROM_ROWS", 1)
    monkeypatch.setattr(row_runs, "SOLVER_THREADS", 3)
    monkeypatch.setattr(row_runs, "_executor", None)
    calls, ended = [], []

    def run(claims: np.ndarray) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise ArithmeticError("the first run")
        time.sleep(0.2)  # still taking rows when the failing run has raised
        ended.append(1)

    with pytest.raises(ArithmeticError, match="the first run"):
        row_runs.sharing_rows(300, run)
    assert len(ended) == 2


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_a_bad_thread_count_is_refused_by_name(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("SFL_SOLVER_THREADS", value)
    with pytest.raises(ValueError, match="SFL_SOLVER_THREADS=.*allowed: a whole number of threads >= 1"):
        row_runs._solver_threads()


# --- rows the compiled solver leaves to the one-problem solve -----------------------------------


def _unsolve_row(row: int):
    """A stand-in for the compiled solver that leaves one row unsolved."""
    real_solve_rows = batch_module.solve_rows

    def solve_rows(*args: object) -> None:
        real_solve_rows(*args)
        solved = args[-3]
        if row < len(solved):
            solved[row] = False

    return solve_rows


def test_a_row_the_compiled_solver_leaves_unsolved_gets_the_one_problem_result(
    monkeypatch: pytest.MonkeyPatch, one_problem_calls: Calls
) -> None:
    batch = random_batch(np.random.default_rng(12), 4, 10, kinds=("coupled",))
    unspoiled = solve_batch(batch)
    assert not one_problem_calls
    monkeypatch.setattr(batch_module, "solve_rows", _unsolve_row(2))
    result = solve_batch(batch)
    assert list(handed_over(batch, one_problem_calls)) == [2]
    assert_is_allocation(result, 2, solve(batch.problem(2), "exact"))
    assert result.status[2] == "optimal"  # the one-problem solve did solve it
    for i in (0, 1, 3):
        assert_rows_equal(result, i, unspoiled, i)


@pytest.mark.parametrize(
    "share, expected",
    [
        ([0.5, 0.25, 0.25], [0.5, 0.25, 0.25]),
        ([2.0, 1.0, 1.0], [0.5, 0.25, 0.25]),  # scaled to its total
        ([0.5, 0.5 + 1e-12, -1e-12], [0.5, 0.5 + 1e-12, 0.0]),  # round-off below 0 clipped
        ([0.0, 0.0], [0.0, 0.0]),  # no work for this resource: nothing handed out
        ([0.6, 0.4 + 1e-3, -1e-3], None),  # more below 0 than round-off: infeasible
        ([0.5, np.nan, 0.5], None),
        ([0.5, np.inf, 0.5], None),
    ],
)
def test_the_compiled_solver_finishes_shares_as_solve_does(share: list[float], expected: list[float] | None) -> None:
    values = np.array(share)
    usable = solvers.newton._finished(values, solvers.ROUND_OFF)
    if expected is None:
        assert not usable
    else:
        assert usable
        np.testing.assert_allclose(values, expected, rtol=0, atol=1e-15)
        assert values.min() >= 0


def test_a_failing_one_problem_solve_puts_its_fallback_into_the_row(monkeypatch: pytest.MonkeyPatch) -> None:
    batch = random_batch(np.random.default_rng(13), 3, 4, kinds=("coupled", "mixed", "coupled"))
    monkeypatch.setattr(batch_module, "solve_rows", _unsolve_row(0))

    def diverge(*args: object) -> None:
        raise solvers.exact.ExactSolverError("did not converge")

    monkeypatch.setattr(solvers.exact, "_newton", diverge)
    monkeypatch.setattr(solvers.exact, "_solve_nested", diverge)
    result = solve_batch(batch)
    for i in (0, 1):
        assert result.fallback[i] and result.status[i].startswith("solver_error")
        np.testing.assert_array_equal(result.bandwidth_share[i], equal_split(batch.problem(i)).bandwidth_share)
        assert result.latency_s[i] == equal_split(batch.problem(i)).latency_s
    assert not result.fallback[2] and result.status[2] == "optimal"  # solved by the batch


# --- equal split, latency, result rows ----------------------------------------------------------


def test_equal_split_batch_is_equal_split_row_by_row() -> None:
    batch = random_batch(np.random.default_rng(14), 10, 5)
    result = equal_split_batch(batch)
    assert (result.method, result.status) == ("equal", ("equal",) * 10) and not result.fallback.any()
    for i in range(10):
        assert_is_allocation(result, i, equal_split(batch.problem(i)))


def test_iteration_latency_batch_is_iteration_latency_row_by_row() -> None:
    rng = np.random.default_rng(15)
    batch = random_batch(rng, 10, 6)
    beta, phi = rng.dirichlet(np.ones(6), 10), rng.dirichlet(np.ones(6), 10)
    beta[rng.random(beta.shape) < 0.2] = 0.0  # inf where a needed share is 0
    phi[rng.random(phi.shape) < 0.2] = 0.0
    latency = iteration_latency_batch(batch, beta, phi)
    assert np.isinf(latency).any()
    for i in range(10):
        np.testing.assert_array_equal(latency[i], iteration_latency(batch.problem(i), beta[i], phi[i]))


def test_allocation_row_is_an_allocation() -> None:
    batch = random_batch(np.random.default_rng(16), 4, 3, kinds=("coupled", "mixed"))
    result = solve_batch(batch)
    for i in range(4):
        allocation = result.row(i)
        assert isinstance(allocation, solvers.Allocation)
        assert_is_allocation(result, i, allocation)
        assert (allocation.method, allocation.solve_time_s) == ("exact", result.solve_time_s / 4)
        assert not np.shares_memory(allocation.bandwidth_share, result.bandwidth_share)


# --- the problem batch: storage and validation ----------------------------------------------------


VALID = dict(
    fixed_time_s=[[0.0, 0.1], [0.2, 0.0], [0.0, 0.0]],
    upload_bits=[1e6, 2e6],
    server_cycles=[[1e8], [2e8], [3e8]],
    channel_gain=1e-10,
    tx_power_w=0.2,
    noise_psd_w_per_hz=1e-20,
    bandwidth_hz=1e7,
    server_cpu_hz=1e11,
)


def test_fields_broadcast_to_read_only_contiguous_copies() -> None:
    fixed = np.array(VALID["fixed_time_s"])
    batch = ProblemBatch(**{**VALID, "fixed_time_s": fixed})
    assert (batch.num_problems, batch.num_clients) == (3, 2)
    fixed[0, 0] = 5.0
    assert batch.fixed_time_s[0, 0] == 0.0
    for name in FIELDS:
        values = getattr(batch, name)
        assert values.shape == (3, 2) and values.dtype == np.float64 and values.flags.c_contiguous
        with pytest.raises(ValueError, match="read-only"):
            values[0, 0] = 1.0
    np.testing.assert_array_equal(batch.upload_bits, [[1e6, 2e6]] * 3)
    assert isinstance(batch.bandwidth_hz, float)


def test_problem_is_the_row_as_a_resource_problem() -> None:
    batch = random_batch(np.random.default_rng(17), 3, 4)
    problem = batch.problem(1)
    assert isinstance(problem, ResourceProblem) and problem.num_clients == 4
    for name in FIELDS:
        np.testing.assert_array_equal(getattr(problem, name), getattr(batch, name)[1])
    np.testing.assert_array_equal(problem.full_band_snr, batch.full_band_snr[1])
    assert (problem.noise_psd_w_per_hz, problem.bandwidth_hz, problem.server_cpu_hz) == SYSTEM


def test_trusted_skips_the_checks_but_stores_alike() -> None:
    checked = ProblemBatch(**VALID)
    trusted = ProblemBatch.trusted(**VALID)
    for name in FIELDS:
        np.testing.assert_array_equal(getattr(trusted, name), getattr(checked, name))
        assert not getattr(trusted, name).flags.writeable
    bad = ProblemBatch.trusted(**{**VALID, "channel_gain": -1.0})  # no check, no error
    assert bad.channel_gain.shape == (3, 2)
    result = solve_batch(ProblemBatch.trusted(*(getattr(checked, name) for name in FIELDS), *SYSTEM))
    assert result.latency_s.shape == (3,)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("fixed_time_s", [[0.0, 0.1], [0.2, -1.0], [0.0, 0.0]],
         r"fixed_time_s: got -1\.0 at index \(1, 1\); allowed are finite values >= 0"),
        ("upload_bits", [np.nan, 1.0], r"upload_bits: got nan at index \(0, 0\)"),
        ("server_cycles", [[1.0], [np.inf], [1.0]], r"server_cycles: got inf at index \(1, 0\)"),
        ("channel_gain", [1e-10, 0.0], r"channel_gain: got 0\.0 at index \(0, 1\); allowed are finite values > 0"),
        ("tx_power_w", [0.2, 0.2, 0.2], r"broadcast to one shape \(N, K\).*tx_power_w=\(3,\)"),
        ("tx_power_w", "high", r"tx_power_w: cannot convert 'high'"),
        ("fixed_time_s", [[[0.0]]], r"broadcast to one shape \(N, K\)"),
        ("fixed_time_s", np.zeros((0, 2)), r"N, K >= 1"),
        ("noise_psd_w_per_hz", 0.0, r"noise_psd_w_per_hz: got 0\.0; allowed are finite values > 0"),
        ("bandwidth_hz", [1e7, 1e7], r"bandwidth_hz: got shape \(2,\); allowed is a scalar"),
        ("server_cpu_hz", "fast", r"server_cpu_hz: cannot convert 'fast'"),
    ],
)  # fmt: skip
def test_validation_errors_name_the_field(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ProblemBatch(**{**VALID, field: value})


def test_one_dimensional_fields_alone_are_not_a_batch() -> None:
    with pytest.raises(ValueError, match=r"broadcast to one shape \(N, K\)"):
        ProblemBatch([0.0, 0.1], [1e6, 2e6], 1e8, 1e-10, 0.2, *SYSTEM)


# --- the kernels' cache ------------------------------------------------------------------------------


def test_a_cached_kernel_follows_an_edit_of_the_file_it_calls_into(tmp_path: Path) -> None:
    # numba expires a cached kernel with its own file only; one that calls a compiled function of another file
    # carries that function's code. drop_stale_kernels makes such a kernel compile afresh when the other file
    # changes (without it, the second run below prints 11).
    package = tmp_path / "package"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "callee.py").write_text("from numba import njit\n\n\n@njit(cache=True)\ndef value():\n    return 1\n")
    (package / "caller.py").write_text(
        "from numba import njit\n\nfrom solvers.kernel_cache import drop_stale_kernels\n\nfrom package import callee\n\n"
        "drop_stale_kernels(__file__, callee.__file__)\n\n\n@njit(cache=True)\ndef total():\n"
        "    return callee.value() + 10\n")
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}

    def run() -> str:
        command = [sys.executable, "-c", "from package.caller import total; print(total())"]
        return subprocess.run(command, env=environment, capture_output=True, text=True, check=True).stdout.strip()

    assert run() == "11"
    assert list((package / "__pycache__").glob("caller.total-*.nbi"))  # cached
    (package / "callee.py").write_text((package / "callee.py").read_text().replace("return 1", "return 2"))
    assert run() == "12"
    assert run() == "12"  # and cached again


@pytest.mark.parametrize("size", [1, 3, 7, 8, 9, 10, 16, 17, 127, 128, 129, 200, 1000, 5000])
def test_numpy_sum_is_numpys_sum_to_the_bit(size: int) -> None:
    # solve's last step scales shares by their numpy sum; the compiled step must find the same total.
    rng = np.random.default_rng(size)
    for values in (rng.dirichlet(np.ones(size), 50) * rng.uniform(0.5, 2.0, (50, 1)), rng.normal(size=(50, size))):
        for row in values:
            assert 0.0 + batch_module.numpy_sum(row, 0, row.size) == row.sum()
