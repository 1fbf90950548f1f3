"""RLlib algorithms (new API stack) on the SFL-Env tasks, and their trained policies behind the agent protocol.

* :func:`algorithm_config`: the ``AlgorithmConfig`` of ``rllib-ppo`` (masked where masks are in play)
  or ``rllib-dqn`` (``privacy="penalty"`` only: RLlib's DQN has no masking module) on one task id.
* :data:`TRAINING_OPTIONS`, :func:`parse_training`, :func:`check_training`: the ``AlgorithmConfig.training``
  options ``train_rllib.py --training`` accepts per algorithm, with their types and ranges, checked
  before Ray starts.
* :func:`save_module` and :class:`RLlibAgent`: a trained RL module as weights (a torch state dict,
  ``weights.pt``) and ``module.json``, written whole or not at all; :meth:`RLlibAgent.load` rebuilds the
  module from the run's ``config.json`` and loads the weights with ``torch.load(weights_only=True)``, so
  playing a run folder (``evaluate.py``) never unpickles anything from it, and runs none of its code.

Ray is imported when these are used (not by the option checks); ``pip install 'sfl-env[rllib]'`` installs it.
"""

from __future__ import annotations

import hashlib
import json
import math
import pickle
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sfl_env.errors import ConfigError, CorruptFileError, did_you_mean
from sfl_env.rllib import has_native_vector_env, make_env, register, uses_masks
from sfl_env.storage import WriteError, sync_folder, sync_tree

from .base import Agent, masked_argmax

RLLIB_ALGORITHMS = ("rllib-ppo", "rllib-dqn")
MODULE_FOLDER = "rl_module"  # the trained RL module inside a run folder
MODULE_WEIGHTS = "weights.pt"  # its torch state dict
MODULE_INFO = "module.json"  # what it is: algorithm, inference-only or not, iteration, the weights' SHA-256
MODULE_FORMAT = 1
RUN_CONFIG = "config.json"  # the run folder's settings (agents.RUN_CONFIG; not imported: agents imports us)


# ---------------------------------------------------------------------------------------------- options


@dataclass(frozen=True)
class Option:
    """One ``AlgorithmConfig.training`` option: its type (``int``, ``float``, ``bool`` or ``choice``) and
    range. ``low``/``high`` bound numbers (``open_low``/``open_high`` exclude the bound itself);
    ``nullable`` also allows None (RLlib's "off")."""

    kind: str
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    choices: tuple[str, ...] = ()
    nullable: bool = False

    def allowed(self) -> str:
        """The allowed values, in words (as the error messages say them)."""
        if self.kind == "bool":
            text = "true or false"
        elif self.kind == "choice":
            text = "one of " + ", ".join(self.choices)
        else:
            noun = "an integer" if self.kind == "int" else "a number"
            if self.low is not None and self.high is not None:
                text = (f"{noun} in {'(' if self.open_low else '['}{_number(self.low)}, "
                        f"{_number(self.high)}{')' if self.open_high else ']'}")
            elif self.low is not None:
                text = f"{noun} {'>' if self.open_low else '>='} {_number(self.low)}"
            else:
                text = noun
        return text + (", or None (off)" if self.nullable else "")

    def problem(self, value: Any) -> str | None:
        """Why the typed ``value`` is not allowed, or None when it is."""
        if value is None:
            return None if self.nullable else "None is not allowed"
        if self.kind == "bool":
            return None if isinstance(value, bool) else "not a boolean"
        if self.kind == "choice":
            return None if isinstance(value, str) and value in self.choices else "not one of the choices"
        if isinstance(value, bool):
            return "booleans are not numbers"
        if self.kind == "int" and not isinstance(value, int):
            return "not an integer"
        if not isinstance(value, (int, float)):
            return "not a number"
        if isinstance(value, float) and not math.isfinite(value):
            return "not finite"
        if self.low is not None and (value < self.low or (self.open_low and value == self.low)):
            return "out of range"
        if self.high is not None and (value > self.high or (self.open_high and value == self.high)):
            return "out of range"
        return None

    def parse(self, raw: str) -> Any:
        """``raw`` (the text after ``KEY=``) as this option's type; raises ValueError when it is not one."""
        text = raw.strip()
        if self.nullable and text in ("None", "none", "null"):
            return None
        if self.kind == "choice":
            return text
        if text.lower() in ("true", "false"):
            if self.kind == "bool":
                return text.lower() == "true"
            raise ValueError("booleans are not numbers")
        if self.kind == "bool":
            raise ValueError("not a boolean")
        try:
            return int(text) if self.kind == "int" else float(text)
        except ValueError:  # '1.5' or '1e3' for an integer, 'abc' for either
            raise ValueError("not an integer" if self.kind == "int" else "not a number") from None


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


