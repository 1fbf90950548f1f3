"""The ``summary.json`` of a training run: the final and the best model on held-out test seeds, next to
the random, oracle and planner references on the same seeds, and the normalised scores."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import agents
from sfl_env.training.calibration import is_calibrated

from .rollout import Episode, mean_return, play_episodes
from .stats import normalised_score


def run_summary(config: dict[str, Any], run: Path, eval_env: gym.Env, episodes: list[Episode],
                state: dict[str, Any], wall_s: float, reference: bool, interrupted: bool) -> dict[str, Any]:
    """The summary of the run in ``run`` whose final model played the test ``episodes``.

    The best validated model (``best_model`` in ``run``, if any) plays the same seeds. With
    ``reference``, random, the one-round oracle and (where the configuration has a twin) the planner
    play them too, and the scores are normalised between random (0) and the planner (1), or the oracle
    where there is no planner.
    """
    seeds = [e.seed for e in episodes]
    summary = {
        "agent": config["agent"], "env_id": config["env_id"], "env_kwargs": config["env_kwargs"],
        "seed": config["seed"], "steps": state["num_steps"], "total_steps": config["total_steps"],
        "wall_time_s": wall_s, "interrupted": interrupted, "eval_episodes": len(episodes), "eval_seeds": seeds,
    } | _prefixed("eval", episode_means(episodes))
    if agents.has_model(run, "best_model"):
        best = agents.load(run, model="best_model")
        summary["best_model"] = {"step": state["best_step"], "validation_return": state["best_validation_return"]} \
            | _prefixed("eval", episode_means(play_episodes(best, eval_env, seeds)))
    if reference:
        top = "planner" if is_calibrated(eval_env.unwrapped.config.system) else "oracle"
        refs = {name: mean_return(play_episodes(agents.make(name, eval_env, seed=config["seed"]), eval_env, seeds))
                for name in ("random", "oracle", *(("planner",) if top == "planner" else ()))}
        summary |= {f"{name}_mean_return": value for name, value in refs.items()} | {
            "score_reference": top,
            "normalised_score": normalised_score(summary["eval_mean_return"], refs["random"], refs[top])}
        if "best_model" in summary:
            summary["best_model"]["normalised_score"] = normalised_score(
                summary["best_model"]["eval_mean_return"], refs["random"], refs[top])
    return summary


def episode_means(episodes: list[Episode]) -> dict[str, float]:
    """Mean and std of the return, mean final accuracy (of the episodes that evaluated) and mean latency."""
    returns = [e.episode_return for e in episodes]
    accuracies = [e.final_accuracy for e in episodes if not math.isnan(e.final_accuracy)]
    return {"mean_return": float(np.mean(returns)), "std_return": float(np.std(returns)),
            "mean_final_accuracy": float(np.mean(accuracies)) if accuracies else math.nan,
            "mean_latency_s": float(np.mean([e.total_latency_s for e in episodes]))}


def _prefixed(prefix: str, values: dict[str, float]) -> dict[str, float]:
    return {f"{prefix}_{key}": value for key, value in values.items()}
