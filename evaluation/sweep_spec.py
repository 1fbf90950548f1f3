"""The sweep file of ``sweep.py``: its schema, and every check that can refuse it before Ray starts.

:data:`SPEC` declares the file: each key's type, range and default, and each search distribution's
arguments. :func:`validate_spec` checks a file's content against it, then what the schema alone cannot
say (eval_freq within total_steps, ASHA's grace period within a trial's validations, searched names and
their values against the agent's hyperparameters, values that reach a trial as themselves), and
:func:`check_env` builds the env once with the file's ``env_kwargs``. Every refusal is one line naming
the file, the key path (``search.gamma.loguniform``), the value and what is allowed; nothing here
writes anything.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import math
from pathlib import Path
from typing import Any

import yaml

import agents
import sfl_env
from agents.ddqn import DDQNConfig
from agents.sb3 import algorithm_class
from sfl_env.config import parse_overrides
from sfl_env.errors import ConfigError, did_you_mean

SEED_MAX = 2**32 - 1  # SB3 seeds numpy's legacy generator, which takes seeds below 2**32
REQUIRED = object()  # a key of the spec without a default


# ------------------------------------------------------------------ the spec's schema
# Each rule checks the value at one key path and returns it; a mistake raises ConfigError naming the key
# path, the value and what is allowed. SPEC, below, is the whole file.


class Rule:
    """Any value."""

    allowed = "any value"

    def __call__(self, value: Any, where: str) -> Any:
        return value

    def refuse(self, value: Any, where: str, problem: str = "is invalid") -> ConfigError:
        subject = f"{where}={_show(value)}" if where else _show(value)
        return ConfigError(f"{subject} {problem}; allowed: {self.allowed}")


@dataclasses.dataclass(frozen=True)
class Int(Rule):
    """An integer (never a boolean) in [low, high]; null too when ``null`` says what it stands for."""

    low: int | None = None
    high: int | None = None
    null: str | None = None

    @property
    def allowed(self) -> str:
        text = (f"an integer in [{self.low}, {self.high}]" if self.low is not None and self.high is not None
                else f"an integer >= {self.low}" if self.low is not None else "an integer")
        return text + (f", or null ({self.null})" if self.null else "")

    def __call__(self, value: Any, where: str) -> Any:
        if value is None and self.null:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.refuse(value, where)
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            raise self.refuse(value, where, "is out of range")
        return value


@dataclasses.dataclass(frozen=True)
class Number(Rule):
    """A finite number (never a boolean) above ``low`` (or at it, unless ``low_open``)."""

    low: float | None = None
    low_open: bool = False

    @property
    def allowed(self) -> str:
        if self.low is None:
            return "a finite number"
        return f"a finite number {'>' if self.low_open else '>='} {self.low}"

    def __call__(self, value: Any, where: str) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not _finite(value):
            raise self.refuse(value, where)
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            raise self.refuse(value, where, "is out of range")
        return value


@dataclasses.dataclass(frozen=True)
class OneOf(Rule):
    """One of ``names``, ``what`` in words (``a learner``)."""

    names: tuple[str, ...]
    what: str

    @property
    def allowed(self) -> str:
        return ", ".join(self.names)

    def __call__(self, value: Any, where: str) -> Any:
        if isinstance(value, str) and value in self.names:
            return value
        hint = did_you_mean(value, self.names) if isinstance(value, str) else ""
        raise ConfigError(f"{where} {_show(value)} is not {self.what}{hint}; allowed: {self.allowed}")


@dataclasses.dataclass(frozen=True)
class ListOf(Rule):
    """A non-empty list, each item checked by ``item``."""

    item: Rule
    allowed: str

    def __call__(self, value: Any, where: str) -> Any:
        if not isinstance(value, list) or not value:
            raise self.refuse(value, where)
        return [self.item(item, f"{where}[{i}]") for i, item in enumerate(value)]


@dataclasses.dataclass(frozen=True)
class Pair(Rule):
    """``[low, high]``, both checked by ``bound``, with low < high."""

    bound: Rule
    allowed: str

    def __call__(self, value: Any, where: str) -> Any:
        if not isinstance(value, list) or len(value) != 2:
            raise self.refuse(value, where)
        try:
            low, high = (self.bound(bound, where) for bound in value)
        except ConfigError:
            raise self.refuse(value, where) from None
        if not low < high:
            raise self.refuse(value, where)
        return [low, high]


@dataclasses.dataclass(frozen=True)
class Fields(Rule):
    """A mapping with known keys, each ``key: (rule, default)`` (``REQUIRED``: no default); a missing key
    takes its default, through its rule too; null stands for an empty mapping when ``null``."""

    fields: dict[str, tuple[Rule, Any]]
    null: bool = False

    @property
    def allowed(self) -> str:
        return f"a mapping with keys {', '.join(self.fields)}" + (", or null" if self.null else "")

    def __call__(self, value: Any, where: str) -> Any:
        if value is None and self.null:
            value = {}
        if not isinstance(value, dict):
            raise self.refuse(value, where)
        unknown = sorted((key for key in value if key not in self.fields), key=_show)
        if unknown:
            hint = did_you_mean(unknown[0], self.fields) if isinstance(unknown[0], str) else ""
            inside = f" in {where}" if where else ""
            raise ConfigError(f"unknown key(s) {_show(unknown)}{inside}{hint}; allowed: {', '.join(self.fields)}")
        spec = {}
        for key, (rule, default) in self.fields.items():
            path = f"{where}.{key}" if where else key
            if key in value:
                spec[key] = rule(value[key], path)
            elif default is REQUIRED:
                raise ConfigError(f"{path} is required; allowed: {rule.allowed}")
            else:
                spec[key] = rule(copy.deepcopy(default), path)
        return spec


@dataclasses.dataclass(frozen=True)
class MapOf(Rule):
    """A mapping of names (Python identifiers, as keyword arguments are) to values checked by ``item``;
    null stands for an empty one."""

    item: Rule
    allowed: str

    def __call__(self, value: Any, where: str) -> Any:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.refuse(value, where)
        for key in value:
            if not isinstance(key, str) or not key.isidentifier():
                raise ConfigError(f"{where} key {_show(key)} is invalid; allowed: a name (letters, digits and _, "
                                  f"not starting with a digit)")
        return {key: self.item(item, f"{where}.{key}") for key, item in value.items()}


@dataclasses.dataclass(frozen=True)
class OneKey(Rule):
    """A mapping of exactly one key of ``options`` to what that option's rule accepts."""

    options: dict[str, Rule]
    allowed: str

    def __call__(self, value: Any, where: str) -> Any:
        if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in self.options:
            raise ConfigError(f"{where} must be one of {self.allowed}; got {_show(value)}")
        (kind, arguments), = value.items()
        return {kind: self.options[kind](arguments, f"{where}.{kind}")}


