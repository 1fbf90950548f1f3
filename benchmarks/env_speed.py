"""Speed of the environment.

1. ``SFLEnvAnalytic-v0``: steps per second of one process, K = 10 (target >= 2000).
2. ``SFLEnv-v0``: step wall time divided by (round time + solve time) measured inside the same steps,
   i.e. how much the env adds around real training and the solver (target <= 1.2).

    python benchmarks/env_speed.py [--steps 2000] [--repeats 5] [--real-steps 40]
"""

from __future__ import annotations

import argparse
import statistics
import time

import gymnasium as gym

import sfl_env  # noqa: F401  (registers the ids)


def analytic_steps_per_second(steps: int, repeats: int) -> list[float]:
    """Steps per second of ``repeats`` consecutive timed blocks of ``steps`` steps (after a warm-up)."""
    env = gym.make("SFLEnvAnalytic-v0", max_rounds=10**9).unwrapped
    env.reset(seed=0)
    for i in range(200):  # warm-up
        env.step(i % env.action_space.n)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(steps):
            env.step(i % env.action_space.n)
        rates.append(steps / (time.perf_counter() - start))
    return rates


def real_overhead(steps: int) -> tuple[float, float, float]:
    env = gym.make("SFLEnv-v0", max_rounds=10**9).unwrapped
    env.reset(seed=0)
    env.step(0)
    step_s, inner_s = [], []
    for i in range(steps):
        start = time.perf_counter()
        env.step(i % env.action_space.n)
        step_s.append(time.perf_counter() - start)
        inner_s.append(env.timings["round_s"] + env.timings["solve_s"])
    return sum(step_s) / sum(inner_s), statistics.median(step_s), statistics.median(inner_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2000, help="analytic steps per timed block")
    parser.add_argument("--repeats", type=int, default=5, help="timed blocks; the median is the figure")
    parser.add_argument("--real-steps", type=int, default=40)
    args = parser.parse_args()
    rates = analytic_steps_per_second(args.steps, args.repeats)
    rate = statistics.median(rates)
    print(f"SFLEnvAnalytic-v0: {rate:.0f} steps/s, median of {len(rates)} blocks of {args.steps} steps "
          f"(range {min(rates):.0f}-{max(rates):.0f}; target >= 2000): {'met' if rate >= 2000 else 'NOT met'}")
    ratio, step, inner = real_overhead(args.real_steps)
    print(f"SFLEnv-v0: median step {step * 1e3:.1f} ms, median round + solve {inner * 1e3:.1f} ms, "
          f"ratio {ratio:.3f} (target <= 1.2): {'met' if ratio <= 1.2 else 'NOT met'}")


if __name__ == "__main__":
    main()
