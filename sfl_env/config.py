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
from .schemes import AGGREGATION_WEIGHTS, SCHEMES


class ConfigError(ValueError):
    """An unknown option, or an option with a value outside what is allowed."""


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
        _choice("dataset", self.dataset, DATASETS)
        _choice("model", self.model, MODELS)
        _choice("partition", self.partition, PARTITIONS)
        _choice("scheme", self.scheme, SCHEMES)
        _choice("aggregation_weights", self.aggregation_weights, AGGREGATION_WEIGHTS)
        _number("model_width", self.model_width, low=0.0, high=4.0, low_open=True)
        _integer("num_clients", self.num_clients, low=1, high=10_000)
        _number("dirichlet_alpha", self.dirichlet_alpha, low=0.0, low_open=True)
        _integer("shards_per_client", self.shards_per_client, low=1)
        _integer("batch_size", self.batch_size, low=1)
        _integer("local_iters", self.local_iters, low=1)
        _number("lr", self.lr, low=0.0, low_open=True)
        _number("momentum", self.momentum, low=0.0, high=1.0, high_open=True)
        _number("weight_decay", self.weight_decay, low=0.0)
        _number("gradient_aggregation", self.gradient_aggregation, low=0.0, high=1.0)
        _integer("eval_every", self.eval_every, low=1)
        for name in ("num_train", "num_test"):
            if getattr(self, name) is not None:
                _integer(name, getattr(self, name), low=1)
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
            _choice("preset", preset, tuple(PRESETS))
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


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is unknown; allowed: {', '.join(map(repr, allowed))}")


def _integer(name: str, value: Any, *, low: int | None = None, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name}={value!r} is invalid; allowed: an integer")
    _number(name, value, low=low, high=high)


def _number(
    name: str, value: Any, *, low: float | None = None, high: float | None = None,
    low_open: bool = False, high_open: bool = False,
) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise ConfigError(f"{name}={value!r} is invalid; allowed: a number")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        interval = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
        raise ConfigError(f"{name}={value!r} is out of range; allowed: {interval}")
