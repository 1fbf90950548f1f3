"""Tests of the resource allocation solvers: agreement, hand-computed optima, validation, fallback."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import brentq

from solvers import SOLVER_METHODS, Allocation, ResourceProblem, equal_split, iteration_latency, solve
from solvers import conditions, convex, exact, model_root

NOISE_PSD_W_PER_HZ = 10 ** (-174 / 10) * 1e-3  # -174 dBm/Hz
BANDWIDTH_HZ = 10e6
SERVER_CPU_HZ = 100e9
TX_POWER_W = 0.2
AGREEMENT_RTOL = 1e-6
SHARE_SLACK = 1e-9


def random_problem(
    rng: np.random.Generator,
    num_clients: int,
    *,
    gain_span_db: float | None = None,
    zero_fraction: float = 0.0,
) -> ResourceProblem:
    """A realistic instance: 128.1 + 37.6 log10(d_km) dB path loss with d ~ U[0.05, 0.5] km and
    Rayleigh fading, or (with ``gain_span_db``) gains log-uniform over a band of that width
    whose two ends both occur; optionally some upload or server work set to zero."""
    if gain_span_db is None:
        path_loss_db = 128.1 + 37.6 * np.log10(rng.uniform(0.05, 0.5, num_clients))
        gain = 10 ** (-path_loss_db / 10) * rng.exponential(1.0, num_clients)
    else:
        gain_db = rng.uniform(-80 - gain_span_db, -80, num_clients)
        gain_db[: min(2, num_clients)] = [-80 - gain_span_db, -80][: min(2, num_clients)]
        gain = 10 ** (gain_db / 10)
    upload_bits = rng.uniform(0.1e6, 5e6, num_clients)
    server_cycles = rng.uniform(1e7, 1e9, num_clients)
    upload_bits[rng.random(num_clients) < zero_fraction] = 0.0
    server_cycles[rng.random(num_clients) < zero_fraction] = 0.0
    return ResourceProblem(
        fixed_time_s=rng.uniform(0.0, 0.05, num_clients),
        upload_bits=upload_bits,
        server_cycles=server_cycles,
        channel_gain=gain,
        tx_power_w=TX_POWER_W,
        noise_psd_w_per_hz=NOISE_PSD_W_PER_HZ,
        bandwidth_hz=BANDWIDTH_HZ,
        server_cpu_hz=SERVER_CPU_HZ,
    )


def identical_clients(num_clients: int, **overrides: float) -> ResourceProblem:
    fields = dict(
        fixed_time_s=0.01,
        upload_bits=1e6,
        server_cycles=2e8,
        channel_gain=1e-10,
        tx_power_w=0.2,
        noise_psd_w_per_hz=1e-20,
        bandwidth_hz=1e7,
        server_cpu_hz=1e11,
    )
    fields.update(overrides)
    per_client = ("fixed_time_s", "upload_bits", "server_cycles", "channel_gain", "tx_power_w")
    return ResourceProblem(**{k: np.full(num_clients, v) if k in per_client else v for k, v in fields.items()})


def assert_valid(problem: ResourceProblem, allocation: Allocation) -> None:
    """Shares feasible, latency_s the true latency of the shares, needless shares zero."""
    beta, phi = allocation.bandwidth_share, allocation.server_cpu_share
    assert beta.shape == phi.shape == (problem.num_clients,)
    assert np.all(beta >= 0) and np.all(phi >= 0)
    assert beta.sum() <= 1 + SHARE_SLACK and phi.sum() <= 1 + SHARE_SLACK
    per_client = iteration_latency(problem, beta, phi)
    assert np.all(per_client <= allocation.latency_s * (1 + SHARE_SLACK))
    assert allocation.latency_s == pytest.approx(per_client.max(), rel=1e-12)
    if not allocation.fallback and allocation.method != "equal":
        assert np.all(beta[problem.upload_bits == 0] == 0)
        assert np.all(phi[problem.server_cycles == 0] == 0)


def rate_bps(share: float, gain: float, power: float, noise: float, bandwidth: float) -> float:
    return share * bandwidth * math.log2(1 + power * gain / (share * bandwidth * noise))


# --- agreement with the cvxpy reference ---------------------------------------------------


AGREEMENT_CASES = [
    # (seed, number of instances, gain span in dB or None for the realistic channel, zero fraction)
    (1, 100, None, 0.0),
    (2, 100, 60.0, 0.0),
    (3, 100, 60.0, 0.25),
]


@pytest.mark.parametrize(("seed", "count", "gain_span_db", "zero_fraction"), AGREEMENT_CASES)
def test_exact_agrees_with_cvxpy(seed: int, count: int, gain_span_db: float | None, zero_fraction: float) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(count):
        problem = random_problem(
            rng, int(rng.integers(1, 101)), gain_span_db=gain_span_db, zero_fraction=zero_fraction
        )
        fast, reference = solve(problem, "exact"), solve(problem, "cvxpy")
        assert (fast.status, fast.method, fast.fallback) == ("optimal", "exact", False)
        assert reference.status in ("optimal", "optimal_inaccurate") and not reference.fallback
        assert fast.latency_s == pytest.approx(reference.latency_s, rel=AGREEMENT_RTOL)
        assert fast.latency_s <= equal_split(problem).latency_s * (1 + 1e-12)
        assert_valid(problem, fast)
        assert_valid(problem, reference)


def client_bound_problem(rng: np.random.Generator, num_clients: int) -> ResourceProblem:
    """A :func:`random_problem` whose clients compute for 0.2-0.3 s, so that the optimal latency is the
    slowest client's compute plus a few milliseconds: the regime of measured phone training times."""
    base = random_problem(rng, num_clients)
    return ResourceProblem(
        rng.uniform(0.2, 0.3, num_clients), base.upload_bits / 10, base.server_cycles, base.channel_gain,
        base.tx_power_w, base.noise_psd_w_per_hz, base.bandwidth_hz, base.server_cpu_hz,
    )  # fmt: skip


