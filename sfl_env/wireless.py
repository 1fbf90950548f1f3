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

import math
from collections.abc import Sequence

import numpy as np
from numba import njit
from numpy.typing import ArrayLike

from solvers import row_runs, shannon_rate_bps
from solvers.kernel_cache import drop_stale_kernels
from solvers.row_runs import claim_rows

from .config import WirelessConfig
from .draws import EpisodeGenerators
from .validation import check_int

drop_stale_kernels(__file__, row_runs.__file__)  # the row claims are compiled in
_ROWS_PER_CLAIM = 32  # episodes a run of a round's draws and moves takes at a time (~30 us)


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
    distance by a Gaussian step per round, reflected back into the configured range.

    ``rng`` is one generator (one episode: the arrays have shape (K,)) or a sequence of E generators,
    one per episode of a vectorised env (the arrays have shape (E, K), row e drawn from ``rng[e]``
    alone, in the order one episode draws; :meth:`restart` begins new episodes in some rows). The one
    episode is the batch of one, so an episode's channel is the same alone and in a batch.
    """

    def __init__(self, num_clients: int, config: WirelessConfig,
                 rng: np.random.Generator | Sequence[np.random.Generator]) -> None:
        check_int("num_clients", num_clients, low=1)
        self.num_clients = num_clients
        self.config = config
        self._single = isinstance(rng, np.random.Generator)
        rngs = EpisodeGenerators.of([rng] if self._single else rng)
        shape = (len(rngs), num_clients)
        self._rngs = rngs
        self._distance_m, self._shadowing_db = np.zeros(shape), np.zeros(shape)
        self._fading, self._power = np.ones(shape, dtype=np.complex128), np.ones(shape)
        self._path_gain = np.zeros(shape)
        self.restart(np.arange(len(rngs)), rngs)

    def restart(self, rows: np.ndarray, rngs: Sequence[np.random.Generator]) -> None:
        """Begins a new episode in each of ``rows``, drawn from the matching generator of ``rngs``."""
        config, k = self.config, self.num_clients
        low, high = config.distance_m
        rayleigh = config.fading == "rayleigh"
        self._rngs.replace(rows, list(rngs))
        rows = np.asarray(rows, dtype=np.int64)
        # Each episode draws from its own generator, in this order.
        self._rngs.uniform(low, high, self._distance_m, rows)
        if config.shadowing_db > 0:
            self._rngs.normal(0.0, config.shadowing_db, self._shadowing_db, rows)
        else:
            self._shadowing_db[rows] = 0.0
        if config.fading != "none":
            parts = np.empty((len(self._rngs), 2, k))
            self._rngs.normal(0.0, np.sqrt(0.5), parts, rows)
            self._fading[rows] = parts[rows, 0] + 1j * parts[rows, 1]
        others = np.empty((len(self._rngs), config.fading_blocks - 1 if rayleigh else 0, k))
        if others.size:
            self._rngs.exponential(1.0, others, rows)
        _settle(rows, self._fading, others, config.fading_blocks, self._distance_m, self._shadowing_db,
                config.path_loss_intercept_db, config.path_loss_slope_db, self._power, self._path_gain)
        self._gain = self._compute_gain()

    def step(self, elapsed_s: float | np.ndarray) -> None:
        """Advances every episode past a round that lasted ``elapsed_s`` simulated seconds (one value, or
        one per episode): new fading state, the shadowing's move over ``elapsed_s``, then the mobility
        step of every distance."""
        config, k = self.config, self.num_clients
        episodes = len(self._rngs)
        elapsed_s = np.asarray(elapsed_s, dtype=np.float64)
        moved_m = config.speed_m_per_s * (elapsed_s if elapsed_s.shape == (episodes,) else np.full(episodes, elapsed_s))
        moves = (moved_m > 0) if config.shadowing_db > 0 else np.zeros(episodes, dtype=bool)
        rayleigh, mobile = config.fading == "rayleigh", config.mobility_m_per_round > 0
        state = (self._fading, self._power, self._shadowing_db, self._distance_m, self._path_gain, moved_m, moves)
        constants = (rayleigh, mobile, config.fading_correlation, np.sqrt(1.0 - config.fading_correlation**2),
                     config.fading_blocks, config.shadowing_db, config.shadowing_decorrelation_m,
                     config.mobility_m_per_round, *config.distance_m, config.path_loss_intercept_db,
                     config.path_loss_slope_db)  # fmt: skip
        if episodes > 1 and self._rngs.distinct:  # each row draws its round, then moves, in one compiled loop
            self._rngs.over_episodes(lambda gens, claims: _step_rows(gens, claims, *state, *constants))
        else:  # numpy's own draws for one episode; a generator serving two rows draws them row after row
            _advance_rows(*state, *self._draws(moves), *constants)
        self._gain = self._compute_gain()

    def _draws(self, moves: np.ndarray) -> tuple[np.ndarray, ...]:
        """A round's standard draws of every episode, each from its own generator, in this order: the fading
        innovation (E, 2, K) normals, the round's other blocks' (E, blocks - 1, K) exponentials, the shadowing's
        (E, K) normals (rows that moved), the mobility's (E, K) normals; a draw not made has no row entries."""
        config, k, episodes = self.config, self.num_clients, len(self._rngs)
        rayleigh = config.fading == "rayleigh"
        innovation = np.empty((episodes, 2 if rayleigh else 0, k))
        others = np.empty((episodes, config.fading_blocks - 1 if rayleigh else 0, k))
        shadowing_draw, mobility_draw = np.empty((episodes, k)), np.empty((episodes, k))
        if innovation.size:
            self._rngs.standard_normal(innovation)
        if others.size:
            self._rngs.standard_exponential(others)
        if moves.any():
            self._rngs.standard_normal(shadowing_draw, np.flatnonzero(moves))
        if config.mobility_m_per_round > 0:
            self._rngs.standard_normal(mobility_draw)
        return innovation, others, shadowing_draw, mobility_draw

    def sample_gains(self, rng: np.random.Generator, samples: int) -> np.ndarray:
        """(samples, K) gains of a round drawn from the fading distribution at the current distances and
        shadowing (which persists over seconds), from ``rng``: what a planner may know of the coming
        rounds. Moves no state of the channel. One episode only."""
        blocks, shape = self.config.fading_blocks, (samples, self.num_clients)
        fading = rng.gamma(blocks, 1.0 / blocks, shape) if self.config.fading == "rayleigh" else np.ones(shape)
        return self.path_gain * fading

    def _view(self, array: np.ndarray) -> np.ndarray:
        return array[0] if self._single else array

    @property
    def distance_m(self) -> np.ndarray:
        return self._view(self._distance_m).copy()

    @property
    def path_gain(self) -> np.ndarray:
        """``10^(-(PL_k - X_k)/10)``: each client's gain at its current distance and shadowing, without
        fading (the large-scale gain)."""
        return self._view(self._path_gain).copy()

    @property
    def shadowing_db(self) -> np.ndarray:
        return self._view(self._shadowing_db).copy()

    @property
    def fading_power(self) -> np.ndarray:
        """``|h_k|^2`` of this round (1 without fading)."""
        return self._view(self._power).copy()

    @property
    def gain(self) -> np.ndarray:
        """Linear power gain ``g_k = 10^(-PL_k/10) |h_k|^2`` of each client, shape (K,) (or (E, K)), read-only."""
        return self._view(self._gain)

    def _compute_gain(self) -> np.ndarray:
        gain = self._path_gain * self._power
        gain.setflags(write=False)
        return gain


