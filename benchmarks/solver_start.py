"""Cost of the exact solver's start settings on an analytic task's own allocation problems.

The exact solver starts Newton's method from a model re-solved ``_MODEL_ROUNDS`` times, each time to a
relative ``_MODEL_ROOT_TOLERANCE`` in its gap (``solvers/exact.py``). Both only bring the start near the
optimum, so they trade the start's cost against Newton's iterations. This script collects the problems
``--env-id``'s native vector env prices in ``--steps`` steps of ``--num-envs`` episodes (random allowed
cuts), then solves them with the compiled solver on one thread for each setting of the grid, and prints
the microseconds per problem (best of ``--repeats``) and the largest relative latency difference from the
default settings (every setting converges to the solver's tolerance, so the differences are round-off).

    python benchmarks/solver_start.py [--env-id SFLEnvAnalytic-v0] [--num-envs 256] [--steps 8]
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np

import sfl_env  # noqa: F401  (registers the ids)
from sfl_env.latency import allocation_problem_batch
from solvers import ROUND_OFF, ProblemBatch, newton
from solvers.batch import iteration_latency_batch

GRID = [(rounds, tolerance) for rounds in (2, 3, 4) for tolerance in (1e-8, 1e-4, 1e-2)]


def collect_problems(env_id: str, num_envs: int, steps: int) -> ProblemBatch:
    """The allocation problems of every round the vector env prices in ``steps`` steps, as one batch."""
    env = gym.make_vec(env_id, num_envs=num_envs)
    pricer, config, seen = env.unwrapped.pricer, env.unwrapped.config, []
    price_batch = pricer.price_batch

    def recording(costs, states, *args, **kwargs):
        seen.append(allocation_problem_batch(costs, states.uplink_gain, states.client_cpu_hz,
                                             states.client_cycles_per_flop, config.wireless, config.compute))
        return price_batch(costs, states, *args, **kwargs)

    pricer.price_batch = recording
    rng, (_, infos) = np.random.default_rng(0), env.reset(seed=0)
    for _ in range(steps):
        actions = np.array([rng.choice(np.flatnonzero(mask)) for mask in infos["action_mask"]])
        _, _, _, _, infos = env.step(actions)
    env.close()
    fields = ("fixed_time_s", "upload_bits", "server_cycles", "channel_gain", "tx_power_w")
    first = seen[0]
    return ProblemBatch(*(np.concatenate([getattr(batch, name) for batch in seen]) for name in fields),
                        first.noise_psd_w_per_hz, first.bandwidth_hz, first.server_cpu_hz)


def solve(batch: ProblemBatch, settings: newton.Settings) -> tuple[float, np.ndarray]:
    """Seconds of one compiled solve of the batch on this thread, and each row's latency (NaN: unsolved)."""
    n, k = batch.num_problems, batch.num_clients
    solved, beta, phi = np.zeros(n, dtype=bool), np.full((n, k), 1.0 / k), np.full((n, k), 1.0 / k)
    start = time.perf_counter()
    newton.solve_rows(batch.fixed_time_s, batch.upload_bits, batch.server_cycles, batch.full_band_snr,
                      batch.bandwidth_hz, batch.server_cpu_hz, ROUND_OFF, solved, beta, phi, settings)
    seconds = time.perf_counter() - start
    return seconds, np.where(solved, iteration_latency_batch(batch, beta, phi).max(axis=1), np.nan)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env-id", default="SFLEnvAnalytic-v0")
    parser.add_argument("--num-envs", type=int, default=256)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    for name in ("num_envs", "steps", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')}={getattr(args, name)} is invalid; allowed: an integer >= 1")
    batch = collect_problems(args.env_id, args.num_envs, args.steps)
    _, reference = solve(batch, newton.SETTINGS)  # also compiles
    print(f"{batch.num_problems} problems of {batch.num_clients} clients from {args.env_id}; default: "
          f"{newton.SETTINGS.model_rounds} rounds, tolerance {newton.SETTINGS.model_root_tolerance:g}")
    for rounds, tolerance in GRID:
        settings = newton.SETTINGS._replace(model_rounds=rounds, model_root_tolerance=tolerance)
        best, latency = min(solve(batch, settings) for _ in range(args.repeats))
        difference = np.nanmax(np.abs(latency / reference - 1.0))
        print(f"rounds {rounds}, tolerance {tolerance:g}: {best / batch.num_problems * 1e6:6.2f} us per problem, "
              f"unsolved {int(np.isnan(latency).sum())}, largest latency difference {difference:.1e}")


if __name__ == "__main__":
    main()
