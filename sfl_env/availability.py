"""Time-varying client CPU availability: each client is idle or busy, round by round.

A two-state Markov chain per client ([R]: our modelling choice, see ``ComputeConfig``): a busy client
(another app in the foreground) gives training ``busy_cpu_share`` of its frequency. The chain is
stationary: a client is busy with probability ``busy_probability`` in every round, busy spells last
``busy_mean_rounds`` on average (it leaves the busy state with probability ``1 / busy_mean_rounds``),
and the idle-to-busy probability follows from the two. ``busy_probability = 0`` keeps every client idle
and draws nothing, so configurations without it replay unchanged.
"""

from __future__ import annotations

import numpy as np

from .config import ComputeConfig


class CpuAvailability:
    """Each client's busy state and the CPU frequency it gives training this round."""

    def __init__(self, base_hz: np.ndarray, config: ComputeConfig, rng: np.random.Generator) -> None:
        self.base_hz = np.asarray(base_hz, dtype=np.float64)
        self.config, self._rng = config, rng
        self.busy = np.zeros(len(self.base_hz), dtype=bool)
        if config.busy_probability > 0:
            self.busy = rng.random(len(self.base_hz)) < config.busy_probability
        self._hz = self._compute_hz()

    @property
    def transitions(self) -> tuple[float, float]:
        """(P(idle -> busy), P(busy -> idle)) of the stationary chain."""
        p, leave = self.config.busy_probability, 1.0 / self.config.busy_mean_rounds
        return min(1.0, leave * p / (1.0 - p)), leave

    def step(self) -> None:
        if self.config.busy_probability == 0:
            return
        start, leave = self.transitions
        u = self._rng.random(len(self.busy))
        self.busy = np.where(self.busy, u >= leave, u < start)
        self._hz = self._compute_hz()

    def sample_hz(self, rng: np.random.Generator, samples: int) -> np.ndarray:
        """(samples, K) frequencies drawn from the chain's stationary distribution, from ``rng`` (each
        client busy with probability ``busy_probability``). Moves no state of the chain."""
        busy = rng.random((samples, len(self.base_hz))) < self.config.busy_probability
        return np.where(busy, self.config.busy_cpu_share, 1.0) * self.base_hz

    @property
    def cpu_hz(self) -> np.ndarray:
        """Each client's frequency available to training this round (Hz), read-only."""
        return self._hz

    def _compute_hz(self) -> np.ndarray:
        hz = np.where(self.busy, self.config.busy_cpu_share * self.base_hz, self.base_hz)
        hz.setflags(write=False)
        return hz
