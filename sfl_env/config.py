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

from .errors import ConfigError, unknown_name
from .hardware import FADINGS, ComputeConfig, WirelessConfig, dbm_to_w  # noqa: F401  (re-exported)
from .schemes import SCHEMES
from .tasks import DEFAULT_TASK, PRESET_BUDGETS, TASKS, task_options
from .validation import check_choice, check_int, check_number

# The option vocabulary. Each implementation module checks itself against these names; a test checks
# that every name has an implementation.
DATASETS: tuple[str, ...] = ("shapes", "digits", "mnist", "fashion-mnist", "cifar10", "synthetic",
                              "python-stdlib", "text")
FILE_DATASETS: tuple[str, ...] = ("mnist", "fashion-mnist", "cifar10", "text")  # read from data_dir
GENERATED_DATASETS: tuple[str, ...] = ("shapes", "synthetic")  # rendered from a seed; image_shape applies
# Byte-level next-token prediction: the Python standard library's own sources, or a folder of text files.
TEXT_DATASETS: tuple[str, ...] = ("python-stdlib", "text")
PARTITIONS: tuple[str, ...] = ("iid", "dirichlet", "shards")
MODELS: tuple[str, ...] = ("cnn", "mlp", "lenet5", "vgg11", "resnet18", "gpt")
LANGUAGE_MODELS: tuple[str, ...] = ("gpt",)  # the models of TEXT_DATASETS, and only they
DEFAULT_CONTEXT_LENGTH = 32  # tokens per sample of a text dataset when context_length=None
GPT_BASE_WIDTH = 128  # gpt's features per token at model_width=1
DEFAULT_MODEL_DEPTH = 4
DEFAULT_MODEL_HEADS = 4
AGGREGATION_WEIGHTS: tuple[str, ...] = ("data_size", "uniform")
OPTIMIZERS: tuple[str, ...] = ("sgd", "adam")
TRAININGS: tuple[str, ...] = ("real", "analytic")
REWARDS: tuple[str, ...] = ("paper", "time_to_accuracy")
CONVERGENCE_FORMS: tuple[str, ...] = ("parameter_fraction", "calibrated")
PRIVACY_MODES: tuple[str, ...] = ("mask", "penalty")
PRIVACY_RULES: tuple[str, ...] = ("min_blocks", "leakage")
SOLVERS: tuple[str, ...] = ("exact", "cvxpy")
ALLOCATIONS: tuple[str, ...] = ("optimal", "equal")


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
    """The learning rate ``lr=None`` stands for: the scheme's tuned one where its (dataset, model) was
    tuned, :data:`DEFAULT_LR` where that pair never was. A pair tuned without this scheme is refused: its
    comparison would pit a default rate against tuned ones."""
    tuned = tuned_learning_rates().get((dataset, model))
    if tuned is None:
        return DEFAULT_LR
    if scheme not in tuned:
        raise ConfigError(f"scheme={scheme!r} has no tuned learning rate for {dataset}/{model} (tuned: "
                          f"{', '.join(sorted(tuned))}); run python benchmarks/tune_lr.py --write for it, or pass lr=")
    return tuned[scheme]