@njit(cache=True, error_model="numpy", nogil=True)
def _step_rows(gens, claims, fading, power, shadowing_db, distance_m, path_gain, moved_m, moves, rayleigh, mobile,
               rho, rho_keep, blocks, shadowing_std_db, decorrelation_m, mobility_m, low_m, high_m, intercept_db,
               slope_db) -> None:  # fmt: skip
    """Channel.step on the rows taken from ``claims`` (:func:`solvers.row_runs.claim_rows`), in place: each row
    draws its round from ``gens[row]`` as :meth:`Channel._draws` orders them (numba's draws are numpy's), then
    moves (:func:`_advance_row`)."""
    clients = fading.shape[1]
    innovation = np.empty((2 if rayleigh else 0, clients))
    others = np.empty((blocks - 1 if rayleigh else 0, clients))
    shadowing_draw, mobility_draw = np.empty(clients), np.empty(clients)
    while True:
        start, stop = claim_rows(claims, _ROWS_PER_CLAIM)
        if start == stop:
            return
        for e in range(start, stop):
            g = gens[e]
            for i in range(innovation.shape[0]):
                for k in range(clients):
                    innovation[i, k] = g.standard_normal()
            for i in range(others.shape[0]):
                for k in range(clients):
                    others[i, k] = g.standard_exponential()
            if moves[e]:
                for k in range(clients):
                    shadowing_draw[k] = g.standard_normal()
            if mobile:
                for k in range(clients):
                    mobility_draw[k] = g.standard_normal()
            _advance_row(e, fading, power, shadowing_db, distance_m, path_gain, moved_m, moves, innovation, others,
                         shadowing_draw, mobility_draw, rayleigh, mobile, rho, rho_keep, blocks, shadowing_std_db,
                         decorrelation_m, mobility_m, low_m, high_m, intercept_db, slope_db)  # fmt: skip