POSITIVE = Option("float", low=0.0, open_low=True)
NON_NEGATIVE = Option("float", low=0.0)
SIZE = Option("int", low=1)
COUNT = Option("int", low=0)
FLAG = Option("bool")
_COMMON = {
    "lr": POSITIVE,
    "gamma": Option("float", low=0.0, high=1.0, open_low=True),
    "train_batch_size_per_learner": SIZE,
    "grad_clip": Option("float", low=0.0, open_low=True, nullable=True),
    "grad_clip_by": Option("choice", choices=("global_norm", "norm", "value")),
}
# What ``train_rllib.py --training`` accepts: the options of AlgorithmConfig.training (and PPO's or DQN's
# own) whose value is one number, flag or name. Schedules, nested dicts and model configs are left out.
TRAINING_OPTIONS: dict[str, dict[str, Option]] = {
    "rllib-ppo": _COMMON | {
        "minibatch_size": SIZE,
        "num_epochs": SIZE,
        "shuffle_batch_per_epoch": FLAG,
        "entropy_coeff": NON_NEGATIVE,
        "clip_param": POSITIVE,
        "vf_clip_param": POSITIVE,
        "lambda_": Option("float", low=0.0, high=1.0),
        "vf_loss_coeff": NON_NEGATIVE,
        "use_gae": FLAG,
        "use_kl_loss": FLAG,
        "kl_coeff": NON_NEGATIVE,
        "kl_target": POSITIVE,
    },
    "rllib-dqn": _COMMON | {
        "target_network_update_freq": SIZE,
        "num_steps_sampled_before_learning_starts": COUNT,
        "n_step": SIZE,
        "double_q": FLAG,
        "dueling": FLAG,
        "tau": Option("float", low=0.0, high=1.0, open_low=True),
        "adam_epsilon": POSITIVE,
        "td_error_loss_fn": Option("choice", choices=("huber", "mse")),
        "training_intensity": Option("float", low=0.0, open_low=True, nullable=True),
    },
}


def _options(algorithm: str) -> dict[str, Option]:
    if algorithm not in TRAINING_OPTIONS:
        raise ConfigError(f"unknown RLlib algorithm {algorithm!r}; allowed: {', '.join(RLLIB_ALGORITHMS)}")
    return TRAINING_OPTIONS[algorithm]


def _unknown_option(algorithm: str, key: str, where: str) -> ConfigError:
    options = _options(algorithm)
    others = [name for name, table in TRAINING_OPTIONS.items() if name != algorithm and key in table]
    hint = f" ({key} is an option of {others[0]})" if others else did_you_mean(key, options)
    return ConfigError(f"unknown {where} option {key!r} for {algorithm}{hint}; allowed: {', '.join(sorted(options))}")


def _cross_check(algorithm: str, values: Mapping[str, Any], where: str) -> None:
    minibatch, batch = values.get("minibatch_size"), values.get("train_batch_size_per_learner")
    if algorithm == "rllib-ppo" and minibatch is not None and batch is not None and minibatch > batch:
        raise ConfigError(f"{where} minibatch_size={minibatch} is larger than train_batch_size_per_learner={batch}; "
                          f"allowed: minibatch_size <= train_batch_size_per_learner")