@dataclass(frozen=True)
class SFLConfig:
    """The SFL system: data, model, clients and the training scheme (docs/design.md, "Presets and the
    regime of split learning").

    The defaults are the ``shapes`` preset (docs/design.md, "The default preset")."""

    dataset: str = "shapes"
    data_dir: str | None = None
    num_train: int | None = None  # subset of the training set (None: all of it)
    num_test: int | None = None
    image_shape: tuple[int, int, int] | None = None  # generated datasets only (None: theirs)
    model: str = "vgg11"
    model_width: float = 0.25
    model_depth: int | None = None  # gpt: transformer blocks (None: 4)
    model_heads: int | None = None  # gpt: attention heads per block (None: 4)
    context_length: int | None = None  # text datasets: tokens per sample (None: DEFAULT_CONTEXT_LENGTH)
    num_clients: int = 10
    partition: str = "dirichlet"
    dirichlet_alpha: float = 0.5  # (0, 1e6]; large is IID
    shards_per_client: int = 2
    batch_size: int = 32  # per client; 1 to the training set's size
    local_iters: int = 5  # 1 to 1000 per round
    lr: float | None = None  # (0, 1e6]; None: the scheme's tuned rate (default_lr)
    optimizer: str = "sgd"  # the local optimizer: "sgd", or "adam" (transformers)
    momentum: float = 0.9  # sgd's momentum; adam's first-moment decay beta1 (beta2 is 0.999)
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
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
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
            object.__setattr__(self, "image_shape", check_image_shape(self.image_shape, self.dataset))
        self._check_language_model()
        if self.data_dir is not None and not isinstance(self.data_dir, str):
            raise ConfigError(f"data_dir={self.data_dir!r} is invalid; allowed: a directory path string or None")
        if self.dataset in FILE_DATASETS and self.data_dir is None:
            raise ConfigError(
                f"dataset={self.dataset!r} needs data_dir (a folder holding its files); nothing is downloaded"
            )
        if not isinstance(self.device, str) or not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ConfigError(f"device={self.device!r} is invalid; allowed: 'cpu', 'cuda' or 'cuda:N'")

    def _check_language_model(self) -> None:
        """Text needs a language model and a language model needs text; depth, heads and context length
        apply to them only."""
        text, language = self.dataset in TEXT_DATASETS, self.model in LANGUAGE_MODELS
        if text != language:
            raise ConfigError(f"model={self.model!r} cannot learn dataset={self.dataset!r}; allowed: the language "
                              f"models ({', '.join(LANGUAGE_MODELS)}) with the text datasets ({', '.join(TEXT_DATASETS)}), "
                              "the other models with the other datasets")
        for name, high in (("model_depth", 64), ("model_heads", 64)):
            if getattr(self, name) is not None:
                if not language:
                    raise ConfigError(f"{name}={getattr(self, name)!r} applies to the language models "
                                      f"({', '.join(LANGUAGE_MODELS)}) only; leave it None for model={self.model!r}")
                check_int(name, getattr(self, name), low=1, high=high)
        if self.context_length is not None:
            if not text:
                raise ConfigError(f"context_length={self.context_length!r} applies to the text datasets "
                                  f"({', '.join(TEXT_DATASETS)}) only; leave it None for dataset={self.dataset!r}")
            check_int("context_length", self.context_length, low=2, high=4096)
        if language:
            width, heads = max(1, round(GPT_BASE_WIDTH * self.model_width)), self.model_options["heads"]
            if width % heads:  # the features as the model zoo scales them
                raise ConfigError(f"model_width={self.model_width!r} gives {width} features, which "
                                  f"model_heads={heads} does not divide; allowed: "
                                  f"a width whose {GPT_BASE_WIDTH} x model_width is a multiple of the heads")

    @property
    def model_options(self) -> dict[str, Any]:
        """The keywords of :func:`~sfl_env.models.build_model` this config sets besides the name and shapes."""
        options: dict[str, Any] = {"width": self.model_width}
        if self.model in LANGUAGE_MODELS:
            options |= {"depth": self.model_depth or DEFAULT_MODEL_DEPTH,
                        "heads": self.model_heads or DEFAULT_MODEL_HEADS}
        return options

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


def check_image_shape(value: Any, dataset: str) -> tuple[int, int, int]:
    """``value`` as the (C, H, W) of a generated dataset, or a ConfigError naming what is allowed. The one
    check of an image shape: :class:`SFLConfig` and :func:`~sfl_env.data.load_dataset` both call it."""
    if dataset not in GENERATED_DATASETS:
        raise ConfigError(f"image_shape={value!r} applies to the generated datasets ({', '.join(GENERATED_DATASETS)}) "
                          f"only; dataset={dataset!r} has its own shape, so leave image_shape=None")
    if not isinstance(value, (tuple, list)) or len(value) != 3:
        raise ConfigError(f"image_shape={value!r} is invalid; allowed: (channels, height, width)")
    # generated sets are held in memory: 20,000 rendered images of 3x64x64 already take about 1 GB
    for i, (v, high) in enumerate(zip(value, (3, 64, 64))):
        check_int(f"image_shape[{i}]", v, low=1, high=high)
    shape = tuple(int(v) for v in value)
    if dataset == "shapes" and (shape[0] == 2 or min(shape[1:]) < 8):
        raise ConfigError(f"image_shape={value!r} is invalid for shapes; allowed: (3 or 1, H >= 8, W >= 8)")
    return shape


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
    # The language model: a 4-block GPT-style decoder learning the next byte of Python's own sources.
    "lm": {
        "dataset": "python-stdlib", "num_test": 512, "model": "gpt", "model_width": 0.5, "num_clients": 8,
        "partition": "shards", "batch_size": 8, "optimizer": "adam", "momentum": 0.9, "target_accuracy": 0.4,
    },
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