def test_exact_agrees_with_cvxpy_when_client_compute_dominates() -> None:
    rng = np.random.default_rng(4)
    for _ in range(30):
        problem = client_bound_problem(rng, int(rng.integers(2, 31)))
        fast, reference = solve(problem, "exact"), solve(problem, "cvxpy")
        assert (fast.status, fast.fallback) == ("optimal", False)
        assert reference.status in ("optimal", "optimal_inaccurate") and not reference.fallback
        assert fast.latency_s == pytest.approx(reference.latency_s, rel=AGREEMENT_RTOL)
        assert_valid(problem, fast)


def test_exact_starts_near_the_optimum_when_client_compute_dominates() -> None:
    """The model's start leaves Newton residuals of at most a few percent (a start at the equal split's
    latency, several times the optimal gap here, leaves residuals above 1: twice the Newton steps)."""
    rng = np.random.default_rng(6)
    for _ in range(30):
        problem = client_bound_problem(rng, 10)
        everyone = np.arange(problem.num_clients)
        clients = conditions.Clients(problem, everyone, everyone[:0])
        start = exact._initial_point(clients)
        optimum = exact._newton(clients, start)
        assert start.error < 0.1
        assert abs(start.gap / optimum.gap - 1) < 0.1


@pytest.mark.parametrize(("lo", "hi", "expected"), [(0.01, 10.0, "root"), (2.0, 10.0, 2.0), (0.01, 0.5, 0.5)])
def test_model_gap_is_the_root_kept_between_its_bounds(lo: float, hi: float, expected: object) -> None:
    work, slack = np.array([0.3, 0.5, 0.2]), np.array([0.0, 0.4, 0.1])
    root = brentq(lambda g: float(work @ (1.0 / (g + slack))) - 1.0, 1e-6, 100.0, xtol=1e-15)  # about 0.84
    none = np.zeros(3)  # clients with upload work only: B = C = D = 0
    for start in (lo, hi, math.sqrt(lo * hi)):
        gap = model_root.model_gap(work, none, none, none, slack, lo, hi, start, 1e-8, 100)
        assert gap == pytest.approx(root if expected == "root" else expected, rel=1e-8)


