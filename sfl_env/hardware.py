"""Radio and processor parameters of the SFL system: :class:`WirelessConfig` and :class:`ComputeConfig`.

Every preset shares them; each field cites the source of its value. Like :mod:`sfl_env.config`, which
re-exports both, this module holds data only.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .errors import ConfigError
from .validation import check_choice, check_int, check_number

FADINGS: tuple[str, ...] = ("rayleigh", "none")
CLIENT_DEVICES: tuple[str, ...] = ("tiers", "peak")
GOVERNORS: tuple[str, ...] = ("measured", "none")


def dbm_to_w(dbm: ArrayLike) -> np.ndarray | float:
    return 10.0 ** ((np.asarray(dbm, dtype=np.float64) - 30.0) / 10.0)


def _check_range(name: str, value: Any, low: float, high: float) -> tuple[float, float]:
    """A pair ``(a, b)`` with ``low <= a <= b <= high``, as floats."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ConfigError(f"{name}={value!r} is invalid; allowed: a pair (low, high) with 0 < low <= high")
    low_value, high_value = value
    check_number(f"{name}[0]", low_value, low=low, high=high)
    check_number(f"{name}[1]", high_value, low=low, high=high)
    if low_value > high_value:
        raise ConfigError(f"{name}={value!r} is reversed; allowed: a pair (low, high) with 0 < low <= high")
    return float(low_value), float(high_value)


def _check_mix(value: Any) -> tuple[float, ...]:
    """Shares of the device tiers: one number >= 0 per tier, summing to 1."""
    allowed = f"{len(DEVICE_TIERS)} shares >= 0 (tiers {', '.join(t.name for t in DEVICE_TIERS)}) summing to 1"
    if not isinstance(value, (tuple, list)) or len(value) != len(DEVICE_TIERS):
        raise ConfigError(f"device_mix={value!r} is invalid; allowed: {allowed}")
    for i, share in enumerate(value):
        check_number(f"device_mix[{i}]", share, low=0.0, high=1.0)
    if abs(sum(value) - 1.0) > 1e-6:
        raise ConfigError(f"device_mix={value!r} sums to {sum(value):.6g}; allowed: {allowed}")
    return tuple(float(share) for share in value)


