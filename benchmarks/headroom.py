"""Headroom of each task: does the cut decision matter, and does planning beat the one-round oracle?

For every task's analytic id, plays random, every fixed cut, greedy latency, the one-round oracle and
the planner on the same ``--seeds`` test seeds (paired: the same channels, data and noise for each)
and prints, per task, the table of benchmark_validity.md sections 1-2:

- per policy: mean return, reach rate, mean simulated seconds of the episode (failures included) and
  median seconds to target of the episodes that reached it;
- the share of the random-to-planner gap that the best fixed cut closes;
- the planner's paired return difference to the best fixed cut and to the oracle (mean and 95 %
  bootstrap CI), and its time saving over each on the seeds where both reached the target;
- how often the oracle's cut differs from the best fixed cut; the share of an episode's simulated
  time that its slowest round holds (median over the best fixed cut's episodes);
- whether failing loses: every failed episode returns less than every successful one;

and where the paper's per-round reward leads: the cuts its one-round oracle picks, and their time.

    python benchmarks/headroom.py [--tasks default,dynamic,budget] [--preset shapes] [--seeds 20]
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np

import agents
import sfl_env
from evaluation.rollout import evaluation_seeds, run_episode
from evaluation.stats import paired_difference


def analytic_id(task: str) -> str:
    return next(i for i, kw in sfl_env.TASK_IDS.items() if kw["task"] == task and kw.get("training") == "analytic")


def play_all(task: str, preset: str, seeds: list[int]) -> dict[str, list]:
    env = gym.make(analytic_id(task), preset=preset)
    names = ["random", *(f"cut-{c}" for c in range(1, env.action_space.n + 1)), "greedy-latency", "oracle", "planner"]
    return {name: [run_episode(agents.make(name, env, seed=0), env, seed) for seed in seeds] for name in names}


def time_saving(a: list, b: list) -> tuple[float, int]:
    """1 - (a's seconds to target) / (b's), summed over the seeds where both reached it, and their count."""
    both = [(x.seconds_to_target, y.seconds_to_target) for x, y in zip(a, b) if x.reached_target and y.reached_target]
    if not both:
        return float("nan"), 0
    mine, theirs = np.sum(both, axis=0)
    return 1.0 - mine / theirs, len(both)


def report(task: str, episodes: dict[str, list]) -> str:
    mean = {name: float(np.mean([e.episode_return for e in eps])) for name, eps in episodes.items()}
    fixed = max((n for n in episodes if n.startswith("cut-")), key=mean.get)
    returns = {name: [e.episode_return for e in eps] for name, eps in episodes.items()}
    lines = [f"## {task} ({analytic_id(task)}), {len(episodes['random'])} paired seeds", "",
             "| policy | mean return | reached | mean s (all episodes) | median s to target |", "|---|---|---|---|---|"]
    for name, eps in episodes.items():
        reached = [e.seconds_to_target for e in eps if e.reached_target]
        lines.append(f"| {name}{' (best fixed)' if name == fixed else ''} | {mean[name]:.2f} "
                     f"| {100 * len(reached) / len(eps):.0f}% | {np.mean([e.total_latency_s for e in eps]):.1f} "
                     f"| {np.median(reached) if reached else float('nan'):.1f} |")
    gap = mean["planner"] - mean["random"]
    closed = (mean[fixed] - mean["random"]) / gap if gap else float("nan")
    oracle_cuts = np.concatenate([e.cuts for e in episodes["oracle"]])
    leaves = float(np.mean(oracle_cuts != int(fixed[4:])))
    worst = float(np.median([max(e.latency_s) / e.total_latency_s for e in episodes[fixed]]))
    fails = [e.episode_return for eps in episodes.values() for e in eps if not e.reached_target]
    wins = [e.episode_return for eps in episodes.values() for e in eps if e.reached_target]
    lines += ["", f"- best fixed cut: {fixed}; it closes {100 * closed:.1f} % of the random-to-planner gap"]
    for other in (fixed, "oracle"):
        d = paired_difference(returns["planner"], returns[other])
        saving, n = time_saving(episodes["planner"], episodes[other])
        lines.append(f"- planner - {other}: return {d['mean']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}], "
                     f"P(planner ahead) {d['p_improvement']:.2f}; {100 * saving:.1f} % less time to target "
                     f"on the {n} seeds where both reached it")
    lines += [f"- the oracle's cut differs from {fixed} in {100 * leaves:.1f} % of its rounds",
              f"- the slowest round holds {100 * worst:.1f} % of an episode's time (median, {fixed})",
              f"- failing loses: {'yes' if not fails or not wins or max(fails) < min(wins) else 'NO'} "
              f"({len(fails)} failed episodes, best {max(fails) if fails else float('nan'):.2f}; "
              f"{len(wins)} successes, worst {min(wins) if wins else float('nan'):.2f})", ""]
    return "\n".join(lines)


def paper_objective(preset: str, seeds: list[int]) -> str:
    """Where the paper's per-round objective leads on the default task: the cuts its one-round oracle
    picks (convergence term calibrated to the twin's measured slowdown) and their time to target."""
    lines = ["## The paper's per-round reward on the default task", "",
             "The one-round oracle of `reward=\"paper\"`, `convergence=\"calibrated\"` (Gamma(l) = 1 / speed(l), "
             "normalised), played to the target; time to accuracy's own oracle for comparison.", "",
             "| objective | cuts played | reached | median s to target |", "|---|---|---|---|"]
    for label, kwargs in [("time_to_accuracy", {}), *((f"paper, rho={rho}", {"reward": "paper", "rho": rho,
                                                                               "convergence": "calibrated"})
                                                     for rho in (0.2, 0.5, 0.8))]:
        env = gym.make("SFLEnvAnalytic-v0", preset=preset, **kwargs)
        episodes = [run_episode(agents.make("oracle", env), env, seed) for seed in seeds]
        cuts = np.concatenate([e.cuts for e in episodes])
        share = ", ".join(f"cut {c}: {100 * np.mean(cuts == c):.0f} %" for c in np.unique(cuts))
        reached = [e.seconds_to_target for e in episodes if e.reached_target]
        lines.append(f"| {label} | {share} | {100 * len(reached) / len(episodes):.0f}% "
                     f"| {np.median(reached) if reached else float('nan'):.1f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default="default,dynamic,budget")
    parser.add_argument("--preset", default="shapes")
    parser.add_argument("--seeds", type=int, default=20)
    args = parser.parse_args()
    seeds = evaluation_seeds(args.seeds)
    print(f"# Headroom of the tasks on preset {args.preset}\n")
    for task in args.tasks.split(","):
        start = time.perf_counter()
        print(report(task, play_all(task, args.preset, seeds)))
        print(f"({time.perf_counter() - start:.0f} s)\n", flush=True)
    print(paper_objective(args.preset, seeds))


if __name__ == "__main__":
    main()
