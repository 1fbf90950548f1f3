"""Play one episode with several agents on the same seed and print them side by side, round by round.

    python -m evaluation.compare runs/ddqn__SFLEnvAnalytic-v0__0 fixed-shallowest --env-id SFLEnv-v0
    python -m evaluation.compare oracle greedy-latency random --env-kwargs rho=0.3

Each agent is a baseline name or a train_agent.py run folder (its validated best model). Every agent
gets its own env built from the same id, keywords and seed, so they face the same channels and data.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import gymnasium as gym

import sfl_env  # noqa: F401  (registers the ids)
from agents import RUN_CONFIG, Agent, has_model, load, make
from sfl_env.config import parse_overrides

from .rollout import Episode, run_episode


def load_agent(spec: str, env: gym.Env) -> Agent:
    """A baseline by name, or a run folder's validated best model (its final model if none was kept)."""
    folder = Path(spec)
    if not (folder / RUN_CONFIG).is_file():
        return make(spec, env)
    return load(folder, env=env, model="best_model" if has_model(folder, "best_model") else "model")


def side_by_side(names: list[str], episodes: list[Episode], every: int = 5) -> str:
    """The episodes as columns, one line every ``every`` rounds (and the last), then a line per agent."""
    width = 26
    header = f"{'round':>5} " + " ".join(f"{name[-width:]:>{width}}" for name in names)
    lines = [header, f"{'':>5} " + " ".join(f"{'cut  acc   latency s':>{width}}" for _ in names)]
    rounds = max(e.rounds for e in episodes)
    for t in range(rounds):
        if (t + 1) % every and t + 1 != rounds:
            continue
        cells = []
        for e in episodes:
            if t < e.rounds:
                accuracy = next((a for a in reversed(e.accuracy[: t + 1]) if not math.isnan(a)), math.nan)
                cells.append(f"{e.cuts[t]:>3} {accuracy:5.3f} {sum(e.latency_s[: t + 1]):9.2f}")
            else:
                cells.append("done")
        lines.append(f"{t + 1:>5} " + " ".join(f"{c:>{width}}" for c in cells))
    lines.append("")
    for name, e in zip(names, episodes):
        target = (f"target at round {e.rounds_to_target:.0f} after {e.seconds_to_target:.2f} s" if e.reached_target
                  else f"target not reached (episode end: {e.episode_end or 'unknown'})")
        lines.append(f"{name}: return {e.episode_return:.3f}, final accuracy {e.final_accuracy:.3f}, {target}, "
                     f"{e.total_latency_s:.2f} s simulated, {(e.bits_up + e.bits_down) / 1e6:.1f} Mbit")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("agents", nargs="+", help="baseline names and/or train_agent.py run folders")
    parser.add_argument("--env-id", default="SFLEnv-v0")
    parser.add_argument("--env-kwargs", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        kwargs = parse_overrides(args.env_kwargs)
    except ValueError as error:
        parser.error(str(error))
    episodes = []
    for spec in args.agents:
        try:
            env = gym.make(args.env_id, **kwargs)
            agent = load_agent(spec, env)
        except (ValueError, FileNotFoundError, gym.error.Error) as error:
            parser.error(f"{spec}: {error}")
        episodes.append(run_episode(agent, env, args.seed))
        env.close()
    print(f"{args.env_id} {kwargs or ''} seed {args.seed}")
    print(side_by_side(args.agents, episodes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