@dataclass(frozen=True)
class WirelessConfig:
    """Radio parameters of the cell: one LTE-class small cell (every preset shares it).

    Sources, per field: [36.814] 3GPP TR 36.814 v9.0.0, "Further advancements for E-UTRA physical layer
    aspects", Annex A.2 (system simulation parameters); [36.101] 3GPP TS 36.101, "E-UTRA UE radio
    transmission and reception"; [kT] thermal noise kT at 290 K. The SFL-GA paper's own parameter table
    is not available to this project, so the cell is the standard's.
    """

    bandwidth_mhz: float = 10.0  # uplink band B, shared by the clients (FDMA): an LTE channel [36.101 5.6]
    downlink_bandwidth_mhz: float = 10.0  # downlink band B_D, the same channel width
    noise_psd_dbm_per_hz: float = -174.0  # [kT]: 10 log10(1.38e-23 * 290 / 1e-3)
    client_power_dbm: float = 23.0  # 0.2 W, UE power class 3 [36.101 6.2.2]
    server_power_dbm: float = 30.0  # 1 W, the top of the pico-cell range [36.814 A.2.1.1.2]
    distance_km: tuple[float, float] = (0.05, 0.5)  # uniform; 500 m is case 1's inter-site distance [36.814 A.2.1.1]
    path_loss_intercept_db: float = 128.1  # macro-cell NLOS 128.1 + 37.6 log10(d km) [36.814 A.2.1.1.2]
    path_loss_slope_db: float = 37.6
    fading: str = "rayleigh"
    # Gauss-Markov rho between consecutive rounds. 0 is realistic: Jakes' rho = J0(2 pi f_d T) with a
    # pedestrian's Doppler f_d = v f_c / c = 6.7 Hz (3 km/h [36.814 A.2.1.1] at 2 GHz) has |rho| <= 0.12
    # for rounds of T = 1 s (|J0(x)| <= sqrt(2 / (pi x)), x = 42); the coherence time 0.423 / f_d is
    # 63 ms (Rappaport, "Wireless Communications", 2nd ed., 5.4.3).
    fading_correlation: float = 0.0
    # Coherence intervals one round spans: the round's fading power is the mean of this many independent
    # fades. 8: a round lasts about 0.5 s at the default's best cut, eight coherence times of 63 ms.
    # 1 holds one fade for the whole round, whose transfer time then has an infinite mean
    # (E[1/|h|^2] = inf for Rayleigh): one deep fade could stall a round for minutes.
    fading_blocks: int = 8
    mobility_km_per_round: float = 0.0  # std of each distance's per-round random walk
    # Large-scale shadowing: log-normal, std 8 dB [36.814 A.2.1.1.2, Table A.2.1.1.2-3, macro case 1];
    # 0 turns it off. Correlated in time by Gudmundson's model (M. Gudmundson, "Correlation model for
    # shadow fading in mobile radio systems", Electronics Letters 27(23), 1991): over a move of x m the
    # correlation is exp(-x / d), with the decorrelation distance d = 50 m of the urban macro cell
    # [25.996 5.3.1: 3GPP TR 25.996, spatial channel model, "8 dB, autocorrelation distance 50 m"].
    shadowing_db: float = 8.0
    shadowing_decorrelation_m: float = 50.0
    speed_km_h: float = 3.0  # a pedestrian [36.814 A.2.1.1]; the vehicular task moves at 30 km/h
    # A folder of measured uplink throughput traces that replace path loss, shadowing and fading (see
    # sfl_env.link_traces for the formats); None: the radio model above.
    link_trace: str | None = None

    def __post_init__(self) -> None:
        # Ranges: 1 kHz to 1 THz of band; 1 m to 1000 km (the path-loss model's far outside of either).
        check_number("bandwidth_mhz", self.bandwidth_mhz, low=1e-3, high=1e6)
        check_number("downlink_bandwidth_mhz", self.downlink_bandwidth_mhz, low=1e-3, high=1e6)
        check_number("noise_psd_dbm_per_hz", self.noise_psd_dbm_per_hz, low=-250.0, high=-50.0)
        check_number("client_power_dbm", self.client_power_dbm, low=-50.0, high=70.0)
        check_number("server_power_dbm", self.server_power_dbm, low=-50.0, high=70.0)
        object.__setattr__(self, "distance_km", _check_range("distance_km", self.distance_km, low=1e-3, high=1000.0))
        check_number("path_loss_intercept_db", self.path_loss_intercept_db, low=0.0, high=300.0)
        check_number("path_loss_slope_db", self.path_loss_slope_db, low=0.0, high=100.0)
        check_choice("fading", self.fading, FADINGS)
        check_number("fading_correlation", self.fading_correlation, low=0.0, high=1.0, high_open=True)
        check_int("fading_blocks", self.fading_blocks, low=1, high=10_000)
        if self.fading_correlation > 0 and self.fading_blocks > 1:
            raise ConfigError(f"fading_correlation={self.fading_correlation} needs fading_blocks=1: a round that spans "
                              f"{self.fading_blocks} coherence intervals is uncorrelated with the next one")
        check_number("mobility_km_per_round", self.mobility_km_per_round, low=0.0, high=1000.0)
        check_number("shadowing_db", self.shadowing_db, low=0.0, high=30.0)
        check_number("shadowing_decorrelation_m", self.shadowing_decorrelation_m, low=0.0, high=1e6, low_open=True)
        check_number("speed_km_h", self.speed_km_h, low=0.0, high=500.0)
        if self.link_trace is not None and (not isinstance(self.link_trace, str) or not self.link_trace):
            raise ConfigError(f"link_trace={self.link_trace!r} is invalid; allowed: None or the path of a folder "
                              "of throughput traces")

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

    @property
    def speed_m_per_s(self) -> float:
        return self.speed_km_h / 3.6


@dataclass(frozen=True)
class DeviceTier:
    """A class of phone: its performance cores' clock (datasheet) and its measured training throughput.

    ``training_gflops`` is the effective FP32 throughput of on-device training: the FLOPs of the
    measured workload counted by torch's FLOP counter over the measured time of one training iteration
    (``python benchmarks/device_throughput.py``). Its cycles per FLOP, clock over throughput, price the
    energy of those cycles (``kappa C f^2``).
    """

    name: str
    phone: str
    cpu_ghz: float
    training_gflops: float

    @property
    def cycles_per_flop(self) -> float:
        return self.cpu_ghz / self.training_gflops


# FLASH (C. Yang et al., "Characterizing Impacts of Heterogeneity in Federated Learning upon Large-Scale
# Smartphone Data", WWW 2021; BSD-2-Clause): one training iteration of LEAF's FEMNIST CNN (102.0 MFLOP
# per sample, batch 10) with DL4J takes 179 / 588 / 1642 ms on these phones. Clocks: the fastest core
# of each SoC, from Qualcomm's and Samsung's datasheets.
DEVICE_TIERS: tuple[DeviceTier, ...] = (
    DeviceTier("high", "Google Pixel 4 (Snapdragon 855)", cpu_ghz=2.84, training_gflops=5.70),
    DeviceTier("mid", "Xiaomi Redmi Note 7 Pro (Snapdragon 675)", cpu_ghz=2.0, training_gflops=1.73),
    DeviceTier("low", "Google Nexus S (Exynos 3110)", cpu_ghz=1.0, training_gflops=0.62),
)


