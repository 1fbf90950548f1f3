"""Speed of the environment.

1. As a training loop sees it: whole episodes through ``gym.make`` (its wrappers, resets included),
   random allowed actions, in one process: ``CartPole-v1``'s steps per second, ``SFLEnvAnalytic-v0``'s
   (K = 10), their ratio, and what one analytic reset costs in steps (issue target: >= 3,000 steps/s
   and a reset of at most 5 steps).
2. The native vector env, ``gym.make_vec("SFLEnvAnalytic-v0", num_envs=N)``: aggregate steps per second
   over whole episodes (autoresets included, random allowed actions) at each ``--num-envs`` N (issue
   target: the best >= CartPole-v1's single-env rate of the same run; moonshot 5x).
3. ``SFLEnvAnalytic-v0`` without resets (``max_rounds=10**9``): steps per second of the step alone.
4. ``SFLEnv-v0``: step wall time divided by (round time + solve time) measured inside the same steps,
   i.e. how much the env adds around real training and the solver (target <= 1.2).

    python benchmarks/env_speed.py [--steps 2000] [--repeats 5] [--num-envs 1,64,256,1024] [--real-steps 40]
"""

from __future__ import annotations

import argparse
import statistics
import time

import gymnasium as gym
import numpy as np

import sfl_env  # noqa: F401  (registers the ids)


def episodes_steps_per_second(env_id: str, steps: int, repeats: int) -> tuple[list[float], float]:
    """Steps per second over whole episodes through ``gym.make`` (resets included), of ``repeats``
    blocks of ``steps`` steps after a warm-up, and the median seconds of one reset."""
    env = gym.make(env_id)
    rng = np.random.default_rng(0)
    resets: list[float] = []

    def run(n: int, seed: int) -> None:
        start = time.perf_counter()
        _, info = env.reset(seed=seed)
        resets.append(time.perf_counter() - start)
        for _ in range(n):
            mask = info.get("action_mask")
            action = int(rng.choice(np.flatnonzero(mask))) if mask is not None else int(env.action_space.sample())
            _, _, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                start = time.perf_counter()
                _, info = env.reset()
                resets.append(time.perf_counter() - start)

    env.action_space.seed(0)
    run(200, 0)  # warm-up
    rates = []
    for block in range(repeats):
        start = time.perf_counter()
        run(steps, block + 1)
        rates.append(steps / (time.perf_counter() - start))
    env.close()
    return rates, statistics.median(resets)


def vector_steps_per_second(num_envs: int, steps: int, repeats: int) -> list[float]:
    """Aggregate steps per second of the native vector env over ``repeats`` blocks of at least ``steps``
    episode steps and 10 vector steps (autoresets included), after a warm-up of 20 to 200 vector steps
    (about 20,000 episode steps where N >= 100), so that the episodes, begun together, end at their own times."""
    env = gym.make_vec("SFLEnvAnalytic-v0", num_envs=num_envs)
    rng = np.random.default_rng(0)
    _, infos = env.reset(seed=0)
    cuts = env.single_action_space.n

    def run(vector_steps: int) -> None:
        nonlocal infos
        for _ in range(vector_steps):
            masks = infos["action_mask"]
            # A random allowed cut per episode: the first allowed one at or after a uniform draw.
            draw = rng.integers(0, cuts, num_envs)
            order = (np.arange(cuts)[None, :] - draw[:, None]) % cuts
            actions = (np.argmin(np.where(masks, order, cuts), axis=1) + draw) % cuts
            _, _, _, _, infos = env.step(actions)

    run(min(200, max(20, 20_000 // num_envs)))  # warm-up
    vector_steps = max(10, steps // num_envs)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(vector_steps)
        rates.append(vector_steps * num_envs / (time.perf_counter() - start))
    env.close()
    return rates


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
    parser.add_argument("--num-envs", default="1,64,256,1024", help="vector env sizes, comma-separated")
    parser.add_argument("--real-steps", type=int, default=40)
    args = parser.parse_args()
    cartpole, _ = episodes_steps_per_second("CartPole-v1", 20 * args.steps, args.repeats)
    analytic, reset_s = episodes_steps_per_second("SFLEnvAnalytic-v0", args.steps, args.repeats)
    cartpole_rate, analytic_rate = statistics.median(cartpole), statistics.median(analytic)
    reset_steps = reset_s * analytic_rate
    print(f"CartPole-v1 through gym.make, resets included: {cartpole_rate:.0f} steps/s")
    print(f"SFLEnvAnalytic-v0 through gym.make, resets included: {analytic_rate:.0f} steps/s "
          f"(1/{cartpole_rate / analytic_rate:.0f} of CartPole-v1; target >= 3000): "
          f"{'met' if analytic_rate >= 3000 else 'NOT met'}")
    print(f"one SFLEnvAnalytic-v0 reset: {reset_s * 1e3:.2f} ms = {reset_steps:.1f} steps (target <= 5): "
          f"{'met' if reset_steps <= 5 else 'NOT met'}")
    best = 0.0
    for num_envs in (int(n) for n in args.num_envs.split(",")):
        rate = statistics.median(vector_steps_per_second(num_envs, max(args.steps, 20 * num_envs), args.repeats))
        best = max(best, rate)
        print(f"native vector env, N = {num_envs}: {rate:.0f} steps/s ({rate / cartpole_rate:.2f} x CartPole-v1)")
    print(f"best native vector rate: {best:.0f} steps/s = {best / cartpole_rate:.2f} x CartPole-v1 (target >= 1, "
          f"moonshot 5): {'met' if best >= cartpole_rate else 'NOT met'}")
    rates = analytic_steps_per_second(args.steps, args.repeats)
    rate = statistics.median(rates)
    print(f"SFLEnvAnalytic-v0 without resets: {rate:.0f} steps/s, median of {len(rates)} blocks of {args.steps} steps "
          f"(range {min(rates):.0f}-{max(rates):.0f}; target >= 2000): {'met' if rate >= 2000 else 'NOT met'}")
    ratio, step, inner = real_overhead(args.real_steps)
    print(f"SFLEnv-v0: median step {step * 1e3:.1f} ms, median round + solve {inner * 1e3:.1f} ms, "
          f"ratio {ratio:.3f} (target <= 1.2): {'met' if ratio <= 1.2 else 'NOT met'}")


if __name__ == "__main__":
    main()
