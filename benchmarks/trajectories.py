"""Record analytic trajectories, or compare them with a recording: the check a refactor of the env runs.

Every analytic id, every scheme, the paper's reward, the equal split and the privacy penalty (12
configurations) play 150 steps of random allowed cuts (any cut under the penalty) from fixed seeds,
resets included. ``record`` writes what each step returned (observation, reward, ends and the info's
numbers) as JSON, floats exactly (``repr`` round-trips); ``compare`` plays them again and prints, per
configuration, whether every value agrees within ``--rtol`` (0: to the bit) and the largest relative
difference. Observations, masks, cuts and ends are compared exactly whatever ``--rtol``. The phase
split of a round (``info["latency"]``) is left out unless ``--phases``: under the optimal allocation
the allocated stage's chains are equal, so its straggler is decided by round-off.

    python benchmarks/trajectories.py record before.json
    python benchmarks/trajectories.py compare before.json [--rtol 1e-12] [--phases]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import sfl_env

STEPS = 150
CONFIGURATIONS: list[tuple[str, dict[str, Any]]] = [
    *((env_id, {}) for env_id, kwargs in sfl_env.TASK_IDS.items() if kwargs.get("training") == "analytic"),
    *(("SFLEnvAnalytic-v0", {"scheme": scheme}) for scheme in ("sfl-v1", "sfl-v2", "psl", "fl")),
    ("SFLEnvAnalytic-v0", {"reward": "paper"}),
    ("SFLEnvAnalytic-v0", {"allocation": "equal"}),
    ("SFLEnvAnalytic-v0", {"privacy": "penalty"}),
]
INFO_NUMBERS = ("cut", "latency_s", "bits_up", "bits_down", "train_loss", "test_accuracy", "energy_j", "leakage",
                "elapsed_s", "budget_left", "episode_end", "terminal_cost", "allocation", "reward_terms")
EXACT = ("obs", "terminated", "truncated", "mask", "cut", "episode_end")


def plain(value: Any) -> Any:
    """``value`` as JSON data: arrays as lists, numpy scalars as Python's."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (np.ndarray, list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def play(env_id: str, kwargs: dict[str, Any]) -> list[dict[str, Any]]:
    """One configuration's steps (resets included) as JSON data."""
    env = gym.make(env_id, **kwargs)
    rng = np.random.default_rng(1)
    obs, info = env.reset(seed=3)
    steps = [{"obs": plain(obs), "mask": plain(info["action_mask"])}]
    for _ in range(STEPS):
        mask = info["action_mask"]
        any_cut = kwargs.get("privacy") == "penalty"
        action = int(rng.integers(mask.size)) if any_cut else int(rng.choice(np.flatnonzero(mask)))
        obs, reward, terminated, truncated, info = env.step(action)
        steps.append({"obs": plain(obs), "reward": reward, "terminated": terminated, "truncated": truncated,
                      "latency": plain(info["latency"]), **{key: plain(info[key]) for key in INFO_NUMBERS}})
        if terminated or truncated:
            obs, info = env.reset()
            steps.append({"obs": plain(obs), "mask": plain(info["action_mask"])})
    env.close()
    return steps


def differences(expected: Any, actual: Any, rtol: float, path: str) -> tuple[list[str], float]:
    """The places where ``actual`` departs from ``expected`` (beyond ``rtol`` for floats), and the largest
    relative difference of any float."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        found, worst = ([] if expected.keys() == actual.keys() else [f"{path}: keys differ"]), 0.0
        for key in expected.keys() & actual.keys():
            exact = key in EXACT
            more, largest = differences(expected[key], actual[key], 0.0 if exact else rtol, f"{path}.{key}")
            found, worst = found + more, max(worst, largest)
        return found, worst
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return [f"{path}: {len(expected)} values recorded, {len(actual)} now"], 0.0
        found, worst = [], 0.0
        for i, (a, b) in enumerate(zip(expected, actual)):
            more, largest = differences(a, b, rtol, f"{path}[{i}]")
            found, worst = found + more, max(worst, largest)
        return found, worst
    if isinstance(expected, float) and isinstance(actual, float):
        if expected == actual or (math.isnan(expected) and math.isnan(actual)):
            return [], 0.0
        relative = abs(expected - actual) / max(abs(expected), abs(actual))
        return ([] if relative <= rtol else [f"{path}: {expected!r} recorded, {actual!r} now"]), relative
    return ([] if expected == actual else [f"{path}: {expected!r} recorded, {actual!r} now"]), 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("record", "compare"))
    parser.add_argument("path", type=Path, help="the recording (JSON)")
    parser.add_argument("--rtol", type=float, default=0.0, help="allowed relative difference of a float (0: exact)")
    parser.add_argument("--phases", action="store_true", help="also compare each round's phase split")
    args = parser.parse_args()
    if args.mode == "compare" and not args.path.is_file():
        parser.error(f"{args.path} does not exist; record it first with: record {args.path}")
    played = {f"{env_id} {json.dumps(kwargs, sort_keys=True)}": play(env_id, kwargs) for env_id, kwargs in CONFIGURATIONS}
    if args.mode == "record":
        args.path.write_text(json.dumps(played))
        print(f"recorded {len(played)} configurations, {STEPS} steps each, in {args.path}")
        return 0
    recorded = json.loads(args.path.read_text())
    failed = 0
    for name, steps in recorded.items():
        now = played.get(name)
        if now is None:
            print(f"{name}: not played now")
            failed += 1
            continue
        if not args.phases:
            steps, now = ([{k: v for k, v in step.items() if k != "latency"} for step in run] for run in (steps, now))
        found, worst = differences(steps, now, args.rtol, name)
        failed += bool(found)
        print(f"{'DIFFERS' if found else 'same   '} {name}: largest relative difference {worst:.1e}"
              + (f"; first: {found[0]}" if found else ""))
    print(f"{len(recorded) - failed} of {len(recorded)} configurations agree (rtol {args.rtol:g})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