@njit(cache=True, error_model="numpy", nogil=True)
def _advance_rows(fading, power, shadowing_db, distance_m, path_gain, moved_m, moves, innovation, others,
                  shadowing_draw, mobility_draw, rayleigh, mobile, rho, rho_keep, blocks, shadowing_std_db,
                  decorrelation_m, mobility_m, low_m, high_m, intercept_db, slope_db) -> None:  # fmt: skip
    """Channel.step on every row, in place, from the round's draws (:meth:`Channel._draws`)."""
    for e in range(fading.shape[0]):
        _advance_row(e, fading, power, shadowing_db, distance_m, path_gain, moved_m, moves, innovation[e], others[e],
                     shadowing_draw[e], mobility_draw[e], rayleigh, mobile, rho, rho_keep, blocks, shadowing_std_db,
                     decorrelation_m, mobility_m, low_m, high_m, intercept_db, slope_db)  # fmt: skip


@njit(cache=True, error_model="numpy", nogil=True)
def _advance_row(e, fading, power, shadowing_db, distance_m, path_gain, moved_m, moves, innovation, others,
                 shadowing_draw, mobility_draw, rayleigh, mobile, rho, rho_keep, blocks, shadowing_std_db,
                 decorrelation_m, mobility_m, low_m, high_m, intercept_db, slope_db) -> None:  # fmt: skip
    """Row e's move over a round, in place, from its standard draws (innovation (2, K) read if ``rayleigh``,
    others (blocks - 1, K), shadowing_draw (K,) read if ``moves[e]``, mobility_draw (K,) read if ``mobile``):
    the Gauss-Markov fading and the round's fading power, Gudmundson's shadowing move, the reflected mobility
    step, then the large-scale gain where the shadowing or the distance moved."""
    half = math.sqrt(0.5)
    moved_shadowing = moves[e]
    kept = math.exp(-moved_m[e] / decorrelation_m) if moved_shadowing else 0.0
    for k in range(fading.shape[1]):
        if rayleigh:
            fresh = complex(half * innovation[0, k], half * innovation[1, k])
            fading[e, k] = fresh if rho == 0 else complex(rho * fading[e, k].real + rho_keep * fresh.real,
                                                          rho * fading[e, k].imag + rho_keep * fresh.imag)
        power[e, k] = _round_power(fading[e, k], others, blocks, k)
        if moved_shadowing:
            shadowing_db[e, k] = kept * shadowing_db[e, k] + math.sqrt(1.0 - kept * kept) * (
                shadowing_std_db * shadowing_draw[k])
        if mobile:
            distance_m[e, k] = _reflected(distance_m[e, k] + mobility_m * mobility_draw[k], low_m, high_m)
        if moved_shadowing or mobile:  # each row by its own moves only
            path_gain[e, k] = _path_gain(distance_m[e, k], shadowing_db[e, k], intercept_db, slope_db)


