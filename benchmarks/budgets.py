"""The budgets of a preset's tasks, measured on its twin by the rule in ``sfl_env.config.PRESET_BUDGETS``.

Plays every fixed cut for ``--seeds`` episodes of ``SFLEnvAnalytic-v0`` without budgets and prints, per
cut, the median simulated seconds, leakage (sum over rounds of the cut's distance correlation) and
largest per-client energy spent to reach the target; then the budgets the rule gives:

- time budget = 3 x the median seconds of the fastest fixed cut (every task);
- leakage and energy budgets (the budget task) = what the fixed cut that spends the least of each (by
  median) needs in 90 % of its episodes: its 90th percentile. Each budget alone lets one fixed cut
  through nine times in ten; together they bind where that cut differs.

    python benchmarks/budgets.py --preset shapes [--seeds 20]
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np

import sfl_env  # noqa: F401  (registers the ids)
from sfl_env.config import PRESETS

TIME_FACTOR, RESOURCE_QUANTILE = 3.0, 0.9


def fixed_cut_spending(preset: str, seeds: int) -> dict[int, dict[str, float]]:
    """Per cut index: median and 90th percentile of the seconds, leakage and max-client energy to the
    target, and the reach rate."""
    env = gym.make("SFLEnvAnalytic-v0", preset=preset, time_budget_s=None, max_rounds=5000).unwrapped
    table = {}
    for action in range(env.action_space.n):
        spent = {"seconds": [], "leakage": [], "energy_j": []}
        reached = 0
        for seed in range(seeds):
            env.reset(seed=seed)
            seconds, leakage, energy, done = 0.0, 0.0, np.zeros(env.num_clients), False
            while not done:
                _, _, terminated, truncated, info = env.step(action)
                seconds, leakage, energy = seconds + info["latency_s"], leakage + info["leakage"], energy + info["energy_j"]
                done = terminated or truncated
            reached += info["episode_end"] == "target"
            for key, value in (("seconds", seconds), ("leakage", leakage), ("energy_j", energy.max())):
                spent[key].append(value)
        table[action] = ({key: float(np.median(values)) for key, values in spent.items()}
                         | {f"{key}_q": float(np.quantile(values, RESOURCE_QUANTILE)) for key, values in spent.items()}
                         | {"reach": reached / seeds})
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="shapes")
    parser.add_argument("--seeds", type=int, default=20)
    args = parser.parse_args()
    table = fixed_cut_spending(args.preset, args.seeds)
    print(f"# {args.preset}: fixed cuts on SFLEnvAnalytic-v0 without budgets, {args.seeds} seeds\n")
    print("Median (90th percentile) spent to reach the target.\n")
    print("| cut | reached | seconds | leakage | max-client energy J |\n|---|---|---|---|---|")
    for action, row in table.items():
        print(f"| {action + 1} | {100 * row['reach']:.0f}% | {row['seconds']:.1f} ({row['seconds_q']:.1f}) "
              f"| {row['leakage']:.1f} ({row['leakage_q']:.1f}) | {row['energy_j']:.2f} ({row['energy_j_q']:.2f}) |")
    fastest = min(table, key=lambda a: table[a]["seconds"])
    print(f"\ntime_budget_s = {TIME_FACTOR:g} x {table[fastest]['seconds']:.1f} (cut {fastest + 1}) "
          f"= {TIME_FACTOR * table[fastest]['seconds']:.1f}")
    for key, option in (("leakage", "leakage_budget"), ("energy_j", "energy_budget_j")):
        least = min(table, key=lambda a: table[a][key])
        print(f"{option} = 90th percentile of cut {least + 1} = {table[least][key + '_q']:.2f}")


if __name__ == "__main__":
    main()
