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


class EpisodeBudget:
    """The spending of one episode against the budgets of ``config``."""

    def __init__(self, config: EnvConfig, num_clients: int) -> None:
        self.config = config
        self.elapsed_s, self.leakage = 0.0, 0.0
        self.energy_j = np.zeros(num_clients)

    def charge(self, seconds: float, leakage: float | None, energy_j: np.ndarray) -> None:
        """Adds one round's spending (``leakage`` None: not measured for this model)."""
        self.elapsed_s += seconds
        self.energy_j += energy_j
        if leakage is not None:
            self.leakage += leakage

    def end(self, accuracy: float, diverged: bool) -> str | None:
        """Why the episode ends after this round (one of :data:`ENDS`), or None while it goes on."""
        cfg = self.config
        if diverged:
            return "diverged"
        if cfg.time_budget_s is not None and self.elapsed_s > cfg.time_budget_s:
            return "time_budget"
        if cfg.leakage_budget is not None and self.leakage > cfg.leakage_budget:
            return "leakage_budget"
        if cfg.energy_budget_j is not None and self.energy_j.max() > cfg.energy_budget_j:
            return "energy_budget"
        if accuracy >= cfg.target_accuracy:
            return "target"
        return None

    def terminal_cost_s(self) -> float:
        """The seconds a failed episode pays on top of its rounds (0 without a time budget, and for the
        paper's per-round reward, which has no terminal term)."""
        budget = self.config.time_budget_s
        if self.config.reward != "time_to_accuracy" or budget is None:
            return 0.0
        return budget + max(budget - self.elapsed_s, 0.0)

    def left(self) -> dict[str, float]:
        """The share of each budget left (1.0 for a budget the task does not have)."""
        cfg = self.config

        def share(spent: float, budget: float | None) -> float:
            return 1.0 if budget is None else max(0.0, 1.0 - spent / budget)

        return {"time": share(self.elapsed_s, cfg.time_budget_s), "leakage": share(self.leakage, cfg.leakage_budget),
                "energy": share(float(self.energy_j.max()), cfg.energy_budget_j)}
