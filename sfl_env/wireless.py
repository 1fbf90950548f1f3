"""Wireless channel and compute model of one cell: one edge server, K clients around it.

Uplink: FDMA, client ``k`` gets a share ``beta_k`` of the band ``B`` and transmits at power ``p`` with
the Shannon rate ``beta_k B log2(1 + p g_k / (beta_k B N0))``. Downlink: the server either broadcasts
one message over the whole band ``B_D`` (the worst client limits the rate) or unicasts to every client
over an equal share ``1/K`` of it. The power gain ``g_k = 10^(-PL(d_k)/10) |h_k|^2`` combines the
log-distance path loss ``PL = 128.1 + 37.6 log10(d_km)`` dB with Rayleigh fading that may be correlated
in time (Gauss-Markov) and distances that may drift (slow mobility).

Configs take dB, dBm, MHz, GHz and km at their edges, as papers quote them; everything computed here
is SI (Hz, W, W/Hz, m, bit/s, cycles/s).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .validation import ConfigError, check_choice, check_int, check_number

FADINGS: tuple[str, ...] = ("rayleigh", "none")
LN2 = float(np.log(2.0))


def dbm_to_w(dbm: ArrayLike) -> np.ndarray | float:
    return 10.0 ** ((np.asarray(dbm, dtype=np.float64) - 30.0) / 10.0)


def path_loss_db(distance_m: ArrayLike, intercept_db: float = 128.1, slope_db: float = 37.6) -> np.ndarray:
    """Log-distance path loss ``intercept + slope * log10(d / 1 km)`` in dB."""
    return intercept_db + slope_db * np.log10(np.asarray(distance_m, dtype=np.float64) / 1000.0)


def _check_range(name: str, value: Any, high: float) -> tuple[float, float]:
    """A ``(low, high)`` pair with ``0 < low <= high``, as floats."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ConfigError(f"{name}={value!r} is invalid; allowed: a pair (low, high) with 0 < low <= high")
    low_value, high_value = value
    check_number(f"{name}[0]", low_value, low=0.0, high=high, low_open=True)
    check_number(f"{name}[1]", high_value, low=0.0, high=high, low_open=True)
    if low_value > high_value:
        raise ConfigError(f"{name}={value!r} is reversed; allowed: a pair (low, high) with 0 < low <= high")
    return float(low_value), float(high_value)


@dataclass(frozen=True)
class WirelessConfig:
    """Radio parameters of the cell; the defaults are the reference values of the benchmark."""

    bandwidth_mhz: float = 10.0  # uplink band B, shared by the clients (FDMA)
    downlink_bandwidth_mhz: float = 10.0  # downlink band B_D
    noise_psd_dbm_per_hz: float = -174.0
    client_power_dbm: float = 23.0  # 0.2 W
    server_power_dbm: float = 30.0  # 1 W
    distance_km: tuple[float, float] = (0.05, 0.5)  # each client's distance is uniform in this range
    path_loss_intercept_db: float = 128.1
    path_loss_slope_db: float = 37.6
    fading: str = "rayleigh"
    fading_correlation: float = 0.0  # Gauss-Markov rho between consecutive rounds
    mobility_km_per_round: float = 0.0  # std of each distance's per-round random walk

    def __post_init__(self) -> None:
        check_number("bandwidth_mhz", self.bandwidth_mhz, low=0.0, high=1e6, low_open=True)
        check_number("downlink_bandwidth_mhz", self.downlink_bandwidth_mhz, low=0.0, high=1e6, low_open=True)
        check_number("noise_psd_dbm_per_hz", self.noise_psd_dbm_per_hz, low=-250.0, high=-50.0)
        check_number("client_power_dbm", self.client_power_dbm, low=-50.0, high=70.0)
        check_number("server_power_dbm", self.server_power_dbm, low=-50.0, high=70.0)
        object.__setattr__(self, "distance_km", _check_range("distance_km", self.distance_km, high=1000.0))
        check_number("path_loss_intercept_db", self.path_loss_intercept_db, low=0.0, high=300.0)
        check_number("path_loss_slope_db", self.path_loss_slope_db, low=0.0, high=100.0)
        check_choice("fading", self.fading, FADINGS)
        check_number("fading_correlation", self.fading_correlation, low=0.0, high=1.0, high_open=True)
        check_number("mobility_km_per_round", self.mobility_km_per_round, low=0.0, high=1000.0)

    @property
    def bandwidth_hz(self) -> float:
        return self.bandwidth_mhz * 1e6

    @property
    def downlink_bandwidth_hz(self) -> float:
        return self.downlink_bandwidth_mhz * 1e6

    @functools.cached_property
    def noise_psd_w_per_hz(self) -> float:
        return float(dbm_to_w(self.noise_psd_dbm_per_hz))

    @functools.cached_property
    def client_power_w(self) -> float:
        return float(dbm_to_w(self.client_power_dbm))

    @functools.cached_property
    def server_power_w(self) -> float:
        return float(dbm_to_w(self.server_power_dbm))

    @property
    def distance_m(self) -> tuple[float, float]:
        return self.distance_km[0] * 1000.0, self.distance_km[1] * 1000.0

    @property
    def mobility_m_per_round(self) -> float:
        return self.mobility_km_per_round * 1000.0


