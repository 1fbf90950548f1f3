"""Running an agent for whole episodes and recording what a benchmark reports about each one.

Used by ``train_agent.py`` (its validation and test episodes) and ``evaluate.py`` (the protocol), so a
number means the same thing in both.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from agents.base import Agent

EVAL_SEED_OFFSET = 1_000_000  # test episodes never share a seed with training episodes
VALIDATION_SEED_OFFSET = 500_000  # model selection during training uses its own seeds


@dataclass
class Episode:
    """One episode's outcome. Accuracy is the last evaluated test accuracy (NaN if never evaluated)."""

    seed: int
    episode_return: float = 0.0
    rounds: int = 0
    final_accuracy: float = math.nan
    reached_target: bool = False
    rounds_to_target: float = math.nan  # NaN when the target was not reached
    seconds_to_target: float = math.nan  # simulated seconds (the latency ledger), not wall time
    total_latency_s: float = 0.0
    bits_up: float = 0.0
    bits_down: float = 0.0
    privacy_violations: int = 0
    solver_fallbacks: int = 0
    diverged: bool = False
    episode_end: str = ""  # why it ended: "target", a budget, "diverged" or "max_rounds"
    cuts: list[int] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)  # per round (NaN when not evaluated)
    latency_s: list[float] = field(default_factory=list)  # per round
    bits_up_per_round: list[float] = field(default_factory=list)
    bits_down_per_round: list[float] = field(default_factory=list)

    TRACES = ("cuts", "accuracy", "latency_s", "bits_up_per_round", "bits_down_per_round")

    def summary(self) -> dict[str, Any]:
        """The scalar fields (no per-round traces)."""
        return {k: v for k, v in asdict(self).items() if k not in self.TRACES}

    def traces(self) -> dict[str, list]:
        """The per-round traces."""
        return {k: list(getattr(self, k)) for k in self.TRACES}


def run_episode(agent: Agent, env: gym.Env, seed: int) -> Episode:
    """Plays one episode with ``agent`` (bound to ``env``) from ``reset(seed=seed)``.

    The target counts as reached only when the env says the episode ended there
    (``info["episode_end"] == "target"``): an episode also terminates when a budget runs out or a
    round diverges.
    """
    agent.bind(env)
    obs, info = env.reset(seed=seed)
    record = Episode(seed=seed)
    done = False
    while not done:
        action = agent.predict(obs, action_mask=info.get("action_mask"))
        obs, reward, terminated, truncated, info = env.step(action)
        done = terminated or truncated
        record.episode_return += float(reward)
        record.rounds += 1
        accuracy = float(info.get("test_accuracy", math.nan))
        record.cuts.append(int(info.get("cut", action)))
        record.accuracy.append(accuracy)
        record.latency_s.append(float(info.get("latency_s", 0.0)))
        record.total_latency_s += record.latency_s[-1]
        record.bits_up_per_round.append(float(info.get("bits_up", 0.0)))
        record.bits_down_per_round.append(float(info.get("bits_down", 0.0)))
        record.bits_up += record.bits_up_per_round[-1]
        record.bits_down += record.bits_down_per_round[-1]
        record.privacy_violations += int(info.get("privacy", {}).get("violated", False))
        record.solver_fallbacks += int(info.get("solver", {}).get("fallback", False))
        record.diverged |= bool(info.get("diverged", False))
        if not math.isnan(accuracy):
            record.final_accuracy = accuracy
        if done:
            record.episode_end = str(info.get("episode_end") or "")
        if terminated and record.episode_end == "target":
            record.reached_target = True
            record.rounds_to_target = record.rounds
            record.seconds_to_target = record.total_latency_s
    return record


def evaluation_seeds(count: int, offset: int = 0) -> list[int]:
    """Seeds of held-out test episodes."""
    return [EVAL_SEED_OFFSET + offset + i for i in range(count)]


def validation_seeds(count: int) -> list[int]:
    """Seeds of the episodes that pick the best model during training (disjoint from the test seeds)."""
    return [VALIDATION_SEED_OFFSET + i for i in range(count)]


def play_episodes(agent: Agent, env: gym.Env, seeds: list[int]) -> list[Episode]:
    """One :func:`run_episode` per seed, in order."""
    return [run_episode(agent, env, seed) for seed in seeds]


def mean_return(episodes: list[Episode]) -> float:
    """The mean episode return of ``episodes``."""
    return float(np.mean([e.episode_return for e in episodes]))
