"""The clients' processors over an episode: each client's phone, its clock round by round, and whether
another app holds most of it.

At reset every client draws its device (:class:`ClientDevices`): a measured phone tier, or the peak
model's clock. Round by round, its clock then moves twice over:

- **Governor.** ``governor="measured"`` multiplies the clock by a draw from the governor log of a
  phone training with MNN (``sfl_env/measurements/governor_meizu16t.csv``: 147 samples, 1.2 s apart,
  1.04-1.79 GHz). Consecutive samples are uncorrelated (lag-1 autocorrelation 0.01), so each round
  draws independently. The multipliers are the samples over their harmonic mean, so that the mean
  seconds of a training iteration are the tier's measured ones.
- **Busy spells.** A two-state Markov chain per client ([R]: our modelling choice, see
  ``ComputeConfig``): a busy client (another app in the foreground) gives training
  ``busy_cpu_share`` of its clock. The chain is stationary: a client is busy with probability
  ``busy_probability`` in every round, busy spells last ``busy_mean_rounds`` on average (it leaves the
  busy state with probability ``1 / busy_mean_rounds``), and the idle-to-busy probability follows from
  the two. ``busy_probability = 0`` keeps every client idle and draws nothing.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

import numpy as np

from .config import ComputeConfig
from .hardware import DEVICE_TIERS
from .validation import check_int


@functools.cache
def governor_multipliers() -> np.ndarray:
    """The measured governor's clock samples over their harmonic mean (read-only)."""
    text = resources.files("sfl_env").joinpath("measurements", "governor_meizu16t.csv").read_text()
    rows = [line for line in text.splitlines() if line and not line.startswith("#")][1:]
    ghz = np.array([float(row.split(",")[1]) for row in rows])
    multipliers = ghz * np.mean(1.0 / ghz)
    multipliers.setflags(write=False)
    return multipliers


@dataclass(frozen=True)
class ClientDevices:
    """What each client's phone is: its tier (None for the peak model), clock and cycles per FLOP."""

    tier: tuple[str | None, ...]
    cpu_hz: np.ndarray
    cycles_per_flop: np.ndarray

    @classmethod
    def draw(cls, num_clients: int, config: ComputeConfig, rng: np.random.Generator) -> ClientDevices:
        check_int("num_clients", num_clients, low=1)
        if config.client_devices == "peak":
            low_hz, high_hz = config.client_cpu_hz
            return cls((None,) * num_clients, rng.uniform(low_hz, high_hz, num_clients),
                       np.full(num_clients, config.client_cycles_per_flop))
        return cls._of_tiers(rng.choice(len(DEVICE_TIERS), size=num_clients, p=config.device_mix))

    @classmethod
    def nominal(cls, num_clients: int, config: ComputeConfig) -> ClientDevices:
        """The typical devices of ``num_clients`` clients, drawn by no generator: client ``k`` takes the
        device at quantile ``(k + 1/2) / K`` of the distribution (the mix's tiers in order, or the
        clock range)."""
        quantiles = (np.arange(num_clients) + 0.5) / num_clients
        if config.client_devices == "peak":
            low_hz, high_hz = config.client_cpu_hz
            return cls((None,) * num_clients, low_hz + quantiles * (high_hz - low_hz),
                       np.full(num_clients, config.client_cycles_per_flop))
        return cls._of_tiers(np.minimum(np.searchsorted(np.cumsum(config.device_mix), quantiles),
                                        len(DEVICE_TIERS) - 1))

    @classmethod
    def _of_tiers(cls, index: np.ndarray) -> ClientDevices:
        """Client ``k`` on tier ``DEVICE_TIERS[index[k]]``."""
        tiers = [DEVICE_TIERS[i] for i in index]
        return cls(tuple(t.name for t in tiers), np.array([t.cpu_ghz * 1e9 for t in tiers]),
                   np.array([t.cycles_per_flop for t in tiers]))

    @property
    def flops_per_s(self) -> np.ndarray:
        return self.cpu_hz / self.cycles_per_flop


def fastest_client_flops(config: ComputeConfig) -> float:
    """The most FLOP/s any client of ``config`` can give training in a round (observations scale by it)."""
    if config.client_devices == "peak":
        top = config.client_cpu_hz[1] / config.client_cycles_per_flop
    else:
        top = max(t.training_gflops * 1e9 for t in DEVICE_TIERS)
    return top * (float(governor_multipliers().max()) if config.governor == "measured" else 1.0)


class CpuAvailability:
    """Each client's device, busy state and the clock it gives training this round."""

    def __init__(self, devices: ClientDevices, config: ComputeConfig, rng: np.random.Generator) -> None:
        self.devices = devices
        self.base_hz = np.asarray(devices.cpu_hz, dtype=np.float64)
        self.cycles_per_flop = np.asarray(devices.cycles_per_flop, dtype=np.float64)
        self.cycles_per_flop.setflags(write=False)
        self.config, self._rng = config, rng
        self.busy = np.zeros(len(self.base_hz), dtype=bool)
        if config.busy_probability > 0:
            self.busy = rng.random(len(self.base_hz)) < config.busy_probability
        self._governor = self._draw_governor(rng, (len(self.base_hz),))
        self._hz = self._compute_hz()

    @property
    def transitions(self) -> tuple[float, float]:
        """(P(idle -> busy), P(busy -> idle)) of the stationary chain."""
        p, leave = self.config.busy_probability, 1.0 / self.config.busy_mean_rounds
        return min(1.0, leave * p / (1.0 - p)), leave

    def step(self) -> None:
        if self.config.busy_probability > 0:
            start, leave = self.transitions
            u = self._rng.random(len(self.busy))
            self.busy = np.where(self.busy, u >= leave, u < start)
        if self.config.governor == "measured":
            self._governor = self._draw_governor(self._rng, (len(self.base_hz),))
        self._hz = self._compute_hz()

    def sample_hz(self, rng: np.random.Generator, samples: int) -> np.ndarray:
        """(samples, K) clocks drawn from the stationary distributions, from ``rng`` (each client busy
        with probability ``busy_probability``, its governor at a measured sample). Moves no state."""
        shape = (samples, len(self.base_hz))
        busy = rng.random(shape) < self.config.busy_probability
        return np.where(busy, self.config.busy_cpu_share, 1.0) * self._draw_governor(rng, shape) * self.base_hz

    @property
    def cpu_hz(self) -> np.ndarray:
        """Each client's clock available to training this round (Hz), read-only."""
        return self._hz

    @property
    def flops_per_s(self) -> np.ndarray:
        """Each client's training FLOP/s this round."""
        return self._hz / self.cycles_per_flop

    def _draw_governor(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        if self.config.governor == "none":
            return np.ones(shape)
        return rng.choice(governor_multipliers(), size=shape)

    def _compute_hz(self) -> np.ndarray:
        hz = np.where(self.busy, self.config.busy_cpu_share, 1.0) * self._governor * self.base_hz
        hz.setflags(write=False)
        return hz