@dataclass(frozen=True)
class ComputeConfig:
    """Processor speeds and how many cycles one FLOP costs on each side."""

    client_cpu_ghz: tuple[float, float] = (1.0, 2.0)  # each client's frequency is uniform in this range
    client_cycles_per_flop: float = 1 / 16
    server_cycles_per_flop: float = 1 / 32
    server_cpu_ghz: float = 100.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "client_cpu_ghz", _check_range("client_cpu_ghz", self.client_cpu_ghz, high=1e6))
        check_number("client_cycles_per_flop", self.client_cycles_per_flop, low=0.0, high=1e6, low_open=True)
        check_number("server_cycles_per_flop", self.server_cycles_per_flop, low=0.0, high=1e6, low_open=True)
        check_number("server_cpu_ghz", self.server_cpu_ghz, low=0.0, high=1e9, low_open=True)

    @property
    def client_cpu_hz(self) -> tuple[float, float]:
        return self.client_cpu_ghz[0] * 1e9, self.client_cpu_ghz[1] * 1e9

    @property
    def server_cpu_hz(self) -> float:
        return self.server_cpu_ghz * 1e9


def client_cpu_hz(num_clients: int, config: ComputeConfig, rng: np.random.Generator) -> np.ndarray:
    """Draws each client's CPU frequency (Hz), uniform in the configured range."""
    check_int("num_clients", num_clients, low=1)
    low_hz, high_hz = config.client_cpu_hz
    return rng.uniform(low_hz, high_hz, num_clients)