def parse_training(algorithm: str, items: Iterable[str]) -> dict[str, Any]:
    """``train_rllib.py --training`` (``KEY=VALUE`` strings) as typed ``AlgorithmConfig.training`` options.

    Each key must be one of :data:`TRAINING_OPTIONS` ``[algorithm]`` and each value its type (integers
    for sizes, finite numbers for rates, ``true``/``false`` for flags; a boolean is not a number) within
    its range. Anything else raises :class:`~sfl_env.errors.ConfigError` with a one-line message that
    names the option and what is allowed (for an unknown key: the closest and all the allowed keys).
    """
    options = _options(algorithm)
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = str(item).partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--training {item!r} is malformed; expected KEY=VALUE, e.g. lr=0.0003")
        key = key.strip()
        if key not in options:
            raise _unknown_option(algorithm, key, "--training")
        if key in out:
            raise ConfigError(f"--training {key} is given twice; give it once")
        option = options[key]
        try:
            value = option.parse(raw)
        except ValueError as error:
            raise ConfigError(f"--training {key}={raw!r} is invalid ({error}); allowed: {option.allowed()}") from None
        if (problem := option.problem(value)) is not None:
            raise ConfigError(f"--training {key}={raw!r} is invalid ({problem}); allowed: {option.allowed()}")
        out[key] = value
    _cross_check(algorithm, out, "--training")
    return out


def check_training(algorithm: str, training: Mapping[str, Any]) -> dict[str, Any]:
    """``training`` (typed options, as a run's ``config.json`` keeps them) if every one is allowed for
    ``algorithm``; otherwise a :class:`~sfl_env.errors.ConfigError` naming the option and what is allowed."""
    options = _options(algorithm)
    if not isinstance(training, Mapping):
        raise ConfigError(f"training options must be a mapping of option to value; got {type(training).__name__}")
    for key, value in training.items():
        if key not in options:
            raise _unknown_option(algorithm, str(key), "training")
        if (problem := options[key].problem(value)) is not None:
            raise ConfigError(f"training option {key}={value!r} is invalid ({problem}); "
                              f"allowed: {options[key].allowed()}")
    _cross_check(algorithm, training, "training option")
    return dict(training)


# ---------------------------------------------------------------------------------------------- configs


def algorithm_config(algorithm: str, env_id: str, env_kwargs: dict[str, Any], seed: int = 0,
                     num_env_runners: int = 0, num_envs_per_env_runner: int = 1, **training: Any) -> Any:
    """The RLlib ``AlgorithmConfig`` of ``algorithm`` (one of :data:`RLLIB_ALGORITHMS`) on task ``env_id``.

    ``env_kwargs`` become RLlib's ``env_config`` (the ``gym.make`` keywords); ``training`` are
    ``AlgorithmConfig.training`` options (``lr``, ``train_batch_size_per_learner``, ...; passed as given:
    ``train_rllib.py`` checks them first with :func:`parse_training`). With ``num_env_runners=0`` the
    driver samples; with more, each runner builds the env by name. Each runner steps
    ``num_envs_per_env_runner`` episodes: an analytic id's in its native vector env (as arrays, in the
    runner's process), a real id's in a Gymnasium ``SyncVectorEnv`` of single envs.
    """
    if algorithm not in RLLIB_ALGORITHMS:
        raise ConfigError(f"unknown RLlib algorithm {algorithm!r}; allowed: {', '.join(RLLIB_ALGORITHMS)}")
    masks = uses_masks(env_kwargs)
    if algorithm == "rllib-dqn" and masks:
        raise ConfigError("rllib-dqn has no action-masking module and this env may refuse cuts "
                          "(privacy='mask'); train it with env kwarg privacy=penalty, or use rllib-ppo")
    register([env_id])
    if algorithm == "rllib-ppo":
        from ray.rllib.algorithms.ppo import PPOConfig as Config
    else:
        from ray.rllib.algorithms.dqn import DQNConfig as Config
    config = (Config().environment(env_id, env_config=dict(env_kwargs))
              .env_runners(num_env_runners=num_env_runners, num_envs_per_env_runner=num_envs_per_env_runner,
                           gym_env_vectorize_mode="vector_entry_point" if has_native_vector_env(env_id) else "sync")
              .debugging(seed=seed).training(**training))
    if masks:
        from ray.rllib.core.rl_module.rl_module import RLModuleSpec

        from .masked_ppo import MaskedPPOModule

        config = config.rl_module(rl_module_spec=RLModuleSpec(module_class=MaskedPPOModule))
    return config


