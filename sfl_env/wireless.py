"""Wireless channel of one cell: one edge server, K clients around it.

Uplink: FDMA, client ``k`` gets a share ``beta_k`` of the band ``B`` and transmits at power ``p`` with
the Shannon rate ``beta_k B log2(1 + p g_k / (beta_k B N0))``. Downlink: the server either broadcasts
one message over the whole band ``B_D`` (the worst client limits the rate) or unicasts to every client
over an equal share ``1/K`` of it. The power gain ``g_k = 10^(-(PL(d_k) - X_k)/10) |h_k|^2`` combines
the log-distance path loss ``PL = 128.1 + 37.6 log10(d_km)`` dB, log-normal shadowing ``X_k`` (dB) that
persists over seconds, and Rayleigh fading that may be correlated in time (Gauss-Markov); distances may
drift (slow mobility). Measured throughput traces may replace all three (:mod:`sfl_env.link_traces`).

Configs take dB, dBm, MHz, GHz and km at their edges, as papers quote them; everything computed here
is SI (Hz, W, W/Hz, m, bit/s, cycles/s).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from solvers import shannon_rate_bps

from .config import WirelessConfig
from .validation import check_int



def path_loss_db(distance_m: ArrayLike, intercept_db: float = 128.1, slope_db: float = 37.6) -> np.ndarray:
    """Log-distance path loss ``intercept + slope * log10(d / 1 km)`` in dB."""
    return intercept_db + slope_db * np.log10(np.asarray(distance_m, dtype=np.float64) / 1000.0)


def large_scale_gain(distance_m: ArrayLike, config: WirelessConfig, shadowing_db: ArrayLike = 0.0) -> np.ndarray:
    """``10^(-(PL(d) - X)/10)``: the gain at distance ``d`` with shadowing ``X`` dB, without fading."""
    loss_db = path_loss_db(distance_m, config.path_loss_intercept_db, config.path_loss_slope_db) - shadowing_db
    return 10.0 ** (-loss_db / 10.0)


def nominal_path_gain(num_clients: int, config: WirelessConfig) -> np.ndarray:
    """The path gains of ``num_clients`` typical clients, drawn by no generator: client ``k`` at quantile
    ``(k + 1/2) / K`` of the distance range, without shadowing or fading."""
    quantiles = (np.arange(num_clients) + 0.5) / num_clients
    low, high = config.distance_m
    return large_scale_gain(low + quantiles * (high - low), config)


class Channel:
    """The clients' distances, shadowing and fading states, advanced one training round at a time.

    Shadowing ``X_k ~ N(0, sigma^2)`` dB follows Gudmundson's model in time: a client that moves at
    speed ``v`` for the round's ``dt`` seconds keeps ``a = exp(-v dt / d_corr)`` of its shadowing,
    ``X' = a X + sqrt(1 - a^2) sigma w`` with ``w ~ N(0, 1)``, so the process is stationary and its
    autocorrelation over ``tau`` seconds is ``exp(-v tau / d_corr)`` whatever the rounds' lengths.

    Rayleigh fading follows the Gauss-Markov process ``h_t = rho h_{t-1} + sqrt(1 - rho^2) w_t`` with
    ``w_t`` circularly-symmetric complex Gaussian of unit power, so ``|h_t|^2 ~ Exp(1)`` in every round
    and ``rho = 0`` redraws it independently. A round that spans ``N = fading_blocks`` coherence
    intervals sees N independent fades (block fading); its fading power is their mean, ``|h|^2 ~
    Gamma(N, 1/N)`` (mean 1), the power the round's transfers average over. Slow mobility moves each
    distance by a Gaussian step per round, reflected back into the configured range. All randomness
    comes from ``rng``.
    """

    def __init__(self, num_clients: int, config: WirelessConfig, rng: np.random.Generator) -> None:
        check_int("num_clients", num_clients, low=1)
        self.num_clients = num_clients
        self.config = config
        self._rng = rng
        self._distance_m = rng.uniform(*config.distance_m, num_clients)
        self._shadowing_db = rng.normal(0.0, config.shadowing_db, num_clients) if config.shadowing_db > 0 \
            else np.zeros(num_clients)
        self._path_gain = self._compute_path_gain()
        self._fading = self._innovation()
        self._power = self._block_power()
        self._gain = self._compute_gain()

    def step(self, elapsed_s: float) -> None:
        """Advances past a round that lasted ``elapsed_s`` simulated seconds: new fading state, the
        shadowing's move over ``elapsed_s``, then the mobility step of every distance."""
        rho = self.config.fading_correlation
        if self.config.fading == "rayleigh" and rho == 0:
            self._fading = self._innovation()  # independent redraw
        elif self.config.fading == "rayleigh":
            self._fading = rho * self._fading + np.sqrt(1.0 - rho**2) * self._innovation()
        self._power = self._block_power()
        moved_m = self.config.speed_m_per_s * elapsed_s
        shadowing_moves = self.config.shadowing_db > 0 and moved_m > 0
        if shadowing_moves:
            kept = np.exp(-moved_m / self.config.shadowing_decorrelation_m)
            innovation = self._rng.normal(0.0, self.config.shadowing_db, self.num_clients)
            self._shadowing_db = kept * self._shadowing_db + np.sqrt(1.0 - kept**2) * innovation
        if self.config.mobility_m_per_round > 0:
            moved = self._distance_m + self._rng.normal(0.0, self.config.mobility_m_per_round, self.num_clients)
            self._distance_m = _reflect(moved, *self.config.distance_m)
        if shadowing_moves or self.config.mobility_m_per_round > 0:
            self._path_gain = self._compute_path_gain()
        self._gain = self._compute_gain()

    def sample_gains(self, rng: np.random.Generator, samples: int) -> np.ndarray:
        """(samples, K) gains of a round drawn from the fading distribution at the current distances and
        shadowing (which persists over seconds), from ``rng``: what a planner may know of the coming
        rounds. Moves no state of the channel."""
        blocks, shape = self.config.fading_blocks, (samples, self.num_clients)
        fading = rng.gamma(blocks, 1.0 / blocks, shape) if self.config.fading == "rayleigh" else np.ones(shape)
        return self._path_gain * fading

    @property
    def distance_m(self) -> np.ndarray:
        return self._distance_m.copy()

    @property
    def path_gain(self) -> np.ndarray:
        """``10^(-(PL_k - X_k)/10)``: each client's gain at its current distance and shadowing, without
        fading (the large-scale gain)."""
        return self._path_gain.copy()

    @property
    def shadowing_db(self) -> np.ndarray:
        return self._shadowing_db.copy()

    @property
    def fading_power(self) -> np.ndarray:
        """``|h_k|^2`` of this round (1 without fading)."""
        return self._power

    def _block_power(self) -> np.ndarray:
        """``|h|^2`` of the round: its first block's fade (the Gauss-Markov state) averaged with the
        ``fading_blocks - 1`` independent fades of the round's other coherence intervals."""
        power = np.abs(self._fading) ** 2
        blocks = self.config.fading_blocks
        if blocks > 1 and self.config.fading == "rayleigh":
            others = self._rng.exponential(1.0, (blocks - 1, self.num_clients))
            power = (power + others.sum(0)) / blocks
        return power

    @property
    def gain(self) -> np.ndarray:
        """Linear power gain ``g_k = 10^(-PL_k/10) |h_k|^2`` of each client, shape (K,), read-only."""
        return self._gain

    def _compute_path_gain(self) -> np.ndarray:
        """``10^(-(PL_k - X_k)/10)`` of each client (recomputed only when distances or shadowing move)."""
        return large_scale_gain(self._distance_m, self.config, self._shadowing_db)

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
    snr_full_band = np.asarray(power_w, dtype=np.float64) * np.asarray(gain, dtype=np.float64) / (
        bandwidth_hz * noise_psd_w_per_hz
    )
    return shannon_rate_bps(share, snr_full_band, bandwidth_hz)


def broadcast_rate_bps(gain: ArrayLike, power_w: float, bandwidth_hz: float, noise_psd_w_per_hz: float) -> float:
    """Rate of one transmission that every client must decode: ``B_D log2(1 + P g_min / (B_D N0))``."""
    worst_gain = float(np.min(gain))
    return float(shannon_rate_bps(1.0, power_w * worst_gain / (bandwidth_hz * noise_psd_w_per_hz), bandwidth_hz))


def unicast_rate_bps(
    gain: ArrayLike, power_w: float, bandwidth_hz: float, noise_psd_w_per_hz: float, num_clients: int
) -> np.ndarray:
    """Per-client downlink rate when the band and the power are split equally over ``num_clients``.

    Each sub-band carries ``P / K`` over ``B_D / K``, so the SNR equals the broadcast's at the same gain
    and only the bandwidth shrinks: ``(B_D / K) log2(1 + P g_k / (B_D N0))``.
    """
    check_int("num_clients", num_clients, low=1)
    return uplink_rate_bps(1.0 / num_clients, gain, power_w / num_clients, bandwidth_hz, noise_psd_w_per_hz)
