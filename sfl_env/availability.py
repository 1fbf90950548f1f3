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
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

import numpy as np

from .config import ComputeConfig
from .draws import EpisodeGenerators
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
        return cls.draw_rows(num_clients, config, EpisodeGenerators([rng]), np.zeros(1, dtype=np.int64)).row(0)

    @classmethod
    def draw_rows(cls, num_clients: int, config: ComputeConfig, rngs: EpisodeGenerators,
                  rows: np.ndarray) -> DeviceTable:  # fmt: skip
        """What ``[draw(num_clients, config, rngs[r]) for r in rows]`` draws, as a table: a clock uniform in
        ``client_cpu_hz`` per client (peak model), or tiers as ``rng.choice(len(DEVICE_TIERS), num_clients,
        p=device_mix)`` draws them (the mix's cdf searched with uniforms), without its checks."""
        table = np.empty((len(rngs), num_clients))
        if config.client_devices == "peak":
            low_hz, high_hz = config.client_cpu_hz
            rngs.uniform(low_hz, high_hz, table, rows)
            shape = (len(rows), num_clients)
            return DeviceTable(np.full(shape, -1), table[rows], np.full(shape, config.client_cycles_per_flop))
        rngs.random(table, rows)
        index = _mix_cdf(tuple(config.device_mix)).searchsorted(table[rows], side="right")
        _, cpu_hz, cycles_per_flop = _tier_table()
        return DeviceTable(index, cpu_hz[index], cycles_per_flop[index])

    def table(self) -> DeviceTable:
        """These devices as a table of one row."""
        names = _tier_table()[0]
        index = np.array([[-1 if tier is None else names.index(tier) for tier in self.tier]])
        return DeviceTable(index, self.cpu_hz[None].copy(), self.cycles_per_flop[None].copy())

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
        names, cpu_hz, cycles_per_flop = _tier_table()
        return cls(tuple(names[i] for i in index), cpu_hz[index], cycles_per_flop[index])

    @property
    def flops_per_s(self) -> np.ndarray:
        return self.cpu_hz / self.cycles_per_flop


@dataclass(frozen=True)
class DeviceTable:
    """The devices of several episodes' clients, a row per episode: each client's tier as an index into
    ``DEVICE_TIERS`` (-1: the peak model's clock), its clock (Hz) and its cycles per FLOP, arrays (R, K)."""

    tier_index: np.ndarray
    cpu_hz: np.ndarray
    cycles_per_flop: np.ndarray

    def row(self, i: int) -> ClientDevices:
        """Row i's devices."""
        names = _tier_table()[0]
        tier = tuple(None if index < 0 else names[index] for index in self.tier_index[i].tolist())
        return ClientDevices(tier, self.cpu_hz[i].copy(), self.cycles_per_flop[i].copy())


@functools.cache
def _tier_table() -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """Each tier's name, clock (Hz) and cycles per FLOP."""
    return (tuple(t.name for t in DEVICE_TIERS), np.array([t.cpu_ghz * 1e9 for t in DEVICE_TIERS]),
            np.array([t.cycles_per_flop for t in DEVICE_TIERS]))  # fmt: skip


@functools.cache
def _mix_cdf(mix: tuple[float, ...]) -> np.ndarray:
    """The mix's cumulative distribution as ``Generator.choice`` computes it: ``p.cumsum()`` over its last value."""
    cdf = np.asarray(mix, dtype=np.float64).cumsum()
    cdf /= cdf[-1]
    return cdf


def fastest_client_flops(config: ComputeConfig) -> float:
    """The most FLOP/s any client of ``config`` can give training in a round (observations scale by it)."""
    if config.client_devices == "peak":
        top = config.client_cpu_hz[1] / config.client_cycles_per_flop
    else:
        top = max(t.training_gflops * 1e9 for t in DEVICE_TIERS)
    return top * (float(governor_multipliers().max()) if config.governor == "measured" else 1.0)