@dataclass(frozen=True)
class ComputeConfig:
    """Processor speeds and how many cycles one FLOP costs on each side (every preset shares them).

    Clients (``client_devices``): ``"tiers"`` (the default) draws each client's phone from
    :data:`DEVICE_TIERS`, measured on-device training throughput of three phone generations, 0.6-5.7
    GFLOP/s, in the shares ``device_mix``; ``"peak"`` is the datasheet model, a clock uniform in
    ``client_cpu_ghz`` retiring ``1 / client_cycles_per_flop`` FLOPs per cycle (16 FP32 FLOPs: two
    128-bit NEON FMA pipelines, e.g. Arm Cortex-A76: 2 x 4 lanes x 2 FLOPs), 16-32 GFLOP/s, 3-50x faster
    than phones train. ``governor="measured"`` moves each client's clock round by round as a phone's
    governor moved it during on-device training (:mod:`sfl_env.availability`).

    Server: 3.2 TFLOP/s (100 GHz x 32 FLOPs per cycle), measured GPU training throughput: one NVIDIA
    V100 trains ResNet-50 at 367 images/s in FP32, 9.0 TFLOP/s at 24.6 GFLOP per image (NVIDIA
    DeepLearningExamples, PyTorch ResNet-50 v1.5 README, pytorch-21.03 container; 4.1 GMAC forward, x2
    FLOPs per MAC, x3 for forward and backward), so SFL gets about a third of one; one T4 measures 3.5
    TFLOP/s (428 images/s of FP32 ResNet-50 inference at batch 64, the same README).
    """

    client_cpu_ghz: tuple[float, float] = (1.0, 2.0)  # each client's frequency is uniform in this range
    client_cycles_per_flop: float = 1 / 16
    server_cycles_per_flop: float = 1 / 32
    server_cpu_ghz: float = 100.0
    # Client energy, E = kappa C f^2 for C cycles at f Hz plus p t to transmit for t s: the model and the
    # effective switched capacitance kappa = 1e-28 of Yang et al., "Energy efficient federated learning
    # over wireless communication networks", IEEE TWC 20(3), 2021 (and Mao et al., IEEE JSAC 2016).
    effective_capacitance: float = 1e-28
    # Time-varying availability of each client's CPU ([R]: a two-state Markov chain, our modelling
    # choice; no measured trace is available offline). A busy client (another app in the foreground)
    # gives training only ``busy_cpu_share`` of its frequency; ``busy_probability`` is the stationary
    # share of busy rounds (0: always idle) and ``busy_mean_rounds`` the mean length of a busy spell.
    busy_probability: float = 0.0
    busy_mean_rounds: float = 5.0
    busy_cpu_share: float = 0.25
    client_devices: str = "tiers"
    # Shares of the high, mid and low tiers ([R]: no measured market mix is available; equal shares).
    device_mix: tuple[float, ...] = (1 / 3, 1 / 3, 1 / 3)
    governor: str = "measured"

    def __post_init__(self) -> None:
        # Ranges: 1 MHz and up for any processor; 1e-6 to 1e6 cycles per FLOP.
        object.__setattr__(self, "client_cpu_ghz", _check_range("client_cpu_ghz", self.client_cpu_ghz, low=1e-3,
                                                                high=1e6))
        check_number("client_cycles_per_flop", self.client_cycles_per_flop, low=1e-6, high=1e6)
        check_number("server_cycles_per_flop", self.server_cycles_per_flop, low=1e-6, high=1e6)
        check_number("server_cpu_ghz", self.server_cpu_ghz, low=1e-3, high=1e9)
        check_number("effective_capacitance", self.effective_capacitance, low=0.0, high=1e-20)
        check_number("busy_probability", self.busy_probability, low=0.0, high=1.0, high_open=True)
        check_number("busy_mean_rounds", self.busy_mean_rounds, low=1.0, high=1e6)
        check_number("busy_cpu_share", self.busy_cpu_share, low=0.0, high=1.0, low_open=True)
        check_choice("client_devices", self.client_devices, CLIENT_DEVICES)
        check_choice("governor", self.governor, GOVERNORS)
        object.__setattr__(self, "device_mix", _check_mix(self.device_mix))

    @property
    def client_cpu_hz(self) -> tuple[float, float]:
        return self.client_cpu_ghz[0] * 1e9, self.client_cpu_ghz[1] * 1e9

    @property
    def server_cpu_hz(self) -> float:
        return self.server_cpu_ghz * 1e9
