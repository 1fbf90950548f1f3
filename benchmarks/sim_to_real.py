"""Sim to real: does an agent trained on the twin keep its standing against a baseline on real training?

Plays a train_agent.py run's model and a baseline (default: the best fixed cut, ``cut-1``) on the same
paired seeds of the default task, on the twin (``SFLEnvAnalytic-v0``) and on real training
(``SFLEnv-v0``), and prints per seed each one's return and seconds to target, then the paired
difference (agent minus baseline) on each env with its 95 % bootstrap CI. Every finished episode is
appended to ``OUT/episodes.jsonl`` and skipped on a rerun, so an interrupted run resumes.

    python benchmarks/sim_to_real.py RUN [--baseline cut-1] [--seeds 5] [--model final] [--out sim-to-real]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

import agents
import sfl_env  # noqa: F401  (registers the ids)
from evaluation.rollout import evaluation_seeds, run_episode
from evaluation.stats import paired_difference

ENV_IDS = ("SFLEnvAnalytic-v0", "SFLEnv-v0")


def play(spec: str, env: gym.Env, seed: int, model: str) -> dict[str, float]:
    agent = agents.load(spec, env=env, model=model) if Path(spec).is_dir() else agents.make(spec, env)
    episode = run_episode(agent, env, seed)
    return {"return": episode.episode_return, "seconds_to_target": episode.seconds_to_target,
            "reached": episode.reached_target, "cuts": sorted(set(episode.cuts))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a train_agent.py run folder")
    parser.add_argument("--baseline", default="cut-1")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--model", choices=("final", "best"), default="final")
    parser.add_argument("--out", default="sim-to-real")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "episodes.jsonl"
    done = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []
    have = {(r["env_id"], r["policy"], r["seed"]) for r in done}
    model = "model" if args.model == "final" else "best_model"
    seeds = evaluation_seeds(args.seeds)
    start = time.perf_counter()
    for env_id in ENV_IDS:
        env = gym.make(env_id)
        for seed in seeds:
            for policy in (args.run, args.baseline):
                if (env_id, policy, seed) in have:
                    continue
                row = {"env_id": env_id, "policy": policy, "seed": seed} | play(policy, env, seed, model)
                with log.open("a") as file:
                    file.write(json.dumps(row) + "\n")
                done.append(row)
                print(f"{env_id} seed {seed} {policy}: return {row['return']:.2f}, "
                      f"{row['seconds_to_target']:.1f} s to target, cuts {row['cuts']}", flush=True)
        env.close()
    print(f"\n| env | seed | agent return | {args.baseline} return | agent s to target | {args.baseline} s |")
    print("|---|---|---|---|---|---|")
    for env_id in ENV_IDS:
        rows = {(r["policy"], r["seed"]): r for r in done if r["env_id"] == env_id}
        for seed in seeds:
            a, b = rows[args.run, seed], rows[args.baseline, seed]
            print(f"| {env_id} | {seed} | {a['return']:.2f} | {b['return']:.2f} | {a['seconds_to_target']:.1f} "
                  f"| {b['seconds_to_target']:.1f} |")
    for env_id in ENV_IDS:
        rows = {(r["policy"], r["seed"]): r for r in done if r["env_id"] == env_id}
        diff = paired_difference([rows[args.run, s]["return"] for s in seeds],
                                 [rows[args.baseline, s]["return"] for s in seeds])
        print(f"\n{env_id}: agent - {args.baseline}: {diff['mean']:+.2f} [{diff['low']:+.2f}, {diff['high']:+.2f}], "
              f"P(agent ahead) {diff['p_improvement']:.2f}")
    print(f"\n({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