VALUES = ListOf(Rule(), "a non-empty list of values")
DISTRIBUTION = OneKey({
    "loguniform": Pair(Number(low=0, low_open=True), "[low, high], two finite numbers with 0 < low < high"),
    "uniform": Pair(Number(), "[low, high], two finite numbers with low < high"),
    "randint": Pair(Int(), "[low, high], two integers with low < high (high excluded)"),
    "choice": VALUES,
    "grid": VALUES,
}, "{loguniform: [low, high]}, {uniform: [low, high]}, {randint: [low, high]}, {choice: [value, ...]}, "
   "{grid: [value, ...]}")
SPEC = Fields({
    "agent": (OneOf(agents.LEARNERS, "a learner"), REQUIRED),
    "env_id": (OneOf(tuple(sfl_env.TASK_IDS), "an SFL-Env task"), "SFLEnvAnalytic-v0"),
    "env_kwargs": (MapOf(Rule(), "a mapping of gym.make keyword -> value, or null"), {}),
    "total_steps": (Int(1, null="the agent's n_timesteps"), None),
    "eval_freq": (Int(1, null="total_steps // 10"), None),
    "eval_episodes": (Int(1), 5),
    "checkpoint_freq": (Int(1, null="train_agent.py's default"), None),
    "samples": (Int(1), 1),
    "seeds": (ListOf(Int(0, SEED_MAX), f"a non-empty list of integers in [0, {SEED_MAX}]"), [0]),
    "search": (MapOf(DISTRIBUTION, "a mapping of hyperparameter -> {distribution: arguments}, or null"), {}),
    "asha": (Fields({"grace_period": (Int(1), 1), "reduction_factor": (Number(low=1, low_open=True), 2)},
                    null=True), {}),
})
SPACES = tuple(DISTRIBUTION.options)