@njit(cache=True, error_model="numpy", nogil=True)
def _settle(rows, fading, others, blocks, distance_m, shadowing_db, intercept_db, slope_db, power, path_gain) -> None:
    """The fading power and the large-scale gain of new episodes in ``rows``, from their drawn state."""
    for e in rows:
        for k in range(fading.shape[1]):
            power[e, k] = _round_power(fading[e, k], others[e], blocks, k)
            path_gain[e, k] = _path_gain(distance_m[e, k], shadowing_db[e, k], intercept_db, slope_db)


@njit(cache=True, error_model="numpy", nogil=True)
def _round_power(fade, others, blocks, k) -> float:
    """``|h|^2`` of a round: its first block's fade (the Gauss-Markov state) averaged with the ``blocks - 1``
    independent fades ``others[:, k]`` of the round's other coherence intervals (none: one block)."""
    magnitude = abs(fade)
    if others.shape[0] == 0:
        return magnitude * magnitude
    total = 0.0
    for b in range(others.shape[0]):
        total += others[b, k]
    return (magnitude * magnitude + total) / blocks


@njit(cache=True, error_model="numpy", nogil=True)
def _path_gain(distance_m, shadowing_db, intercept_db, slope_db) -> float:
    """:func:`large_scale_gain` of one client."""
    return 10.0 ** (-(intercept_db + slope_db * math.log10(distance_m / 1000.0) - shadowing_db) / 10.0)


@njit(cache=True, error_model="numpy", nogil=True)
def _reflected(x: float, low: float, high: float) -> float:
    """``x`` folded back into ``[low, high]`` as a mirror would, however far outside it lies."""
    width = high - low
    if width == 0:
        return low
    offset = (x - low) % (2.0 * width)
    return low + (2.0 * width - offset if offset > width else offset)


def uplink_rate_bps(
    share: ArrayLike, gain: ArrayLike, power_w: ArrayLike, bandwidth_hz: float, noise_psd_w_per_hz: float
) -> np.ndarray:
    """Shannon rate ``beta B log2(1 + p g / (beta B N0))`` of each client (0 where ``beta = 0``)."""
    snr_full_band = np.asarray(power_w, dtype=np.float64) * np.asarray(gain, dtype=np.float64) / (
        bandwidth_hz * noise_psd_w_per_hz
    )
    return shannon_rate_bps(share, snr_full_band, bandwidth_hz)


def broadcast_rate_bps(gain: ArrayLike, power_w: float, bandwidth_hz: float, noise_psd_w_per_hz: float):
    """Rate of one transmission that every client must decode: ``B_D log2(1 + P g_min / (B_D N0))``, the
    minimum over the last axis of ``gain``: a float for (K,) gains, an array (N,) for (N, K)."""
    worst_gain = np.min(np.asarray(gain, dtype=np.float64), axis=-1)
    rate = shannon_rate_bps(1.0, power_w * worst_gain / (bandwidth_hz * noise_psd_w_per_hz), bandwidth_hz)
    return float(rate) if rate.ndim == 0 else rate


def unicast_rate_bps(
    gain: ArrayLike, power_w: float, bandwidth_hz: float, noise_psd_w_per_hz: float, num_clients: int
) -> np.ndarray:
    """Per-client downlink rate when the band and the power are split equally over ``num_clients``.

    Each sub-band carries ``P / K`` over ``B_D / K``, so the SNR equals the broadcast's at the same gain
    and only the bandwidth shrinks: ``(B_D / K) log2(1 + P g_k / (B_D N0))``.
    """
    check_int("num_clients", num_clients, low=1)
    return uplink_rate_bps(1.0 / num_clients, gain, power_w / num_clients, bandwidth_hz, noise_psd_w_per_hz)
