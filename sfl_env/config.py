"""One validated configuration of the SFL system, presets, and keyword arguments -> config.

Every option is a plain dataclass field with a default; :meth:`SFLConfig.from_kwargs` builds a config
from keyword arguments (as ``gym.make`` passes them) and rejects unknown keys. Every value is checked at
construction, and a bad one raises :class:`ConfigError` naming the option, the value and what is allowed.
Presets are plain dicts of overrides.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from typing import Any

from .data import DATASETS, PARTITIONS
from .models import MODELS
from .convergence import GAMMA_FORMS
from .privacy import PRIVACY_RULES
from .schemes import AGGREGATION_WEIGHTS, SCHEMES
from .validation import ConfigError, check_choice, check_int, check_number
from .wireless import ComputeConfig, WirelessConfig


@dataclass(frozen=True)
class SFLConfig:
    """The SFL system: data, model, clients and the training scheme (paper_spec.md 1 and 8.2)."""

    dataset: str = "digits"
    data_dir: str | None = None
    num_train: int | None = None  # subset of the training set (None: all of it)
    num_test: int | None = None
    model: str = "cnn"
    model_width: float = 1.0
    num_clients: int = 10
    partition: str = "dirichlet"
    dirichlet_alpha: float = 0.5
    shards_per_client: int = 2
    batch_size: int = 32
    local_iters: int = 5
    lr: float = 0.05
    momentum: float = 0.0
    weight_decay: float = 0.0
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
        check_number("dirichlet_alpha", self.dirichlet_alpha, low=0.0, low_open=True)
        check_int("shards_per_client", self.shards_per_client, low=1)
        check_int("batch_size", self.batch_size, low=1)
        check_int("local_iters", self.local_iters, low=1)
        check_number("lr", self.lr, low=0.0, low_open=True)
        check_number("momentum", self.momentum, low=0.0, high=1.0, high_open=True)
        check_number("weight_decay", self.weight_decay, low=0.0)
        check_number("gradient_aggregation", self.gradient_aggregation, low=0.0, high=1.0)
        check_int("eval_every", self.eval_every, low=1)
        for name in ("num_train", "num_test"):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), low=1)
        if self.data_dir is not None and not isinstance(self.data_dir, str):
            raise ConfigError(f"data_dir={self.data_dir!r} is invalid; allowed: a directory path string or None")
        if self.dataset in ("mnist", "fashion-mnist", "cifar10") and self.data_dir is None:
            raise ConfigError(
                f"dataset={self.dataset!r} needs data_dir (a folder holding its files); nothing is downloaded"
            )
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ConfigError(f"device={self.device!r} is invalid; allowed: 'cpu', 'cuda' or 'cuda:N'")

    @classmethod
    def from_kwargs(cls, preset: str | None = None, **kwargs: Any) -> SFLConfig:
        """Builds a config from a preset (see :data:`PRESETS`) and keyword overrides."""
        values: dict[str, Any] = {}
        if preset is not None:
            check_choice("preset", preset, tuple(PRESETS))
            values.update(PRESETS[preset])
        known = {f.name for f in dataclasses.fields(cls)}
        for key in kwargs:
            if key not in known:
                close = difflib.get_close_matches(key, sorted(known), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(f"unknown option {key!r}{hint}; allowed: {', '.join(sorted(known))}")
        values.update(kwargs)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


PRESETS: dict[str, dict[str, Any]] = {
    "digits": {},
    "mnist": {"dataset": "mnist", "model": "lenet5", "batch_size": 32, "lr": 0.05},
    "fashion-mnist": {"dataset": "fashion-mnist", "model": "lenet5", "batch_size": 32, "lr": 0.05},
    "cifar10": {
        "dataset": "cifar10", "model": "vgg11", "model_width": 0.25,
        "batch_size": 64, "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4,
    },
}


@dataclass(frozen=True)
class EnvConfig:
    """Everything ``gym.make("SFLEnv-v0", **kwargs)`` accepts: the SFL system, the radio and compute
    model, and the episode, reward, privacy and solver options. Keyword arguments are flat; each is
    routed to the sub-config that owns it."""

    system: SFLConfig = SFLConfig()
    wireless: WirelessConfig = WirelessConfig()
    compute: ComputeConfig = ComputeConfig()
    training: str = "real"  # "real" PyTorch rounds, or the calibrated "analytic" model
    max_rounds: int = 60
    target_accuracy: float = 0.9
    rho: float = 0.5  # weight of the convergence term against the latency term
    reward: str = "paper"
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
        check_int("max_rounds", self.max_rounds, low=1)
        check_number("target_accuracy", self.target_accuracy, low=0.0, high=1.0, low_open=True)
        check_number("rho", self.rho, low=0.0, high=1.0)
        check_choice("reward", self.reward, REWARDS)
        check_choice("convergence", self.convergence, GAMMA_FORMS)
        check_choice("privacy", self.privacy, PRIVACY_MODES)
        check_choice("privacy_rule", self.privacy_rule, PRIVACY_RULES)
        check_int("min_client_blocks", self.min_client_blocks, low=1)
        if self.max_leakage is not None:
            check_number("max_leakage", self.max_leakage, low=0.0, high=1.0)
        if self.privacy_rule == "leakage" and self.max_leakage is None:
            raise ConfigError("privacy_rule='leakage' needs max_leakage, a distance correlation in [0, 1]")
        check_number("privacy_penalty", self.privacy_penalty, low=0.0)
        check_choice("solver", self.solver, ("exact", "cvxpy"))
        check_choice("allocation", self.allocation, ALLOCATIONS)
        if self.convergence == "bound":
            raise ConfigError("convergence='bound' needs measured block statistics; in the env use "
                              "'parameter_fraction' or 'calibrated'")

    @classmethod
    def from_kwargs(cls, preset: str | None = None, **kwargs: Any) -> EnvConfig:
        groups = {name: {f.name for f in dataclasses.fields(kind)}
                  for name, kind in (("system", SFLConfig), ("wireless", WirelessConfig), ("compute", ComputeConfig))}
        own = {f.name for f in dataclasses.fields(cls)} - set(groups)
        routed: dict[str, dict[str, Any]] = {name: {} for name in groups}
        top: dict[str, Any] = {}
        known = own.union(*groups.values())
        for key, value in kwargs.items():
            if key in own:
                top[key] = value
                continue
            owner = next((name for name, fields in groups.items() if key in fields), None)
            if owner is None:
                close = difflib.get_close_matches(key, sorted(known), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(f"unknown option {key!r}{hint}; allowed: {', '.join(sorted(known))}")
            routed[owner][key] = value
        return cls(
            system=SFLConfig.from_kwargs(preset=preset, **routed["system"]),
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


TRAININGS: tuple[str, ...] = ("real", "analytic")
REWARDS: tuple[str, ...] = ("paper", "time_to_accuracy")
PRIVACY_MODES: tuple[str, ...] = ("mask", "penalty")
ALLOCATIONS: tuple[str, ...] = ("optimal", "equal")