def _show(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters: one line whatever the value."""
    try:
        text = repr(value)
    except (RecursionError, ValueError):  # nested too deep; an integer of more digits than Python prints
        text = f"<a {type(value).__name__} too large to show>"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer beyond the floats
        return False


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def load_spec(path: Path) -> dict[str, Any]:
    """The sweep of a YAML file, checked by :func:`validate_spec`; an unreadable file raises
    :class:`ConfigError` too."""
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError) as error:
        raise ConfigError(f"{path} is unreadable: {_one_line(error)}; allowed: a YAML file of the sweep (see "
                          f"python sweep.py --help)") from None
    return validate_spec({} if raw is None else raw, str(path))


def validate_spec(raw: Any, source: str = "the sweep") -> dict[str, Any]:
    """The sweep ``raw`` (a YAML file's content) with its defaults filled in, or a one-line
    :class:`ConfigError` naming ``source``, the key path, the value and what is allowed.

    The file must match :data:`SPEC`; then eval_freq must fit in total_steps and ASHA's grace period in the
    validations of a trial, and every searched name must be a hyperparameter of the agent, drawn as it
    takes it (integers for an integer, numbers for a number). Every value must reach the trial as itself
    through train_agent.py's ``key=value`` options. Pure: it builds nothing and writes nothing.
    """
    try:
        spec = SPEC(raw, "")
        defaults = agents.hyperparameters(spec["agent"], spec["env_id"])
        if spec["total_steps"] is None:
            spec["total_steps"] = int(defaults.get("n_timesteps", 50_000))
        if spec["eval_freq"] is None:
            spec["eval_freq"] = max(1, spec["total_steps"] // 10)
        elif spec["eval_freq"] > spec["total_steps"]:
            raise ConfigError(f"eval_freq={spec['eval_freq']} is out of range; allowed: 1 to total_steps "
                              f"({spec['total_steps']}): a trial validates every eval_freq steps, which ASHA compares")
        validations = spec["total_steps"] // spec["eval_freq"]
        if spec["asha"]["grace_period"] > validations:
            raise ConfigError(f"asha.grace_period={spec['asha']['grace_period']} is out of range; allowed: 1 to "
                              f"{validations}, the validations of a trial (total_steps // eval_freq)")
        check_search(spec["agent"], spec["search"], defaults)
        for key, value in spec["env_kwargs"].items():
            check_reaches_trial(f"env_kwargs.{key}", key, value)
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}") from None
    return spec


def hyperparameter_names(agent: str) -> set[str]:
    """What a sweep may search for the learner ``agent``: what its constructor takes (the fields of
    ``DDQNConfig``; the SB3 algorithm's arguments, which ``SB3Agent`` checks overrides against)."""
    if agent == "ddqn":
        return {field.name for field in dataclasses.fields(DDQNConfig)}
    try:
        algorithm = algorithm_class(agent)
    except ImportError as error:
        raise ConfigError(f"agent {agent!r} is not installed: {_one_line(error)}") from None
    # SB3Agent passes env, seed and verbose itself (and device, loading a model)
    return {name for name in inspect.signature(algorithm.__init__).parameters
            if not name.startswith("_")} - {"self", "env", "seed", "verbose", "device"}


def check_search(agent: str, search: dict[str, Any], defaults: dict[str, Any]) -> None:
    """Every dimension of ``search`` names a hyperparameter of ``agent`` and draws what it takes: an
    integer where its default (``defaults``) is one, a number where it is a float."""
    names = hyperparameter_names(agent)
    for name, dimension in search.items():
        where = f"search.{name}"
        if name == "n_timesteps":
            raise ConfigError(f"{where}: a trial trains for the sweep's total_steps; allowed: total_steps, at the "
                              f"top of the file")
        if name not in names:
            raise ConfigError(f"{where}: {name!r} is not a {agent} hyperparameter{did_you_mean(name, names)}; "
                              f"allowed: {', '.join(sorted(names))}")
        (kind, arguments), = dimension.items()
        default = defaults.get(name)
        integer = isinstance(default, int) and not isinstance(default, bool)
        number = integer or isinstance(default, float)
        if kind in ("choice", "grid"):
            for i, value in enumerate(arguments):
                if value is None and name in agents.nullable(agent):
                    check_reaches_trial(f"{where}.{kind}[{i}]", name, value)
                    continue
                wanted = int if integer else (int, float) if number else object
                if isinstance(value, bool) and number or not isinstance(value, wanted):
                    kind_of = "an integer" if integer else "a number"
                    raise ConfigError(f"{where}.{kind}[{i}]={_show(value)} is invalid; allowed: {kind_of}, as "
                                      f"train_agent.py takes for {name} (its default is {_show(default)})")
                check_reaches_trial(f"{where}.{kind}[{i}]", name, value)
        elif integer and kind != "randint":
            raise ConfigError(f"{where}.{kind} draws real numbers, but {name} takes integers (the default is "
                              f"{default}); allowed: randint, choice or grid")
        elif default is not None and not number:
            raise ConfigError(f"{where}.{kind} draws numbers, but {name} is not a number (the default is "
                              f"{_show(default)}); allowed: choice or grid")


def check_reaches_trial(where: str, key: str, value: Any) -> None:
    """``value`` reaches a trial as itself through train_agent.py's ``key=value`` options (the text '1'
    would arrive as the number 1, NaN as the text 'nan')."""
    try:
        back = parse_overrides([f"{key}={option_text(value)}"])[key]
        same = type(back) is type(value) and back == value
    except (ValueError, RecursionError):  # an integer of more digits than Python prints; a list nested too deep
        back, same = "?", False
    if not same:
        raise ConfigError(f"{where}={_show(value)} would reach the trial as {_show(back)}; allowed: a value "
                          f"train_agent.py reads back as itself (a finite number, text that is no Python literal, "
                          f"true/false, null, or a list or mapping of those)")


def check_env(spec: dict[str, Any], source: str = "the sweep") -> None:
    """Builds the sweep's env once and resets it, as every trial will: env_kwargs the env refuses fail here,
    before Ray starts, with the env's own message."""
    import gymnasium as gym

    try:
        env = gym.make(spec["env_id"], **spec["env_kwargs"])
        try:
            env.reset(seed=0)
        finally:
            env.close()
    except (ValueError, TypeError) as error:
        raise ConfigError(f"{source}: env_kwargs: {_one_line(error)}") from None


def option_text(value: Any) -> str:
    """A hyperparameter as train_agent.py's ``key=value`` parser reads it back: a Python literal."""
    return repr(value) if isinstance(value, (list, tuple, dict, bool)) or value is None else str(value)