def test_compiled_cvxpy_problem_is_dpp() -> None:
    for num_clients in (1, 7):
        problem = convex.compiled_problem(num_clients)
        assert problem.is_dcp(dpp=True)
        assert convex.compiled_problem(num_clients) is problem  # built once per K


def test_cvxpy_re_solve_uses_new_parameter_values() -> None:
    rng = np.random.default_rng(4)
    first, second = random_problem(rng, 5), random_problem(rng, 5)
    for problem in (first, second, first):
        assert solve(problem, "cvxpy").latency_s == pytest.approx(solve(problem, "exact").latency_s, rel=1e-6)


# --- hand-computed optima ----------------------------------------------------------------


@pytest.mark.parametrize("method", SOLVER_METHODS)
def test_identical_clients_get_the_equal_split(method: str) -> None:
    num_clients = 4
    problem = identical_clients(num_clients)
    # each client: 1/4 of 10 MHz at SNR 0.2 * 1e-10 / (2.5e6 * 1e-20) = 800, and 1/4 of 100 GHz
    by_hand = 0.01 + 1e6 / (2.5e6 * math.log2(801)) + 2e8 / 25e9
    allocation = solve(problem, method)
    assert allocation.latency_s == pytest.approx(by_hand, rel=1e-7)
    assert equal_split(problem).latency_s == pytest.approx(by_hand, rel=1e-12)
    np.testing.assert_allclose(allocation.bandwidth_share, 0.25, rtol=1e-4)
    np.testing.assert_allclose(allocation.server_cpu_share, 0.25, rtol=1e-4)


@pytest.mark.parametrize("method", SOLVER_METHODS)
def test_single_client_gets_everything(method: str) -> None:
    problem = identical_clients(1, fixed_time_s=0.2)
    by_hand = 0.2 + 1e6 / rate_bps(1.0, 1e-10, 0.2, 1e-20, 1e7) + 2e8 / 1e11
    allocation = solve(problem, method)
    assert allocation.latency_s == pytest.approx(by_hand, rel=1e-7)
    np.testing.assert_allclose([allocation.bandwidth_share[0], allocation.server_cpu_share[0]], 1.0, rtol=1e-6)


@pytest.mark.parametrize("method", SOLVER_METHODS)
def test_compute_only_without_fixed_time_takes_total_work_over_cpu(method: str) -> None:
    cycles = np.array([1e8, 3e8, 6e8])
    problem = ResourceProblem(0.0, 0.0, cycles, 1e-10, 0.2, 1e-20, 1e7, 1e11)
    allocation = solve(problem, method)
    assert allocation.latency_s == pytest.approx(cycles.sum() / 1e11, rel=1e-7)
    np.testing.assert_allclose(allocation.server_cpu_share, cycles / cycles.sum(), rtol=1e-5)
    assert np.all(allocation.bandwidth_share == 0)


@pytest.mark.parametrize("method", SOLVER_METHODS)
def test_compute_only_with_fixed_times_solves_the_cpu_equation(method: str) -> None:
    fixed = np.array([0.0, 0.003, 0.01, 0.02])
    cycles = np.array([4e8, 1e8, 5e8, 2e8])
    problem = ResourceProblem(fixed, 0.0, cycles, 1e-10, 0.2, 1e-20, 1e7, 1e11)
    cpu_demand = lambda T: np.sum(cycles / (1e11 * (T - fixed))) - 1.0  # noqa: E731
    by_hand = brentq(cpu_demand, fixed.max() + 1e-12, fixed.max() + cycles.sum() / 1e11, xtol=1e-15)
    assert solve(problem, method).latency_s == pytest.approx(by_hand, rel=1e-7)


