"""Speed and agreement of the exact solver against re-solving the compiled cvxpy problem.

For K = 10, 100 and 1000 clients it solves random realistic instances with both methods
(after one warm-up solve per method that also compiles the cvxpy problem) and prints the
median solve times, their ratio and the largest relative latency disagreement, then whether
the targets are met: exact at least 5x faster than cvxpy at K = 10 and under 2 ms at K = 100.

    python benchmarks/solver_speed.py [--repeats N] [--seed S]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

from solvers import ResourceProblem, solve

DEFAULT_INSTANCES = {10: 50, 100: 20, 1000: 5}
SPEEDUP_TARGET_K10 = 5.0
EXACT_TARGET_K100_S = 2e-3


def random_problem(rng: np.random.Generator, num_clients: int) -> ResourceProblem:
    """Path loss 128.1 + 37.6 log10(d_km) dB, d ~ U[0.05, 0.5] km, Rayleigh fading, p = 0.2 W,
    N0 = -174 dBm/Hz, B = 10 MHz, F = 100 GHz, D ~ U[0.1, 5] Mbit, C ~ U[1e7, 1e9], a ~ U[0, 0.05] s."""
    path_loss_db = 128.1 + 37.6 * np.log10(rng.uniform(0.05, 0.5, num_clients))
    return ResourceProblem(
        fixed_time_s=rng.uniform(0.0, 0.05, num_clients),
        upload_bits=rng.uniform(0.1e6, 5e6, num_clients),
        server_cycles=rng.uniform(1e7, 1e9, num_clients),
        channel_gain=10 ** (-path_loss_db / 10) * rng.exponential(1.0, num_clients),
        tx_power_w=0.2,
        noise_psd_w_per_hz=10 ** (-174 / 10) * 1e-3,
        bandwidth_hz=10e6,
        server_cpu_hz=100e9,
    )


def timed_solve(problem: ResourceProblem, method: str) -> tuple[float, float, bool]:
    """(wall time of solve, latency, whether it fell back)."""
    start = time.perf_counter()
    allocation = solve(problem, method)
    return time.perf_counter() - start, allocation.latency_s, allocation.fallback


def benchmark_size(num_clients: int, instances: int, rng: np.random.Generator) -> dict[str, float]:
    problems = [random_problem(rng, num_clients) for _ in range(instances)]
    for method in ("exact", "cvxpy"):
        solve(problems[0], method)  # warm-up; compiles the cvxpy problem for this K
    exact_runs = [timed_solve(problem, "exact") for problem in problems]
    cvxpy_runs = [timed_solve(problem, "cvxpy") for problem in problems]
    disagreement = max(abs(e[1] - c[1]) / c[1] for e, c in zip(exact_runs, cvxpy_runs))
    return {
        "exact_s": statistics.median(run[0] for run in exact_runs),
        "cvxpy_s": statistics.median(run[0] for run in cvxpy_runs),
        "disagreement": disagreement,
        "fallbacks": sum(run[2] for run in exact_runs + cvxpy_runs),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeats", type=int, default=None,
        help="random instances per K (default: 50, 20 and 5 for K = 10, 100 and 1000)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="seed of the random instances")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)

    results = {}
    print(f"{'K':>5} {'n':>3} {'exact ms':>9} {'cvxpy ms':>9} {'speedup':>8} {'max rel diff':>13} {'fallbacks':>9}")
    for num_clients, default_instances in DEFAULT_INSTANCES.items():
        instances = args.repeats or default_instances
        result = results[num_clients] = benchmark_size(num_clients, instances, rng)
        print(
            f"{num_clients:>5} {instances:>3} {result['exact_s'] * 1e3:>9.3f} {result['cvxpy_s'] * 1e3:>9.2f}"
            f" {result['cvxpy_s'] / result['exact_s']:>7.1f}x {result['disagreement']:>13.2e}"
            f" {result['fallbacks']:>9d}"
        )

    speedup = results[10]["cvxpy_s"] / results[10]["exact_s"]
    exact_k100 = results[100]["exact_s"]
    met = speedup >= SPEEDUP_TARGET_K10 and exact_k100 < EXACT_TARGET_K100_S
    print(
        f"targets {'MET' if met else 'NOT MET'}: exact {speedup:.1f}x faster than cvxpy at K=10 "
        f"(target >= {SPEEDUP_TARGET_K10:g}x), exact median {exact_k100 * 1e3:.3f} ms at K=100 "
        f"(target < {EXACT_TARGET_K100_S * 1e3:g} ms)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