def build_module(algorithm: str, env_id: str, env_kwargs: dict[str, Any], training: Mapping[str, Any],
                 inference_only: bool = True) -> Any:
    """A fresh (untrained) RL module of ``algorithm`` on task ``env_id``, as RLlib builds it in training.

    The module class comes from this code (:func:`algorithm_config`'s ``RLModuleSpec``), its spaces from
    the env built with ``env_kwargs``; nothing is read from a run folder. Ray need not be running.
    """
    config = algorithm_config(algorithm, env_id, dict(env_kwargs), **check_training(algorithm, training))
    env = make_env(env_id, env_kwargs)
    try:
        return config.get_rl_module_spec(env=env, inference_only=inference_only).build()
    finally:
        env.close()


def save_module(module: Any, folder: str | Path, algorithm: str, **info: Any) -> Path:
    """Writes ``module``'s weights (``weights.pt``, a torch state dict) and ``module.json`` (the algorithm,
    whether the module is inference-only, the weights' SHA-256, and ``info`` such as the iteration) to
    ``folder``, whole or not at all: a hidden partial folder, flushed, then swapped in by renames.

    A failed write (a full disk) leaves the previous module as it was and raises
    :class:`~sfl_env.storage.WriteError` naming the file.
    """
    import torch

    folder = Path(folder)
    tmp, old = folder.with_name(f".{folder.name}.partial"), folder.with_name(f".{folder.name}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    target = tmp
    try:
        tmp.mkdir(parents=True)
        target = tmp / MODULE_WEIGHTS
        torch.save({k: v.detach().cpu() for k, v in module.state_dict().items()}, target)
        target = tmp / MODULE_INFO
        target.write_text(json.dumps({
            "format": MODULE_FORMAT, "algorithm": algorithm, "module_class": type(module).__name__,
            "inference_only": bool(getattr(module, "inference_only", False)), "weights": MODULE_WEIGHTS,
            "sha256": _sha256(tmp / MODULE_WEIGHTS)} | info, indent=2) + "\n")
        sync_tree(tmp)
        if folder.exists():
            shutil.rmtree(old, ignore_errors=True)
            folder.rename(old)
        tmp.rename(folder)
        sync_folder(folder.parent)
    except OSError as error:
        shutil.rmtree(tmp, ignore_errors=True)
        raise error if isinstance(error, WriteError) else WriteError(error.filename or target, error) from error
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return folder


def saved_module_iteration(folder: str | Path) -> int | None:
    """The iteration of the intact module saved in ``folder`` (its weights match ``module.json``), or None."""
    folder = Path(folder)
    try:
        info = json.loads((folder / MODULE_INFO).read_text())
        intact = info["sha256"] == _sha256(folder / MODULE_WEIGHTS)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return info.get("iteration") if intact and isinstance(info.get("iteration"), int) else None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


def _read_json(path: Path, what: str, fix: str) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError:
        raise CorruptFileError(f"{path} is missing; {fix}") from None
    except (OSError, ValueError) as error:  # UnicodeDecodeError is a ValueError
        raise CorruptFileError(f"{path} is not readable as {what} ({type(error).__name__}: {error}); {fix}") from None
    if not isinstance(value, dict):
        raise CorruptFileError(f"{path} is not {what} (not a JSON object); {fix}")
    return value


# ---------------------------------------------------------------------------------------------- agent


class RLlibAgent(Agent):
    """A trained RLlib RL module acting through the agent protocol (greedy: the best allowed cut)."""

    learns = False

    def __init__(self, module: Any, algorithm: str, n_actions: int) -> None:
        super().__init__()
        self.module, self.name, self.n_actions = module, algorithm, int(n_actions)
        self.masked = hasattr(module, "split")  # a MaskedPPOModule reads the mask with the observation

    @classmethod
    def load(cls, folder: str | Path, algorithm: str, n_actions: int) -> RLlibAgent:
        """The RL module saved in ``folder`` (``<run>/rl_module``, written by :func:`save_module`).

        The module is rebuilt from the run's ``config.json`` (``folder``'s parent: algorithm, task, env
        kwargs, training options) and its weights loaded with ``torch.load(weights_only=True)``: nothing
        in the folder is unpickled. A missing, torn or foreign file raises
        :class:`~sfl_env.errors.CorruptFileError` naming it (and, for a run stopped before its end, how
        to finish it with ``--resume``).
        """
        import torch

        path = Path(folder)
        run = path.parent
        resume = f"finish (or repair) the run with: python train_rllib.py --resume --out {run}"
        if not path.is_dir():
            raise CorruptFileError(f"{run} has no trained RL module ({path} is missing): the run stopped before "
                                   f"its end (killed or interrupted); {resume}")
        info = _read_json(path / MODULE_INFO, "an RL module description", (
            "the run stopped before its end, or an older train_rllib.py saved the module in RLlib's pickle "
            f"format, which is never loaded (unpickling can run code); {resume}"))
        config = _read_json(run / RUN_CONFIG, "a run configuration", "the run folder is incomplete or foreign")
        where = f"{path / MODULE_INFO} and {run / RUN_CONFIG}"
        if info.get("format") != MODULE_FORMAT or info.get("algorithm") != algorithm or \
                config.get("agent") != algorithm or not isinstance(info.get("inference_only"), bool):
            raise CorruptFileError(f"{where} do not describe an {algorithm} module of format {MODULE_FORMAT} "
                                   f"(module.json: algorithm {info.get('algorithm')!r}, format "
                                   f"{info.get('format')!r}; config.json: agent {config.get('agent')!r})")
        weights = path / MODULE_WEIGHTS
        if not weights.is_file():
            raise CorruptFileError(f"{weights} is missing: the module is torn; {resume}")
        if not isinstance(info.get("sha256"), str) or _sha256(weights) != info["sha256"]:
            raise CorruptFileError(f"{weights} does not match its SHA-256 in {path / MODULE_INFO}: it is torn or "
                                   f"was replaced; {resume}")
        try:
            module = build_module(algorithm, str(config["env_id"]), dict(config.get("env_kwargs") or {}),
                                  config.get("training") or {}, inference_only=info["inference_only"])
        except (KeyError, TypeError, ValueError) as error:
            raise CorruptFileError(f"{run / RUN_CONFIG} cannot rebuild the module ({type(error).__name__}: "
                                   f"{error})") from None
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:  # torch's own message advises weights_only=False: not here
            raise CorruptFileError(f"{weights} holds more than tensors (objects that would run code when "
                                   f"unpickled), so it is not loaded; {resume}") from None
        except Exception as error:  # a torn or foreign file
            raise CorruptFileError(f"{weights} is not a torch state dict ({_first_line(error)}); {resume}") from None
        try:
            module.load_state_dict(state)
        except Exception as error:
            raise CorruptFileError(f"{weights} is not this module's weights ({_first_line(error)}); {resume}") from None
        return cls(module, algorithm, n_actions)

    def action_scores(self, obs: np.ndarray, action_mask: np.ndarray | None = None) -> np.ndarray:
        """The module's preference per cut: action logits (PPO) or Q-values (DQN)."""
        import torch
        from ray.rllib.core.columns import Columns

        observation = torch.as_tensor(np.asarray(obs, dtype=np.float32)[None])
        if self.masked:
            mask = np.ones(self.n_actions, dtype=np.float32) if action_mask is None else action_mask
            observation = {"observations": observation, "action_mask": torch.as_tensor(
                np.asarray(mask, dtype=np.float32)[None])}
        with torch.no_grad():
            if self.name == "rllib-dqn":
                scores = self.module.compute_q_values({Columns.OBS: observation})["qf_preds"]
            else:
                scores = self.module.forward_inference({Columns.OBS: observation})[Columns.ACTION_DIST_INPUTS]
        return scores.cpu().numpy().reshape(-1)[: self.n_actions]

    def predict(self, obs: np.ndarray, action_mask: np.ndarray | None = None, deterministic: bool = True) -> int:
        return masked_argmax(self.action_scores(obs, action_mask), action_mask)