@pytest.mark.parametrize("method", SOLVER_METHODS)
def test_upload_only_solves_the_bandwidth_equation(method: str) -> None:
    fixed = np.array([0.0, 0.01, 0.02])
    bits = np.array([1e6, 2e6, 5e5])
    gains = np.array([1e-9, 1e-11, 1e-12])
    problem = ResourceProblem(fixed, bits, 0.0, gains, 0.2, 1e-20, 1e7, 1e11)

    def share_needed(k: int, seconds: float) -> float:
        return brentq(lambda b: bits[k] / rate_bps(b, gains[k], 0.2, 1e-20, 1e7) - seconds, 1e-12, 2.0, xtol=1e-16)

    # at the latency one client reaches with the whole band, the shares add up to at least 1
    whole_band = max(fixed[k] + bits[k] / rate_bps(1.0, gains[k], 0.2, 1e-20, 1e7) for k in range(3))
    by_hand = brentq(lambda T: sum(share_needed(k, T - fixed[k]) for k in range(3)) - 1, whole_band, 10.0, xtol=1e-15)
    allocation = solve(problem, method)
    assert allocation.latency_s == pytest.approx(by_hand, rel=1e-7)
    assert np.all(allocation.server_cpu_share == 0)


# --- degenerate inputs --------------------------------------------------------------------


@pytest.mark.parametrize("method", SOLVER_METHODS)
def test_idle_client_needs_nothing_and_can_set_the_latency(method: str) -> None:
    problem = ResourceProblem([0.0, 0.0, 5.0], [1e6, 0.0, 0.0], [1e8, 1e8, 0.0], 1e-10, 0.2, 1e-20, 1e7, 1e11)
    allocation = solve(problem, method)
    assert allocation.latency_s == pytest.approx(5.0)
    assert allocation.bandwidth_share[1:].tolist() == [0.0, 0.0]
    assert allocation.server_cpu_share[2] == 0.0
    assert_valid(problem, allocation)


@pytest.mark.parametrize("method", SOLVER_METHODS)
def test_all_idle_clients(method: str) -> None:
    problem = ResourceProblem([0.1, 0.3], 0.0, 0.0, 1e-10, 0.2, 1e-20, 1e7, 1e11)
    allocation = solve(problem, method)
    assert allocation.latency_s == pytest.approx(0.3)
    assert not allocation.fallback


@pytest.mark.parametrize(
    ("num_clients", "gain_span_db", "zero_fraction"),
    [(1, None, 0.5), (2, 60.0, 0.0), (1000, None, 0.0), (1000, 60.0, 0.2)],
)
def test_exact_handles_edge_sizes(num_clients: int, gain_span_db: float | None, zero_fraction: float) -> None:
    rng = np.random.default_rng(num_clients)
    for _ in range(5):
        problem = random_problem(rng, num_clients, gain_span_db=gain_span_db, zero_fraction=zero_fraction)
        allocation = solve(problem, "exact")
        assert allocation.status == "optimal"
        assert allocation.latency_s <= equal_split(problem).latency_s * (1 + 1e-12)
        assert_valid(problem, allocation)


def _lower_bound(problem: ResourceProblem) -> float:
    """Every client alone with the whole band and the whole CPU."""
    alone = iteration_latency(problem, np.ones(problem.num_clients), np.ones(problem.num_clients))
    return float(alone.max())


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    num_clients=st.integers(1, 30),
    log_scales=st.lists(st.floats(-3, 3), min_size=4, max_size=4),
)
def test_exact_is_feasible_and_bounded_over_wide_scales(seed: int, num_clients: int, log_scales: list[float]) -> None:
    rng = np.random.default_rng(seed)
    base = random_problem(rng, num_clients, gain_span_db=60.0, zero_fraction=0.2)
    scale_a, scale_d, scale_c, scale_g = (10.0**x for x in log_scales)
    problem = ResourceProblem(
        base.fixed_time_s * scale_a,
        base.upload_bits * scale_d * 10 ** rng.uniform(-1, 1, num_clients),
        base.server_cycles * scale_c * 10 ** rng.uniform(-1, 1, num_clients),
        base.channel_gain * scale_g,
        base.tx_power_w,
        base.noise_psd_w_per_hz,
        base.bandwidth_hz,
        base.server_cpu_hz,
    )
    allocation = solve(problem, "exact")
    assert allocation.status == "optimal"
    assert_valid(problem, allocation)
    assert _lower_bound(problem) * (1 - 1e-12) <= allocation.latency_s
    assert allocation.latency_s <= equal_split(problem).latency_s * (1 + 1e-12)