class Channel:
    """The clients' distances and fading states, advanced one training round at a time.

    Rayleigh fading follows the Gauss-Markov process ``h_t = rho h_{t-1} + sqrt(1 - rho^2) w_t`` with
    ``w_t`` circularly-symmetric complex Gaussian of unit power, so ``|h_t|^2 ~ Exp(1)`` in every round
    and ``rho = 0`` redraws it independently. Slow mobility moves each distance by a Gaussian step per
    round, reflected back into the configured range. All randomness comes from ``rng``.
    """

    def __init__(self, num_clients: int, config: WirelessConfig, rng: np.random.Generator) -> None:
        check_int("num_clients", num_clients, low=1)
        self.num_clients = num_clients
        self.config = config
        self._rng = rng
        self._distance_m = rng.uniform(*config.distance_m, num_clients)
        self._path_gain = self._compute_path_gain()
        self._fading = self._innovation()
        self._gain = self._compute_gain()

    def step(self) -> None:
        """Advances one round: new fading state, then the mobility step of every distance."""
        rho = self.config.fading_correlation
        if self.config.fading == "rayleigh" and rho == 0:
            self._fading = self._innovation()  # independent redraw
        elif self.config.fading == "rayleigh":
            self._fading = rho * self._fading + np.sqrt(1.0 - rho**2) * self._innovation()
        if self.config.mobility_m_per_round > 0:
            moved = self._distance_m + self._rng.normal(0.0, self.config.mobility_m_per_round, self.num_clients)
            self._distance_m = _reflect(moved, *self.config.distance_m)
            self._path_gain = self._compute_path_gain()
        self._gain = self._compute_gain()

    @property
    def distance_m(self) -> np.ndarray:
        return self._distance_m.copy()

    @property
    def fading_power(self) -> np.ndarray:
        """``|h_k|^2`` (1 without fading)."""
        return np.abs(self._fading) ** 2

    @property
    def gain(self) -> np.ndarray:
        """Linear power gain ``g_k = 10^(-PL_k/10) |h_k|^2`` of each client, shape (K,), read-only."""
        return self._gain

    def _compute_path_gain(self) -> np.ndarray:
        """``10^(-PL_k/10)`` of each client's distance (recomputed only when the distances move)."""
        loss_db = path_loss_db(self._distance_m, self.config.path_loss_intercept_db, self.config.path_loss_slope_db)
        return 10.0 ** (-loss_db / 10.0)

    def _compute_gain(self) -> np.ndarray:
        gain = self._path_gain * self.fading_power
        gain.setflags(write=False)
        return gain

    def _innovation(self) -> np.ndarray:
        if self.config.fading == "none":
            return np.ones(self.num_clients, dtype=np.complex128)
        real, imag = self._rng.normal(0.0, np.sqrt(0.5), (2, self.num_clients))
        return real + 1j * imag


def _reflect(x: np.ndarray, low: float, high: float) -> np.ndarray:
    """Folds ``x`` back into ``[low, high]`` as a mirror would, however far outside it lies."""
    width = high - low
    if width == 0:
        return np.full_like(x, low)
    offset = np.mod(x - low, 2.0 * width)
    return low + np.where(offset > width, 2.0 * width - offset, offset)


def uplink_rate_bps(
    share: ArrayLike, gain: ArrayLike, power_w: ArrayLike, bandwidth_hz: float, noise_psd_w_per_hz: float
) -> np.ndarray:
    """Shannon rate ``beta B log2(1 + p g / (beta B N0))`` of each client (0 where ``beta = 0``)."""
    share = np.asarray(share, dtype=np.float64)
    snr_full_band = np.asarray(power_w, dtype=np.float64) * np.asarray(gain, dtype=np.float64) / (
        bandwidth_hz * noise_psd_w_per_hz
    )
    if share.size and share.min() > 0 and share.max() < np.inf:  # the common case: no special values
        return share * bandwidth_hz * np.log1p(snr_full_band / share) / LN2
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = share * bandwidth_hz * np.log1p(snr_full_band / share) / LN2
    return np.where(share > 0, rate, 0.0)


def broadcast_rate_bps(gain: ArrayLike, power_w: float, bandwidth_hz: float, noise_psd_w_per_hz: float) -> float:
    """Rate of one transmission that every client must decode: ``B_D log2(1 + P g_min / (B_D N0))``."""
    worst_gain = float(np.min(gain))
    return float(bandwidth_hz * np.log1p(power_w * worst_gain / (bandwidth_hz * noise_psd_w_per_hz)) / LN2)


def unicast_rate_bps(
    gain: ArrayLike, power_w: float, bandwidth_hz: float, noise_psd_w_per_hz: float, num_clients: int
) -> np.ndarray:
    """Per-client downlink rate when the band and the power are split equally over ``num_clients``.

    Each sub-band carries ``P / K`` over ``B_D / K``, so the SNR equals the broadcast's at the same gain
    and only the bandwidth shrinks: ``(B_D / K) log2(1 + P g_k / (B_D N0))``.
    """
    check_int("num_clients", num_clients, low=1)
    return uplink_rate_bps(1.0 / num_clients, gain, power_w / num_clients, bandwidth_hz, noise_psd_w_per_hz)
