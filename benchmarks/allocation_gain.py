"""How much the optimal allocation saves over the equal split, per scheme, on the analytic env.

    python benchmarks/allocation_gain.py [--episodes 10]

Plays the same random cuts on the same seeds with allocation="optimal" and "equal" and prints, per
scheme, the ratio of total simulated seconds, the median per-round ratio, and how often (and by how
much at worst) the optimal round is longer than the equal one. The allocation minimises each scheme's
allocated stage; the once-per-round model upload reuses its shares (docs/design.md).
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np

import sfl_env  # noqa: F401  (registers the ids)
from sfl_env.schemes import SCHEMES


def round_seconds(scheme: str, allocation: str, episodes: int) -> np.ndarray:
    env = gym.make("SFLEnvAnalytic-v0", scheme=scheme, allocation=allocation, max_rounds=60, target_accuracy=0.999)
    rng = np.random.default_rng(5)
    seconds = []
    for episode in range(episodes):
        env.reset(seed=episode)
        for _ in range(60):
            _, _, terminated, truncated, info = env.step(int(rng.integers(env.action_space.n)))
            seconds.append(info["latency_s"])
            if terminated or truncated:
                break
    return np.array(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=10)
    args = parser.parse_args()
    print(f"{'scheme':8s} {'rounds':>6s} {'total opt/equal':>15s} {'median':>7s} {'opt > equal':>11s} {'worst':>6s}")
    for scheme in SCHEMES:
        optimal, equal = (round_seconds(scheme, a, args.episodes) for a in ("optimal", "equal"))
        ratio = optimal / equal
        print(f"{scheme:8s} {len(ratio):6d} {optimal.sum() / equal.sum():15.3f} {np.median(ratio):7.3f} "
              f"{(ratio > 1 + 1e-9).mean():11.1%} {ratio.max():6.3f}")


if __name__ == "__main__":
    main()