# --- API, validation, fallback ------------------------------------------------------------


def test_equal_split_allocation() -> None:
    problem = ResourceProblem([0.0, 0.1], [1e6, 0.0], [0.0, 1e8], 1e-10, 0.2, 1e-20, 1e7, 1e11)
    allocation = equal_split(problem)
    assert (allocation.status, allocation.method, allocation.fallback) == ("equal", "equal", False)
    np.testing.assert_array_equal(allocation.bandwidth_share, [0.5, 0.5])
    np.testing.assert_array_equal(allocation.server_cpu_share, [0.5, 0.5])
    expected = max(1e6 / rate_bps(0.5, 1e-10, 0.2, 1e-20, 1e7), 0.1 + 1e8 / 5e10)
    assert allocation.latency_s == pytest.approx(expected, rel=1e-12)


def test_iteration_latency_is_infinite_without_a_needed_share() -> None:
    problem = ResourceProblem([0.0, 0.0], [1e6, 0.0], [1e8, 1e8], 1e-10, 0.2, 1e-20, 1e7, 1e11)
    latency = iteration_latency(problem, np.array([0.0, 0.0]), np.array([0.5, 0.5]))
    assert latency[0] == np.inf and latency[1] == pytest.approx(1e8 / 5e10)
    assert iteration_latency(problem, np.array([1.0, 0.0]), np.array([0.0, 1.0]))[0] == np.inf


def test_scalars_broadcast_to_the_common_length() -> None:
    problem = ResourceProblem(0.0, [1e6, 2e6, 3e6], 1e8, 1e-10, 0.2, 1e-20, 1e7, 1e11)
    assert problem.num_clients == 3
    assert problem.fixed_time_s.dtype == np.float64 and problem.tx_power_w.shape == (3,)


def test_problem_fields_are_read_only_copies() -> None:
    upload_bits = np.array([1e6, 2e6])
    problem = ResourceProblem(0.0, upload_bits, 1e8, 1e-10, 0.2, 1e-20, 1e7, 1e11)
    upload_bits[0] = 5.0
    np.testing.assert_array_equal(problem.upload_bits, [1e6, 2e6])
    for name in ("fixed_time_s", "upload_bits", "server_cycles", "channel_gain", "tx_power_w"):
        with pytest.raises(ValueError, match="read-only"):
            getattr(problem, name)[0] = 1.0


@pytest.mark.parametrize(
    ("upload_bits", "server_cycles", "expected"),
    [([1e6, 2e6], [1e8, 1e8], True), ([1e6, 0.0], [1e8, 1e8], False), ([1e6, 2e6], [0.0, 1e8], False)],
)
def test_every_client_has_work(upload_bits: list[float], server_cycles: list[float], expected: bool) -> None:
    problem = ResourceProblem(0.0, upload_bits, server_cycles, 1e-10, 0.2, 1e-20, 1e7, 1e11)
    assert problem.every_client_has_work is expected


def test_iteration_latency_is_the_same_whichever_way_it_is_computed() -> None:
    # Busy clients with positive shares take a shortcut; an idle extra client forces the general path,
    # which must give the busy clients the same seconds.
    system = dict(tx_power_w=0.2, noise_psd_w_per_hz=1e-20, bandwidth_hz=1e7, server_cpu_hz=1e11)
    busy = ResourceProblem([0.0, 0.1], [1e6, 2e6], [1e8, 3e8], [1e-10, 1e-11], **system)
    with_idle = ResourceProblem([0.0, 0.1, 0.0], [1e6, 2e6, 0.0], [1e8, 3e8, 0.0], [1e-10, 1e-11, 1e-10], **system)
    beta, phi = np.array([0.4, 0.6]), np.array([0.3, 0.7])
    latency = iteration_latency(busy, beta, phi)
    idle_shares = np.append(beta, 0.0), np.append(phi, 0.0)
    np.testing.assert_array_equal(iteration_latency(with_idle, *idle_shares), np.append(latency, 0.0))
    rate = np.array([rate_bps(b, g, 0.2, 1e-20, 1e7) for b, g in zip(beta, [1e-10, 1e-11])])
    expected = np.array([0.0, 0.1]) + np.array([1e6, 2e6]) / rate + np.array([1e8, 3e8]) / (phi * 1e11)
    np.testing.assert_allclose(latency, expected, rtol=1e-12)


