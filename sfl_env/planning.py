"""The planning interface of :class:`~sfl_env.env.SFLEnv`: what planners and oracles may read.

``cut_preview()`` prices every cut of the coming round; ``sample_round_costs()`` draws what a round at
each cut may cost from the distributions of the exogenous state; ``episode_state()`` says where the
episode stands. None of them trains, and none moves the env's random state. The oracle and the planner
(``agents``) read them. Every round is priced by the env's :class:`~sfl_env.pricing.RoundPricer`, the
same code ``step`` prices with.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .latency import CostBatch
from .pricing import StateBatch


class PlanningInterface:
    """Mixed into :class:`~sfl_env.env.SFLEnv`: it reads the env's pricer (``pricer``), its current
    state (``_round_state()``, the channel's and the CPUs' distributions) and its episode's progress."""

    def cut_preview(self) -> dict[str, np.ndarray]:
        """What every action would cost in the coming round, priced without taking it.

        For each action: the round's ledger at that cut (from the model profile, with the migration
        from the current cut), the resource solver on this round's channel, and the reward that
        ``step`` would return. Training is not run and no random state moves, so ``step(a)`` then
        returns exactly ``reward[a]`` (up to the accuracy-dependent episode end). Actions that
        ``step`` would refuse (``privacy="mask"``) are NaN. The exhaustive-search oracle and the
        greedy-latency baseline read this. Returns arrays of length ``n_cuts``: ``reward``,
        ``latency_s``, ``convergence`` and ``allowed``.
        """
        if self._trainer is None:
            raise RuntimeError("call reset() before cut_preview()")
        n, state = len(self.cuts), self._round_state()
        preview = {key: np.full(n, np.nan) for key in ("reward", "latency_s", "convergence")}
        priced: dict[int, tuple[float, float]] = {}
        for action in range(n):
            if not self._mask[action] and self.config.privacy == "mask":
                continue
            cut_index, violated = self._apply_privacy(action)
            if cut_index not in priced:
                cost = self.pricer.round_cost(self.cuts[cut_index], self._trainer.cut)
                quote = self.pricer.price(cost, state, cut_index, False, energy=False)
                priced[cut_index] = (quote.reward, quote.latency.total_s)
            reward, latency_s = priced[cut_index]
            preview["reward"][action] = reward - (self.config.privacy_penalty if violated else 0.0)
            preview["latency_s"][action] = latency_s
            preview["convergence"][action] = self.pricer.convergence[cut_index]
        preview["allowed"] = self._mask.copy()
        return preview

    def sample_round_costs(self, samples: int = 64, seed: int = 0) -> dict[str, np.ndarray]:
        """What a round at each cut may cost, drawn from the distributions of the coming rounds.

        Prices a round at every cut (no migration) under ``samples`` draws of the exogenous state from
        its distributions: block Rayleigh fading at the clients' current distances and shadowing, each
        client's governor at a measured sample and, with busy CPUs, each client busy with its stationary
        probability; the resource solver allocates every draw. It reads
        the distributions, never the env's future draws, and moves no random state of the env
        (``seed`` seeds its own draws). Planners read this. Returns ``latency_s`` (samples, n_cuts),
        ``energy_j`` (samples, n_cuts, K) per client and ``leakage`` (n_cuts,; NaN without a leakage
        table).
        """
        if self._trainer is None:
            raise RuntimeError("call reset() before sample_round_costs()")
        n, rng = len(self.cuts), np.random.default_rng(seed)
        gains, cpus = self._channel.sample_gains(rng, samples), self._cpu.sample_hz(rng, samples)
        latency, energy = np.zeros((samples, n)), np.zeros((samples, n, self.num_clients))
        cycles = np.ascontiguousarray(np.broadcast_to(self._cpu.cycles_per_flop, gains.shape))
        states = StateBatch(gains, cpus, cycles)
        for index, cut in enumerate(self.cuts):  # every draw of a cut's round, priced as one batch
            costs = CostBatch.of([self.pricer.round_cost(cut, cut)] * samples)
            allocation = self.pricer.allocate_batch(costs, states)
            latency[:, index] = self.pricer.latency_batch(costs, allocation.bandwidth_share,
                                                          allocation.server_cpu_share, states).total_s
            energy[:, index] = self.pricer.energy_batch(costs, allocation.bandwidth_share, states)
        leakage = np.array([np.nan if (spent := self.pricer.round_leakage(i)) is None else spent for i in range(n)])
        return {"latency_s": latency, "energy_j": energy, "leakage": leakage}

    def episode_state(self) -> dict[str, Any]:
        """Where the episode stands, for planners: ``round``, ``previous_cut_index`` (None before the
        first round), the last test ``accuracy``, the twin's ``progress`` (None on real training), and
        what it has spent: ``elapsed_s``, ``leakage`` and ``energy_j`` (per client)."""
        if self._trainer is None:
            raise RuntimeError("call reset() before episode_state()")
        progress = getattr(self._trainer, "progress", None)
        return {"round": self._round, "previous_cut_index": self._previous_cut_index, "accuracy": self._accuracy,
                "progress": None if progress is None else float(progress), "elapsed_s": self._budget.elapsed_s,
                "leakage": self._budget.leakage, "energy_j": self._budget.energy_j.copy()}
