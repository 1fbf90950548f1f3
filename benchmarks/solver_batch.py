"""Speed of the batched solver: one ``solve_batch`` of N problems against N calls of ``solve``.

For each N of ``--sizes`` it draws N realistic problems of ``--clients`` clients (the channel and
workload of solver_speed.py), times ``solve_batch`` on the whole batch and ``solve`` on each problem
(median of ``--repeats`` runs, after a warm-up), and prints the microseconds per problem of both,
their ratio, the largest relative latency difference between the two and the batch's fallbacks
(rows left at the equal split).

    python benchmarks/solver_batch.py [--clients 10] [--sizes 1,64,256,1024] [--seed 0] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

from solver_speed import random_problem  # this folder is on the path when a benchmark runs

from solvers import ProblemBatch, solve, solve_batch


def random_batch(rng: np.random.Generator, num_problems: int, num_clients: int) -> ProblemBatch:
    """``num_problems`` of ``benchmarks/solver_speed.py``'s random problems, as one batch."""
    problems = [random_problem(rng, num_clients) for _ in range(num_problems)]
    fields = ("fixed_time_s", "upload_bits", "server_cycles", "channel_gain", "tx_power_w")
    first = problems[0]
    return ProblemBatch(*(np.stack([getattr(p, name) for p in problems]) for name in fields),
                        first.noise_psd_w_per_hz, first.bandwidth_hz, first.server_cpu_hz)


def median_seconds(run, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def benchmark_size(batch: ProblemBatch, repeats: int) -> dict[str, float]:
    problems = [batch.problem(i) for i in range(batch.num_problems)]
    batched = solve_batch(batch)  # also the warm-up
    latency = np.array([solve(problem).latency_s for problem in problems])
    return {
        "batch_s": median_seconds(lambda: solve_batch(batch), repeats) / batch.num_problems,
        "solve_s": median_seconds(lambda: [solve(problem) for problem in problems], repeats) / batch.num_problems,
        "disagreement": float(np.max(np.abs(batched.latency_s - latency) / latency)),
        "fallbacks": int(batched.fallback.sum()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=10, help="clients K of every problem")
    parser.add_argument("--sizes", default="1,64,256,1024", help="comma-separated batch sizes N")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random problems")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per size (the median is shown)")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)

    print(f"K = {args.clients}")
    print(f"{'N':>5} {'solve_batch us':>15} {'solve us':>9} {'speedup':>8} {'max rel diff':>13} {'fallbacks':>9}")
    for size in (int(n) for n in args.sizes.split(",")):
        result = benchmark_size(random_batch(rng, size, args.clients), args.repeats)
        print(
            f"{size:>5} {result['batch_s'] * 1e6:>15.1f} {result['solve_s'] * 1e6:>9.1f}"
            f" {result['solve_s'] / result['batch_s']:>7.1f}x {result['disagreement']:>13.2e} {result['fallbacks']:>9d}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