def test_allocation_shares_are_fresh_arrays(monkeypatch: pytest.MonkeyPatch) -> None:
    problem = ResourceProblem(**VALID_FIELDS)
    beta, phi = np.array([0.5, 0.5]), np.array([0.25, 0.75])
    monkeypatch.setattr(exact, "solve_exact", lambda p: (beta, phi))
    allocation = solve(problem, "exact")
    assert not allocation.fallback
    np.testing.assert_array_equal(allocation.bandwidth_share, beta)
    assert not np.shares_memory(allocation.bandwidth_share, beta) and not np.shares_memory(allocation.server_cpu_share, phi)


VALID_FIELDS = dict(
    fixed_time_s=[0.0, 0.1],
    upload_bits=[1e6, 2e6],
    server_cycles=[1e8, 1e8],
    channel_gain=[1e-10, 1e-11],
    tx_power_w=[0.2, 0.2],
    noise_psd_w_per_hz=1e-20,
    bandwidth_hz=1e7,
    server_cpu_hz=1e11,
)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("fixed_time_s", [0.0, -1.0], r"fixed_time_s: got -1\.0 at index 1; allowed are finite values >= 0"),
        ("upload_bits", [np.nan, 1.0], r"upload_bits: got nan at index 0"),
        ("server_cycles", [1.0, np.inf], r"server_cycles: got inf"),
        ("channel_gain", [1e-10, 0.0], r"channel_gain: got 0\.0 at index 1; allowed are finite values > 0"),
        ("tx_power_w", [0.2, 0.2, 0.2], r"same length.*tx_power_w=3"),
        ("tx_power_w", [[0.2, 0.2]], r"tx_power_w: got shape \(1, 2\)"),
        ("upload_bits", [], r"upload_bits: got an empty array"),
        ("noise_psd_w_per_hz", 0.0, r"noise_psd_w_per_hz: got 0\.0; allowed are finite values > 0"),
        ("bandwidth_hz", [1e7, 1e7], r"bandwidth_hz: got shape \(2,\); allowed is a scalar"),
        ("server_cpu_hz", "fast", r"server_cpu_hz: cannot convert 'fast'"),
    ],
)
def test_validation_errors_name_the_field(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ResourceProblem(**{**VALID_FIELDS, field: value})


def test_unknown_method_lists_the_allowed_ones() -> None:
    problem = ResourceProblem(**VALID_FIELDS)
    with pytest.raises(ValueError, match=r"unknown solver method 'newton'.*'exact', 'cvxpy'"):
        solve(problem, "newton")
    assert SOLVER_METHODS == ("exact", "cvxpy")


def _assert_fallback(problem: ResourceProblem, allocation: Allocation, method: str, status: str) -> None:
    assert allocation.fallback and allocation.method == method
    assert allocation.status.startswith(status)
    np.testing.assert_array_equal(allocation.bandwidth_share, equal_split(problem).bandwidth_share)
    assert allocation.latency_s == equal_split(problem).latency_s


def _diverge(*args: object) -> None:
    raise exact.ExactSolverError("did not converge")


@pytest.mark.parametrize(("gain_span_db", "zero_fraction"), [(None, 0.0), (60.0, 0.3)])
def test_safeguarded_fallback_of_exact_finds_the_same_optimum(
    monkeypatch: pytest.MonkeyPatch, gain_span_db: float | None, zero_fraction: float
) -> None:
    rng = np.random.default_rng(5)
    problems = [random_problem(rng, k, gain_span_db=gain_span_db, zero_fraction=zero_fraction) for k in (1, 3, 20)]
    newton = [solve(problem, "exact") for problem in problems]
    monkeypatch.setattr(exact, "_newton", _diverge)
    calls = []
    nested = exact._solve_nested
    monkeypatch.setattr(exact, "_solve_nested", lambda *args: calls.append(args) or nested(*args))
    for problem, expected in zip(problems, newton):
        allocation = solve(problem, "exact")
        assert allocation.status == "optimal"
        assert allocation.latency_s == pytest.approx(expected.latency_s, rel=1e-9)
        assert_valid(problem, allocation)
    assert calls  # the fallback did the work


def test_exact_failure_falls_back_to_the_equal_split(monkeypatch: pytest.MonkeyPatch) -> None:
    problem = ResourceProblem(**VALID_FIELDS)
    monkeypatch.setattr(exact, "_newton", _diverge)
    monkeypatch.setattr(exact, "_solve_nested", _diverge)
    _assert_fallback(problem, solve(problem, "exact"), "exact", "solver_error")


def test_exact_nan_falls_back_to_the_equal_split(monkeypatch: pytest.MonkeyPatch) -> None:
    problem = ResourceProblem(**VALID_FIELDS)
    monkeypatch.setattr(exact, "solve_exact", lambda p: (np.full(2, np.nan), np.full(2, 0.5)))
    _assert_fallback(problem, solve(problem, "exact"), "exact", "nonfinite")


def test_nan_inside_the_exact_iteration_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    problem = ResourceProblem(**VALID_FIELDS)
    real_shape = conditions.shape_functions
    monkeypatch.setattr(conditions, "shape_functions",
                        lambda z: tuple(np.full_like(x, np.nan) for x in real_shape(z)))
    _assert_fallback(problem, solve(problem, "exact"), "exact", "solver_error")


@pytest.mark.parametrize("status", ["infeasible", "solver_error", "unbounded"])
def test_cvxpy_failure_falls_back_to_the_equal_split(monkeypatch: pytest.MonkeyPatch, status: str) -> None:
    problem = ResourceProblem(**VALID_FIELDS)
    monkeypatch.setattr(convex, "_run_clarabel", lambda problem, settings: status)
    _assert_fallback(problem, solve(problem, "cvxpy"), "cvxpy", status)


def test_cvxpy_exception_or_nan_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    problem = ResourceProblem(**VALID_FIELDS)

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("solver crashed")

    monkeypatch.setattr(convex.cp.Problem, "solve", crash)
    _assert_fallback(problem, solve(problem, "cvxpy"), "cvxpy", "solver_error")
    monkeypatch.setattr(convex, "solve_convex", lambda p: (np.full(2, np.nan), np.full(2, np.nan), "optimal"))
    _assert_fallback(problem, solve(problem, "cvxpy"), "cvxpy", "nonfinite")


def test_a_solver_error_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    # the fallback used to report a bare "solver_error", hiding Clarabel's own reason
    problem = ResourceProblem(**VALID_FIELDS)

    def fail(*args: object, **kwargs: object) -> None:
        raise convex.cp.error.SolverError("Solver 'CLARABEL' failed. Try another solver.\nmore detail")

    monkeypatch.setattr(convex.cp.Problem, "solve", fail)
    allocation = solve(problem, "cvxpy")
    assert allocation.fallback
    assert allocation.status == "solver_error: Solver 'CLARABEL' failed. Try another solver."


def test_shares_above_one_are_reported_infeasible(monkeypatch: pytest.MonkeyPatch) -> None:
    problem = ResourceProblem(**VALID_FIELDS)
    monkeypatch.setattr(convex, "solve_convex", lambda p: (np.array([0.9, 0.9]), np.array([0.5, 0.5]), "optimal"))
    _assert_fallback(problem, solve(problem, "cvxpy"), "cvxpy", "infeasible")


def test_importing_solvers_pulls_in_neither_torch_nor_gymnasium() -> None:
    code = "import sys, solvers; print('torch' in sys.modules, 'gymnasium' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]
