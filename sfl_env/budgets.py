"""What an episode has spent, its budgets, and how it ends (docs/design.md, "The objective").

An episode spends simulated seconds, privacy leakage (each round adds the distance correlation of its
cut's smashed data, :mod:`sfl_env.calibration.leakage`) and client energy (:mod:`sfl_env.energy`).
It ends when the test accuracy reaches the target while every budget holds ("target"), or as a
failure: a budget exhausted first ("time_budget", "leakage_budget", "energy_budget") or a diverged
round ("diverged"). With ``reward="time_to_accuracy"`` and a time budget B, a failure pays the
terminal cost ``B + max(B - elapsed, 0)`` seconds on top of its rounds, so every failure totals at
least ``2 B`` while every success within the budget totals at most ``B``: failing always loses.
"""

from __future__ import annotations

import numpy as np

from .config import EnvConfig

ENDS = ("target", "time_budget", "leakage_budget", "energy_budget", "diverged")
BUDGETS = ("time", "leakage", "energy")  # the columns of EpisodeBudget.left_shares


class EpisodeBudget:
    """The spending of one episode against the budgets of ``config``; with ``episodes=E``, of E episodes
    as arrays (``elapsed_s`` and ``leakage`` of shape (E,), ``energy_j`` (E, K)), each row on its own."""

    def __init__(self, config: EnvConfig, num_clients: int, episodes: int | None = None) -> None:
        self.config = config
        self._single = episodes is None
        rows = 1 if episodes is None else episodes
        self._elapsed_s, self._leakage = np.zeros(rows), np.zeros(rows)
        self._energy_j = np.zeros((rows, num_clients))

    def restart(self, rows: np.ndarray) -> None:
        """Begins new episodes in ``rows``: nothing spent."""
        self._elapsed_s[rows], self._leakage[rows], self._energy_j[rows] = 0.0, 0.0, 0.0

    @property
    def elapsed_s(self):
        return float(self._elapsed_s[0]) if self._single else self._elapsed_s

    @property
    def leakage(self):
        return float(self._leakage[0]) if self._single else self._leakage

    @property
    def energy_j(self) -> np.ndarray:
        return self._energy_j[0] if self._single else self._energy_j

    def charge(self, seconds, leakage, energy_j: np.ndarray, rows: np.ndarray | None = None) -> None:
        """Adds one round's spending (``leakage`` None: not measured for this model), to ``rows`` only
        when given (the others spend nothing)."""
        where = slice(None) if rows is None else rows
        self._elapsed_s[where] = self._elapsed_s[where] + np.asarray(seconds)
        self._energy_j[where] = self._energy_j[where] + energy_j
        if leakage is not None:
            self._leakage[where] = self._leakage[where] + np.asarray(leakage)

    def end_codes(self, accuracy: np.ndarray, diverged: np.ndarray) -> np.ndarray:
        """Why each episode ends after this round, as an index into :data:`ENDS` (-1: it goes on)."""
        cfg = self.config
        code = np.where(accuracy >= cfg.target_accuracy, ENDS.index("target"), -1)
        if cfg.energy_budget_j is not None:
            code = np.where(self._energy_j.max(axis=-1) > cfg.energy_budget_j, ENDS.index("energy_budget"), code)
        if cfg.leakage_budget is not None:
            code = np.where(self._leakage > cfg.leakage_budget, ENDS.index("leakage_budget"), code)
        if cfg.time_budget_s is not None:
            code = np.where(self._elapsed_s > cfg.time_budget_s, ENDS.index("time_budget"), code)
        return np.where(diverged, ENDS.index("diverged"), code)

    def end(self, accuracy: float, diverged: bool) -> str | None:
        """Why the one episode ends after this round (one of :data:`ENDS`), or None while it goes on."""
        code = int(self.end_codes(np.array([accuracy]), np.array([diverged]))[0])
        return None if code < 0 else ENDS[code]

    def terminal_cost_s(self):
        """The seconds a failed episode pays on top of its rounds (0 without a time budget, and for the
        paper's per-round reward, which has no terminal term)."""
        budget = self.config.time_budget_s
        if self.config.reward != "time_to_accuracy" or budget is None:
            cost = np.zeros_like(self._elapsed_s)
        else:
            cost = budget + np.maximum(budget - self._elapsed_s, 0.0)
        return float(cost[0]) if self._single else cost

    def left_shares(self) -> np.ndarray:
        """(E, 3): the share of the time, leakage and energy budgets left (1.0 for one the task does not have)."""
        cfg = self.config
        left = np.ones((len(self._elapsed_s), len(BUDGETS)))
        if cfg.time_budget_s is not None:
            left[:, 0] = np.maximum(0.0, 1.0 - self._elapsed_s / cfg.time_budget_s)
        if cfg.leakage_budget is not None:
            left[:, 1] = np.maximum(0.0, 1.0 - self._leakage / cfg.leakage_budget)
        if cfg.energy_budget_j is not None:
            left[:, 2] = np.maximum(0.0, 1.0 - self._energy_j.max(axis=-1) / cfg.energy_budget_j)
        return left

    def left(self, shares: np.ndarray | None = None) -> dict[str, float]:
        """The share of each budget left in the one episode (1.0 for a budget the task does not have);
        ``shares``: :meth:`left_shares` now, when the caller has it."""
        return dict(zip(BUDGETS, (self.left_shares() if shares is None else shares)[0].tolist()))
