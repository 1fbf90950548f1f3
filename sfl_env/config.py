"""One validated configuration of the SFL system, presets, and keyword arguments -> config.

This module holds data only: it imports no implementation module except the scheme catalogue (plain
declarations), so every layer can read a configuration; it reads one data file, the tuned learning
rates (``sfl_env/calibration/learning_rates.json``).

Every option is a plain dataclass field with a default; :meth:`SFLConfig.from_kwargs` builds a config
from keyword arguments (as ``gym.make`` passes them) and rejects unknown keys. Every value is checked at
construction, and a bad one raises :class:`ConfigError` naming the option, the value and what is allowed.
Presets are plain dicts of overrides.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .errors import ConfigError, unknown_name
from .schemes import SCHEMES
from .tasks import DEFAULT_TASK, PRESET_BUDGETS, TASKS, task_options
from .validation import check_choice, check_int, check_number

# The option vocabulary. Each implementation module checks itself against these names; a test checks
# that every name has an implementation.
DATASETS: tuple[str, ...] = ("shapes", "digits", "mnist", "fashion-mnist", "cifar10", "synthetic")
FILE_DATASETS: tuple[str, ...] = ("mnist", "fashion-mnist", "cifar10")  # read from data_dir
GENERATED_DATASETS: tuple[str, ...] = ("shapes", "synthetic")  # rendered from a seed; image_shape applies
PARTITIONS: tuple[str, ...] = ("iid", "dirichlet", "shards")
MODELS: tuple[str, ...] = ("cnn", "mlp", "lenet5", "vgg11", "resnet18")
AGGREGATION_WEIGHTS: tuple[str, ...] = ("data_size", "uniform")
FADINGS: tuple[str, ...] = ("rayleigh", "none")
TRAININGS: tuple[str, ...] = ("real", "analytic")
REWARDS: tuple[str, ...] = ("paper", "time_to_accuracy")
CONVERGENCE_FORMS: tuple[str, ...] = ("parameter_fraction", "bound", "calibrated")
PRIVACY_MODES: tuple[str, ...] = ("mask", "penalty")
PRIVACY_RULES: tuple[str, ...] = ("min_blocks", "leakage")
SOLVERS: tuple[str, ...] = ("exact", "cvxpy")
ALLOCATIONS: tuple[str, ...] = ("optimal", "equal")


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


@dataclass(frozen=True)
class WirelessConfig:
    """Radio parameters of the cell: one LTE-class small cell (every preset shares it).

    Sources, per field: [36.814] 3GPP TR 36.814 v9.0.0, "Further advancements for E-UTRA physical layer
    aspects", Annex A.2 (system simulation parameters); [36.101] 3GPP TS 36.101, "E-UTRA UE radio
    transmission and reception"; [kT] thermal noise kT at 290 K. paper_spec.md 8.2 lists the same values
    as its suggested defaults; the SFL-GA paper's own table is not available (paper_spec.md 12).
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
    """Processor speeds and how many cycles one FLOP costs on each side (every preset shares them).

    Clients are smartphone-class CPUs: 1-2 GHz cores that retire 16 FP32 FLOPs per cycle (two 128-bit
    NEON FMA pipelines, e.g. Arm Cortex-A76: 2 x 4 lanes x 2 FLOPs), i.e. 16-32 GFLOP/s. The edge server
    gives 100 GHz x 32 FLOPs/cycle = 3.2 TFLOP/s to SFL, under half of one inference GPU (NVIDIA T4:
    8.1 TFLOP/s FP32). paper_spec.md 8.2 lists the same values as its suggested defaults.
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

    @property
    def client_cpu_hz(self) -> tuple[float, float]:
        return self.client_cpu_ghz[0] * 1e9, self.client_cpu_ghz[1] * 1e9

    @property
    def server_cpu_hz(self) -> float:
        return self.server_cpu_ghz * 1e9


DEFAULT_LR = 0.05


@functools.lru_cache(maxsize=1)
def tuned_learning_rates() -> dict[tuple[str, str], dict[str, float]]:
    """(dataset, model) -> {scheme: lr}: each scheme's learning rate tuned with the same budget for every
    scheme on validation seeds, as ``benchmarks/tune_lr.py --write`` recorded it in
    ``sfl_env/calibration/learning_rates.json`` (with its grid, seeds and scores)."""
    source = resources.files("sfl_env.calibration").joinpath("learning_rates.json")
    if not source.is_file():
        return {}
    entries = json.loads(source.read_text())
    return {(e["dataset"], e["model"]): dict(e["lr"]) for e in entries.values()}


def default_lr(dataset: str, model: str, scheme: str) -> float:
    """The learning rate ``lr=None`` stands for: the tuned one, else :data:`DEFAULT_LR`."""
    return tuned_learning_rates().get((dataset, model), {}).get(scheme, DEFAULT_LR)


@dataclass(frozen=True)
class SFLConfig:
    """The SFL system: data, model, clients and the training scheme (paper_spec.md 1 and 8.2).

    The defaults are the ``shapes`` preset (docs/design.md, "The default preset")."""

    dataset: str = "shapes"
    data_dir: str | None = None
    num_train: int | None = None  # subset of the training set (None: all of it)
    num_test: int | None = None
    image_shape: tuple[int, int, int] | None = None  # generated datasets only (None: theirs)
    model: str = "vgg11"
    model_width: float = 0.25
    num_clients: int = 10
    partition: str = "dirichlet"
    dirichlet_alpha: float = 0.5  # (0, 1e6]; large is IID
    shards_per_client: int = 2
    batch_size: int = 32  # per client; 1 to the training set's size
    local_iters: int = 5  # 1 to 1000 per round
    lr: float | None = None  # (0, 1e6]; None: the scheme's tuned rate (default_lr)
    momentum: float = 0.9
    weight_decay: float = 0.0  # [0, 1]
    scheme: str = "sfl-ga"
    aggregation_weights: str = "data_size"
    gradient_aggregation: float = 1.0
    eval_every: int = 1
    device: str = "cpu"

    def __post_init__(self) -> None:
        check_choice("dataset", self.dataset, DATASETS)
        check_choice("model", self.model, MODELS)
        check_choice("partition", self.partition, PARTITIONS)
        check_choice("scheme", self.scheme, SCHEMES)
        check_choice("aggregation_weights", self.aggregation_weights, AGGREGATION_WEIGHTS)
        check_number("model_width", self.model_width, low=0.0, high=4.0, low_open=True)
        check_int("num_clients", self.num_clients, low=1, high=10_000)
        check_number("dirichlet_alpha", self.dirichlet_alpha, low=0.0, high=1e6, low_open=True)
        check_int("shards_per_client", self.shards_per_client, low=1)
        check_int("batch_size", self.batch_size, low=1)
        check_int("local_iters", self.local_iters, low=1, high=1000)
        if self.lr is None:
            object.__setattr__(self, "lr", default_lr(self.dataset, self.model, self.scheme))
        check_number("lr", self.lr, low=0.0, high=1e6, low_open=True)
        check_number("momentum", self.momentum, low=0.0, high=1.0, high_open=True)
        check_number("weight_decay", self.weight_decay, low=0.0, high=1.0)
        check_number("gradient_aggregation", self.gradient_aggregation, low=0.0, high=1.0)
        check_int("eval_every", self.eval_every, low=1)
        for name in ("num_train", "num_test"):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), low=1)
        if self.image_shape is not None:
            object.__setattr__(self, "image_shape", _check_image_shape(self.image_shape, self.dataset))
        if self.data_dir is not None and not isinstance(self.data_dir, str):
            raise ConfigError(f"data_dir={self.data_dir!r} is invalid; allowed: a directory path string or None")
        if self.dataset in FILE_DATASETS and self.data_dir is None:
            raise ConfigError(
                f"dataset={self.dataset!r} needs data_dir (a folder holding its files); nothing is downloaded"
            )
        if not isinstance(self.device, str) or not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ConfigError(f"device={self.device!r} is invalid; allowed: 'cpu', 'cuda' or 'cuda:N'")

    @classmethod
    def from_kwargs(cls, preset: str | None = None, **kwargs: Any) -> SFLConfig:
        """Builds a config from a preset (see :data:`PRESETS`; its system options) and keyword overrides."""
        kwargs = {key: plain(value) for key, value in kwargs.items()}
        known = {f.name for f in dataclasses.fields(cls)}
        for key in kwargs:
            if key not in known:
                raise unknown_name("option", key, known)
        values = {k: v for k, v in preset_options(preset).items() if k in known}
        values.update(kwargs)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def plain(value: Any) -> Any:
    """``value`` with numpy scalars (also inside tuples and lists) as Python numbers; bools stay bools
    and are refused where a number is expected."""
    if isinstance(value, np.generic) and not isinstance(value, np.bool_):
        return value.item()
    if isinstance(value, (tuple, list)):
        return type(value)(plain(v) for v in value)
    return value


def _check_image_shape(value: Any, dataset: str) -> tuple[int, int, int]:
    if dataset not in GENERATED_DATASETS:
        raise ConfigError(f"image_shape={value!r} applies to the generated datasets ({', '.join(GENERATED_DATASETS)}) "
                          f"only; dataset={dataset!r} has its own shape, so leave image_shape=None")
    if not isinstance(value, (tuple, list)) or len(value) != 3:
        raise ConfigError(f"image_shape={value!r} is invalid; allowed: (channels, height, width)")
    # generated sets are held in memory: 20,000 rendered images of 3x64x64 already take about 1 GB
    for i, (v, high) in enumerate(zip(value, (3, 64, 64))):
        check_int(f"image_shape[{i}]", v, low=1, high=high)
    return tuple(int(v) for v in value)


# Presets: named sets of options, any of ``gym.make``'s keywords. The system parameters they share
# (radio, compute) are the defaults of WirelessConfig and ComputeConfig, with their sources there.
DEFAULT_PRESET = "shapes"
PRESETS: dict[str, dict[str, Any]] = {
    # The default: split learning's regime (FL / SFL-GA round latency >= 2, benchmarks/regimes.py).
    "shapes": {},
    # The tiny, fast one: scikit-learn's 8x8 digits and a 3-conv CNN (FL is faster than SFL here).
    "digits": {"dataset": "digits", "model": "cnn", "model_width": 1.0, "momentum": 0.0, "target_accuracy": 0.9},
    "mnist": {"dataset": "mnist", "model": "lenet5", "model_width": 1.0, "momentum": 0.0, "target_accuracy": 0.9},
    "fashion-mnist": {"dataset": "fashion-mnist", "model": "lenet5", "model_width": 1.0, "momentum": 0.0,
                      "target_accuracy": 0.8},
    "cifar10": {
        "dataset": "cifar10", "model": "vgg11", "model_width": 0.25,
        "batch_size": 64, "momentum": 0.9, "weight_decay": 5e-4, "target_accuracy": 0.7,
    },
}


def preset_options(preset: str | None) -> dict[str, Any]:
    """The options of ``preset`` (None: the default preset, whose options are the defaults)."""
    if preset is None:
        return {}
    check_choice("preset", preset, tuple(PRESETS))
    return dict(PRESETS[preset])


@dataclass(frozen=True)
class EnvConfig:
    """Everything ``gym.make("SFLEnv-v0", **kwargs)`` accepts: the SFL system, the radio and compute
    model, and the episode, reward, privacy and solver options. Keyword arguments are flat; each is
    routed to the sub-config that owns it."""

    system: SFLConfig = SFLConfig()
    wireless: WirelessConfig = WirelessConfig()
    compute: ComputeConfig = ComputeConfig()
    training: str = "real"  # "real" PyTorch rounds, or the calibrated "analytic" model
    task: str = "default"  # see TASKS; it sets the options below that it names
    target_accuracy: float = 0.8
    reward: str = "time_to_accuracy"
    # Budgets of an episode (docs/design.md, "The objective"). Exhausting one before the target ends the
    # episode as a failure that pays a terminal cost; None: no such budget.
    # Simulated seconds; the tasks set it per preset (PRESET_BUDGETS), and this default is the shapes one.
    time_budget_s: float | None = PRESET_BUDGETS[DEFAULT_PRESET]["time_budget_s"]
    leakage_budget: float | None = None  # sum over rounds of the cut's distance correlation (privacy)
    energy_budget_j: float | None = None  # joules per client (the first client to run out ends it)
    max_rounds: int = 1000  # a time limit, not a budget: the episode is truncated (bootstrap past it)
    rho: float = 0.5  # paper reward: weight of the convergence term against the latency term
    convergence: str = "parameter_fraction"
    privacy: str = "mask"
    privacy_rule: str = "min_blocks"
    min_client_blocks: int = 1
    max_leakage: float | None = None
    privacy_penalty: float = 1.0
    solver: str = "exact"
    allocation: str = "optimal"

    def __post_init__(self) -> None:
        check_choice("training", self.training, TRAININGS)
        check_choice("task", self.task, tuple(TASKS))
        check_int("max_rounds", self.max_rounds, low=1)
        for name in ("time_budget_s", "leakage_budget", "energy_budget_j"):
            if getattr(self, name) is not None:
                check_number(name, getattr(self, name), low=0.0, high=1e12, low_open=True)
        check_number("target_accuracy", self.target_accuracy, low=0.0, high=1.0, low_open=True)
        check_number("rho", self.rho, low=0.0, high=1.0)
        check_choice("reward", self.reward, REWARDS)
        check_choice("convergence", self.convergence, CONVERGENCE_FORMS)
        check_choice("privacy", self.privacy, PRIVACY_MODES)
        check_choice("privacy_rule", self.privacy_rule, PRIVACY_RULES)
        check_int("min_client_blocks", self.min_client_blocks, low=1)
        if self.max_leakage is not None:
            check_number("max_leakage", self.max_leakage, low=0.0, high=1.0)
        if self.privacy_rule == "leakage" and self.max_leakage is None:
            raise ConfigError("privacy_rule='leakage' needs max_leakage, a distance correlation in [0, 1]")
        if self.privacy_rule == "leakage" and self.training != "real":
            raise ConfigError("privacy_rule='leakage' measures real smashed data; it needs training='real' "
                              "(SFLEnv-v0), or privacy_rule='min_blocks'")
        check_number("privacy_penalty", self.privacy_penalty, low=0.0)
        check_choice("solver", self.solver, SOLVERS)
        check_choice("allocation", self.allocation, ALLOCATIONS)
        if self.convergence == "bound":
            raise ConfigError("convergence='bound' needs measured block statistics; in the env use "
                              "'parameter_fraction' or 'calibrated'")

    @classmethod
    def from_kwargs(cls, preset: str | None = None, task: str = DEFAULT_TASK, **kwargs: Any) -> EnvConfig:
        """A config from a preset, then a task on it (:func:`task_options`), then keyword overrides.
        Numpy scalars are taken as the Python numbers they hold."""
        kwargs = {key: plain(value) for key, value in kwargs.items()}
        groups = {name: {f.name for f in dataclasses.fields(kind)}
                  for name, kind in (("system", SFLConfig), ("wireless", WirelessConfig), ("compute", ComputeConfig))}
        own = {f.name for f in dataclasses.fields(cls)} - set(groups)
        routed: dict[str, dict[str, Any]] = {name: {} for name in groups}
        top: dict[str, Any] = {}
        known = own.union(*groups.values())
        for key in kwargs:
            if key not in known:
                raise unknown_name("option", key, known)
        for key, value in (preset_options(preset) | task_options(task, preset or DEFAULT_PRESET) | kwargs).items():
            if key in own:
                top[key] = value
                continue
            owner = next((name for name, fields in groups.items() if key in fields), None)
            if owner is None:
                raise unknown_name("option", key, known)
            routed[owner][key] = value
        return cls(
            task=task,
            system=SFLConfig(**routed["system"]),
            wireless=WirelessConfig(**routed["wireless"]),
            compute=ComputeConfig(**routed["compute"]),
            **top,
        )

    def to_kwargs(self) -> dict[str, Any]:
        """The flat keyword form (inverse of :meth:`from_kwargs`)."""
        flat = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name not in ("system", "wireless", "compute")}
        for part in (self.system, self.wireless, self.compute):
            flat |= dataclasses.asdict(part)
        return flat



def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``key=value`` strings (as the scripts take them) -> keyword arguments; values are Python literals
    where they parse, strings otherwise."""
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is malformed; expected key=value, e.g. lr=0.1")
        try:
            out[key] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            out[key] = raw
    return out
