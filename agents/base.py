"""The agent protocol: anything that picks a cut, so that training and evaluation treat every agent alike.

An agent maps an observation (and the privacy mask) to an action index. Learning agents train on a
Stable-Baselines3 ``VecEnv`` (one process or a subprocess pool, the same object for our DDQN and for
the SB3 algorithms); baselines learn nothing. Agents reach the environment only through its public
API: ``reset``/``step``, ``action_masks()``, ``cut_preview()`` and ``spec``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np


class Callback:
    """Hooks a learning agent calls; ``train_agent.py`` uses them for metrics, checkpoints and Ctrl-C.

    ``on_step`` runs after every vectorised env step with the batch's rewards, dones and infos; a
    ``False`` return stops learning cleanly after that step. ``on_metrics`` receives the agent's own
    training scalars (losses, epsilon, SB3's logger values).
    """

    def on_training_start(self, agent: Agent) -> None:
        pass

    def on_step(self, agent: Agent, num_steps: int, rewards: np.ndarray, dones: np.ndarray,
                infos: list[dict]) -> bool:
        return True

    def on_metrics(self, agent: Agent, num_steps: int, metrics: dict[str, float]) -> None:
        pass

    def on_training_end(self, agent: Agent) -> None:
        pass


class Agent(ABC):
    """Picks a cut index each round.

    ``predict`` always returns an action that ``action_mask`` allows (when a mask is given).
    ``num_steps`` counts env steps learned so far; ``learn(env, total_steps)`` trains until it
    reaches ``total_steps``, so a resumed agent continues where its checkpoint stopped.
    """

    name: str = ""
    learns: bool = False

    def __init__(self) -> None:
        self.num_steps = 0
        self.env: gym.Env | None = None

    @abstractmethod
    def predict(self, obs: np.ndarray, action_mask: np.ndarray | None = None, deterministic: bool = True) -> int:
        """The action for one observation (not batched)."""

    def bind(self, env: gym.Env) -> Agent:
        """Attaches the env the agent will act in (baselines that price cuts read it); returns self."""
        self.env = env
        return self

    def learn(self, env: Any, total_steps: int, callback: Callback | None = None) -> Agent:
        """Trains on ``env`` (an SB3 ``VecEnv``) until ``num_steps >= total_steps``; baselines return at once."""
        return self

    def save(self, path: str | Path) -> Path:
        """Writes what ``load`` needs to act again; returns the file written."""
        raise NotImplementedError(f"agent {self.name!r} has nothing to save")

    def save_checkpoint(self, folder: str | Path) -> None:
        """Writes everything ``load_checkpoint`` needs to resume learning (weights, optimiser, replay)."""
        self.save(Path(folder) / "model")

    def load_checkpoint(self, folder: str | Path, env: Any = None) -> None:
        """Restores the state written by ``save_checkpoint``."""
        raise NotImplementedError(f"agent {self.name!r} cannot resume")


def masked_argmax(values: np.ndarray, action_mask: np.ndarray | None) -> int:
    """Index of the largest value among allowed actions (NaN counts as -inf; ties go to the lowest index)."""
    values = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=-math.inf)
    if action_mask is None:
        return int(np.argmax(values))
    allowed = np.flatnonzero(check_mask(action_mask, len(values)))
    return int(allowed[np.argmax(values[allowed])])


def check_mask(action_mask: np.ndarray, n_actions: int) -> np.ndarray:
    mask = np.asarray(action_mask, dtype=bool)
    if mask.shape != (n_actions,):
        raise ValueError(f"action_mask has shape {mask.shape}; allowed: ({n_actions},) booleans, one per action")
    if not mask.any():
        raise ValueError("action_mask allows no action; allowed: a mask with at least one True entry")
    return mask


def env_method(env: Any, name: str) -> Any:
    """Calls ``name`` on a Gymnasium env (through any wrappers) and returns its result."""
    return env.get_wrapper_attr(name)()


def vec_action_masks(vec_env: Any) -> np.ndarray:
    """(n_envs, n_actions) masks of an SB3 ``VecEnv`` (all True for envs without ``action_masks``)."""
    try:
        return np.stack(vec_env.env_method("action_masks")).astype(bool)
    except AttributeError:
        return np.ones((vec_env.num_envs, vec_env.action_space.n), dtype=bool)
