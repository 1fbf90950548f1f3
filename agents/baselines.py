"""Reference policies: random, fixed cuts, greedy latency and the exhaustive-search oracle.

They learn nothing and implement the agent protocol so that ``evaluate.py`` ranks them next to the
learned agents. Every one honours the privacy mask. ``greedy-latency`` and ``oracle`` price each
allowed cut of the coming round with the env's ``cut_preview()`` (the real resource solver on the
round's channel, no training), so they must be bound to the env they act in (``agent.bind(env)``).

The oracle is the paper's per-round exhaustive search (SFL-GA, arXiv 2501.01078): it takes the cut with
the best reward of the coming round. It is the upper reference for the per-round ``paper`` reward;
a learner that plans across rounds (migration, time to accuracy) may beat it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import Agent, check_mask, env_method, masked_argmax


class _Baseline(Agent):
    def __init__(self, n_actions: int, seed: int = 0) -> None:
        super().__init__()
        self.n_actions = n_actions
        self.seed = seed

    def _allowed(self, action_mask: np.ndarray | None) -> np.ndarray:
        if action_mask is None:
            return np.arange(self.n_actions)
        return np.flatnonzero(check_mask(action_mask, self.n_actions))

    def save(self, path: str | Path) -> Path:
        """Baselines have no weights; the run's config is enough to rebuild them."""
        return Path(path)


class RandomAgent(_Baseline):
    """Uniform over the allowed cuts (seeded)."""

    name = "random"

    def __init__(self, n_actions: int, seed: int = 0) -> None:
        super().__init__(n_actions, seed)
        self.rng = np.random.default_rng(seed)

    def predict(self, obs, action_mask=None, deterministic=True) -> int:
        return int(self.rng.choice(self._allowed(action_mask)))


class FixedCutAgent(_Baseline):
    """Always the same position among the allowed cuts: ``shallowest``, ``middle`` or ``deepest``."""

    POSITIONS = ("shallowest", "middle", "deepest")

    def __init__(self, n_actions: int, seed: int = 0, position: str = "shallowest") -> None:
        super().__init__(n_actions, seed)
        if position not in self.POSITIONS:
            raise ValueError(f"position={position!r} is unknown; allowed: {', '.join(self.POSITIONS)}")
        self.position = position
        self.name = f"fixed-{position}"

    def predict(self, obs, action_mask=None, deterministic=True) -> int:
        allowed = self._allowed(action_mask)
        return int(allowed[{"shallowest": 0, "middle": (len(allowed) - 1) // 2, "deepest": -1}[self.position]])


class CutAgent(_Baseline):
    """Always cut ``cut`` (client blocks); a forbidden cut is replaced by the nearest allowed one."""

    def __init__(self, n_actions: int, seed: int = 0, cut: int = 1) -> None:
        super().__init__(n_actions, seed)
        if not 1 <= cut <= n_actions:
            raise ValueError(f"cut={cut} is out of range; allowed: 1..{n_actions} client blocks")
        self.cut = cut
        self.name = f"cut-{cut}"

    def predict(self, obs, action_mask=None, deterministic=True) -> int:
        allowed = self._allowed(action_mask)
        return int(allowed[np.argmin(np.abs(allowed - (self.cut - 1)))])


class _PricingBaseline(_Baseline):
    """Reads ``cut_preview()`` of the bound env."""

    def _preview(self) -> dict[str, np.ndarray]:
        if self.env is None:
            raise RuntimeError(f"agent {self.name!r} prices cuts with the env's cut_preview(); call agent.bind(env) first")
        return env_method(self.env, "cut_preview")


class GreedyLatencyAgent(_PricingBaseline):
    """The allowed cut with the least solved round latency (ignores the convergence term)."""

    name = "greedy-latency"

    def predict(self, obs, action_mask=None, deterministic=True) -> int:
        preview = self._preview()
        return masked_argmax(-preview["latency_s"], _and(preview["allowed"], action_mask))


class OracleAgent(_PricingBaseline):
    """Exhaustive search: the allowed cut with the best reward in the coming round."""

    name = "oracle"

    def predict(self, obs, action_mask=None, deterministic=True) -> int:
        preview = self._preview()
        return masked_argmax(preview["reward"], _and(preview["allowed"], action_mask))


def _and(allowed: np.ndarray, action_mask: np.ndarray | None) -> np.ndarray:
    return allowed if action_mask is None else allowed & np.asarray(action_mask, dtype=bool)