class CpuAvailability:
    """Each client's device, busy state and the clock it gives training this round.

    ``devices`` and ``rng`` are one episode's (a :class:`ClientDevices` and a generator: arrays of shape
    (K,)) or E episodes' (a :class:`DeviceTable` of E rows and E generators: arrays of shape (E, K), row e
    drawn from ``rng[e]`` alone, in the order one episode draws; :meth:`restart` begins new episodes in
    some rows), as for :class:`~sfl_env.wireless.Channel`.
    """

    def __init__(self, devices: ClientDevices | DeviceTable, config: ComputeConfig,
                 rng: np.random.Generator | Sequence[np.random.Generator]) -> None:
        self.config = config
        self._single = isinstance(rng, np.random.Generator)
        table = devices.table() if isinstance(devices, ClientDevices) else devices
        rngs = EpisodeGenerators.of([rng] if self._single else rng)
        if len(table.cpu_hz) != len(rngs):
            raise ValueError(f"devices for {len(table.cpu_hz)} episodes and {len(rngs)} generators; allowed: as many")
        shape = table.cpu_hz.shape
        self._rngs = rngs
        self._tier_index = np.zeros(shape, dtype=np.int64)
        self._base_hz, self._cycles_per_flop = np.zeros(shape), np.zeros(shape)
        self._busy, self._governor = np.zeros(shape, dtype=bool), np.ones(shape)
        self._sample = np.zeros(shape, dtype=np.int64)  # the governor's sample index of each client
        self.restart(np.arange(len(rngs)), table, rngs)

    def restart(self, rows: np.ndarray, devices: DeviceTable, rngs: Sequence[np.random.Generator]) -> None:
        """Begins a new episode in each of ``rows``, on the matching row of ``devices``, drawn from ``rngs``."""
        config = self.config
        self._rngs.replace(rows, list(rngs))
        rows = np.asarray(rows, dtype=np.int64)
        self._tier_index[rows], self._base_hz[rows] = devices.tier_index, devices.cpu_hz
        self._cycles_per_flop[rows] = devices.cycles_per_flop
        if config.busy_probability > 0:
            draws = np.empty(self._busy.shape)
            self._rngs.random(draws, rows)
            self._busy[rows] = draws[rows] < config.busy_probability
        else:
            self._busy[rows] = False
        if config.governor == "measured":  # each generator: its busy states, then its governor samples
            self._rngs.integers(len(governor_multipliers()), self._sample, rows)
            self._governor[rows] = governor_multipliers()[self._sample[rows]]
        self._cycles_view = self._read_only_view(self._cycles_per_flop)
        self._hz = self._compute_hz()

    @property
    def devices(self) -> ClientDevices | list[ClientDevices]:
        table = DeviceTable(self._tier_index, self._base_hz, self._cycles_per_flop)
        return table.row(0) if self._single else [table.row(i) for i in range(len(self._base_hz))]

    @property
    def base_hz(self) -> np.ndarray:
        return self._view(self._base_hz)

    @property
    def cycles_per_flop(self) -> np.ndarray:
        """Each client's device's cycles per FLOP, read-only."""
        return self._cycles_view

    @property
    def busy(self) -> np.ndarray:
        return self._view(self._busy)

    @property
    def transitions(self) -> tuple[float, float]:
        """(P(idle -> busy), P(busy -> idle)) of the stationary chain."""
        p, leave = self.config.busy_probability, 1.0 / self.config.busy_mean_rounds
        return min(1.0, leave * p / (1.0 - p)), leave

    def step(self) -> None:
        """Moves every episode's clients to the next round: busy spells, then the governor's clock."""
        config = self.config
        k = self._busy.shape[1]
        draws = np.empty(self._busy.shape) if config.busy_probability > 0 else None
        if draws is not None:
            self._rngs.random(draws)  # each episode from its own generator
        if config.governor == "measured":  # rng.choice(multipliers, k) draws these indices
            self._rngs.integers(len(governor_multipliers()), self._sample)
            self._governor = governor_multipliers()[self._sample]
        if draws is not None:
            start, leave = self.transitions
            self._busy = np.where(self._busy, draws >= leave, draws < start)
        self._hz = self._compute_hz()

    def sample_hz(self, rng: np.random.Generator, samples: int) -> np.ndarray:
        """(samples, K) clocks drawn from the stationary distributions, from ``rng`` (each client busy
        with probability ``busy_probability``, its governor at a measured sample). Moves no state.
        One episode only."""
        shape = (samples, self._busy.shape[1])
        busy = rng.random(shape) < self.config.busy_probability
        governor = rng.choice(governor_multipliers(), size=shape) if self.config.governor == "measured" \
            else np.ones(shape)
        return np.where(busy, self.config.busy_cpu_share, 1.0) * governor * self.base_hz

    @property
    def cpu_hz(self) -> np.ndarray:
        """Each client's clock available to training this round (Hz), read-only."""
        return self._view(self._hz)

    @property
    def flops_per_s(self) -> np.ndarray:
        """Each client's training FLOP/s this round."""
        return self._view(self._hz / self._cycles_per_flop)

    def _view(self, array: np.ndarray) -> np.ndarray:
        return array[0] if self._single else array

    def _read_only_view(self, array: np.ndarray) -> np.ndarray:
        view = self._view(array.copy())
        view.setflags(write=False)
        return view

    def _compute_hz(self) -> np.ndarray:
        hz = np.where(self._busy, self.config.busy_cpu_share, 1.0) * self._governor * self._base_hz
        hz.setflags(write=False)
        return hz
