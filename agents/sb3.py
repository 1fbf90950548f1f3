"""Stable-Baselines3 (and sb3-contrib) algorithms behind the agent protocol.

``SB3Agent("ppo", ...)`` wraps one SB3 model. Hyperparameters are the algorithm's own constructor
arguments (plus rl-baselines3-zoo's ``policy`` and ``n_timesteps``), checked against its signature.
SB3's logger is routed to the agent callback, so SB3's metrics land in the run's JSONL next to ours.

Masks: only ``maskable-ppo`` uses them while learning. The others learn on whatever the env does with
a forbidden cut, so train them with ``privacy="penalty"`` when some cuts are forbidden (``learn``
refuses ``privacy="mask"`` then, instead of crashing mid-run). At ``predict`` every adapter ranks
the allowed cuts by the policy's own scores (Q-values, mean quantiles or action probabilities) and
returns the best, so an SB3 agent never acts on a forbidden cut.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import io
import json
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import KVWriter, Logger

from sfl_env.errors import CorruptFileError
from sfl_env.storage import replacing

from .base import Agent, Callback, masked_argmax, vec_action_masks

# name -> (module, class, honours masks while learning)
ALGORITHMS = {
    "dqn": ("stable_baselines3", "DQN", False),
    "ppo": ("stable_baselines3", "PPO", False),
    "a2c": ("stable_baselines3", "A2C", False),
    "qrdqn": ("sb3_contrib", "QRDQN", False),
    "maskable-ppo": ("sb3_contrib", "MaskablePPO", True),
}
ZOO_KEYS = ("policy", "n_timesteps")  # rl-baselines3-zoo keys that are not constructor arguments


def algorithm_class(algo: str) -> type:
    if algo not in ALGORITHMS:
        raise ValueError(f"unknown SB3 algorithm {algo!r}; allowed: {', '.join(ALGORITHMS)}")
    module, name, _ = ALGORITHMS[algo]
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError as error:
        raise ImportError(f"agent {algo!r} needs {module}: pip install 'sfl-env[contrib]'") from error


class SB3Agent(Agent):
    learns = True

    def __init__(self, algo: str, n_actions: int, seed: int = 0, **hyperparameters: Any) -> None:
        super().__init__()
        self.cls = algorithm_class(algo)
        self.name, self.algo, self.n_actions, self.seed = algo, algo, int(n_actions), int(seed)
        self.masked = ALGORITHMS[algo][2]
        self.policy = hyperparameters.pop("policy", "MlpPolicy")
        hyperparameters.pop("n_timesteps", None)
        allowed = set(inspect.signature(self.cls.__init__).parameters) - {"self", "policy", "env", "seed"}
        unknown = sorted(set(hyperparameters) - allowed)
        if unknown:
            raise ValueError(
                f"unknown {algo} hyperparameter {unknown[0]!r}; allowed: {', '.join(sorted(allowed | set(ZOO_KEYS)))}"
            )
        self.hyperparameters = hyperparameters
        self.model = None

    # ------------------------------------------------------------------ learning

    def learn(self, env: Any, total_steps: int, callback: Callback | None = None) -> SB3Agent:
        callback = callback or Callback()
        self._check_masks(env)
        if self.model is None:
            # a copy: SB3 writes into what it is given (A2C adds RMSprop to policy_kwargs)
            self.model = self.cls(self.policy, env, seed=self.seed, verbose=0, **copy.deepcopy(self.hyperparameters))
        else:
            self.model.set_env(env)
        self.model.set_logger(Logger(folder=None, output_formats=[_MetricsWriter(self, callback)]))
        remaining = total_steps - self.model.num_timesteps
        if remaining > 0:
            self.model.learn(remaining, callback=_StepCallback(self, callback), reset_num_timesteps=False)
        self.num_steps = self.model.num_timesteps
        return self

    def _check_masks(self, env: Any) -> None:
        if self.masked:
            return
        spec = env.get_attr("spec", indices=[0])[0]
        if (spec.kwargs if spec is not None else {}).get("privacy", "mask") != "mask":
            return
        env.reset()  # masks are known once an episode has started
        masks = vec_action_masks(env)
        if not masks.all():
            raise ValueError(
                f"agent {self.name!r} does not use action masks while learning, and this env forbids cuts "
                f"(mask {masks[0].astype(int).tolist()}) with privacy='mask'; train it with env kwarg "
                f"privacy=penalty, or use maskable-ppo or ddqn"
            )

    # ------------------------------------------------------------------ acting

    def predict(self, obs: np.ndarray, action_mask: np.ndarray | None = None, deterministic: bool = True) -> int:
        if self.model is None:
            raise RuntimeError(f"agent {self.name!r} has no model yet: learn() or load() it first")
        return masked_argmax(self.action_scores(obs), action_mask)

    @torch.no_grad()
    def action_scores(self, obs: np.ndarray) -> np.ndarray:
        """The policy's preference for each action in ``obs`` (higher is better)."""
        policy = self.model.policy
        tensor, _ = policy.obs_to_tensor(np.asarray(obs, dtype=np.float32))
        if self.algo == "dqn":
            scores = policy.q_net(tensor)
        elif self.algo == "qrdqn":
            scores = policy.quantile_net(tensor).mean(dim=1)
        else:
            scores = policy.get_distribution(tensor).distribution.probs
        return scores.cpu().numpy().reshape(-1)[: self.n_actions]

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | Path) -> Path:
        path = Path(path).with_suffix(".zip")
        with replacing(path) as tmp:
            self.model.save(tmp)
        return path

    def load_model(self, path: str | Path, env: Any = None) -> SB3Agent:
        """The model saved at ``path`` (``.zip``), rebuilt without unpickling anything (see :func:`read_model_zip`)."""
        path = Path(path).with_suffix(".zip")
        if not path.is_file():
            raise FileNotFoundError(f"no {self.name} model at {path}")
        data, params = read_model_zip(path)
        spaces = env if env is not None else _Spaces(_box_of(data, path), self.n_actions)
        hyperparameters = copy.deepcopy(self.hyperparameters)  # SB3 writes into what it is given
        if _plain(data.get("policy_kwargs")):  # the network's shape as saved (a class in it is never decoded)
            hyperparameters["policy_kwargs"] = data["policy_kwargs"]
        model = self.cls(self.policy, spaces, seed=self.seed, verbose=0, device="cpu", **hyperparameters)
        try:
            model.set_parameters(params, exact_match=True, device="cpu")
        except (RuntimeError, ValueError, KeyError) as error:
            raise CorruptFileError(f"{path} does not hold a {self.name} model of this run's configuration "
                                   f"({type(error).__name__}: {str(error).splitlines()[0]})") from None
        for key in TRAINING_STATE:
            value = data.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                setattr(model, key, value)
        self.model = model
        self.num_steps = int(model.num_timesteps)
        return self

    def save_checkpoint(self, folder: str | Path) -> None:
        folder = Path(folder)
        self.save(folder / "model")
        buffer = getattr(self.model, "replay_buffer", None)
        if buffer is not None:
            arrays = {name: getattr(buffer, name) for name in REPLAY_ARRAYS if getattr(buffer, name, None) is not None}
            with replacing(folder / REPLAY_FILE) as tmp:
                with tmp.open("wb") as file:
                    np.savez(file, pos=buffer.pos, full=buffer.full, **arrays)

    def load_checkpoint(self, folder: str | Path, env: Any = None) -> None:
        folder = Path(folder)
        self.load_model(folder / "model", env=env)
        buffer = getattr(self.model, "replay_buffer", None)
        path = folder / REPLAY_FILE
        if buffer is not None and not path.is_file() and (folder / "replay.pkl").is_file():
            warnings.warn(f"{folder / 'replay.pkl'} is a pickle, which is never loaded (it could run code); the "
                          f"run resumes with an empty replay buffer", RuntimeWarning, stacklevel=2)
        if buffer is None or not path.is_file():
            return
        try:
            with np.load(path, allow_pickle=False) as replay:
                for name in REPLAY_ARRAYS:
                    if name in replay.files and getattr(buffer, name, None) is not None:
                        saved = replay[name]
                        if saved.shape != getattr(buffer, name).shape:
                            raise ValueError(f"{name} has shape {saved.shape}, the buffer "
                                             f"{getattr(buffer, name).shape}")
                        setattr(buffer, name, saved.astype(getattr(buffer, name).dtype, copy=False))
                buffer.pos, buffer.full = int(replay["pos"]), bool(replay["full"])
        except (OSError, ValueError, KeyError) as error:
            raise CorruptFileError(f"{path} is not a replay buffer of this run ({error})") from None


# What a saved model's plain JSON may restore: its counters and schedules' progress, never an object.
TRAINING_STATE = ("num_timesteps", "_total_timesteps", "_num_timesteps_at_start", "_episode_num", "_n_updates",
                  "_n_calls", "_current_progress_remaining", "exploration_rate")
REPLAY_ARRAYS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")
REPLAY_FILE = "replay.npz"


def read_model_zip(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The plain JSON and the tensors of an SB3 ``model.zip``, read without running code from it.

    SB3's own ``load`` unpickles the ``:serialized:`` entries of the zip's ``data`` (classes, schedules,
    spaces), so a crafted file runs code. Here ``data`` is parsed as JSON and its pickled entries are
    never decoded; the ``.pth`` state dicts load with ``torch.load(weights_only=True)``. The model is
    then rebuilt from the run's own configuration (``config.json``'s hyperparameters) and these tensors.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            data = json.loads(archive.read("data"))
            params = {}
            for name in archive.namelist():
                if name.endswith(".pth") and name != "pytorch_variables.pth":
                    with archive.open(name) as file:
                        params[name[: -len(".pth")]] = torch.load(io.BytesIO(file.read()), map_location="cpu",
                                                                  weights_only=True)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, pickle.UnpicklingError, RuntimeError) as error:
        raise CorruptFileError(f"{path} is not a readable SB3 model ({type(error).__name__}: "
                               f"{str(error).splitlines()[0] if str(error) else 'no detail'})") from None
    if not isinstance(data, dict) or "policy" not in params:
        raise CorruptFileError(f"{path} is not an SB3 model: its data or policy.pth is missing")
    return data, params


def _plain(value: Any) -> bool:
    """Whether a value of SB3's ``data`` is plain JSON, with no pickled object inside."""
    if isinstance(value, dict):
        return ":serialized:" not in value and all(_plain(v) for v in value.values())
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    return isinstance(value, (str, int, float, bool)) or value is None


def _box_of(data: dict[str, Any], path: Path) -> gym.spaces.Box:
    shape = data.get("observation_space", {}).get("_shape") if isinstance(data.get("observation_space"), dict) \
        else None
    if not (isinstance(shape, list) and shape and all(isinstance(n, int) and n > 0 for n in shape)):
        raise CorruptFileError(f"{path}: its data does not record the observation shape")
    return gym.spaces.Box(-np.inf, np.inf, tuple(shape), np.float32)


class _Spaces(gym.Env):
    """Stands in for the env when a model is rebuilt only to predict: SB3 needs its spaces."""

    def __init__(self, observation_space: gym.spaces.Box, n_actions: int) -> None:
        self.observation_space, self.action_space = observation_space, gym.spaces.Discrete(n_actions)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        raise RuntimeError("a model loaded without its env only predicts; pass the env to train it")

    def step(self, action: int) -> tuple:
        raise RuntimeError("a model loaded without its env only predicts; pass the env to train it")


class _StepCallback(BaseCallback):
    """Forwards SB3's per-step locals to the agent protocol's callback."""

    def __init__(self, agent: SB3Agent, callback: Callback) -> None:
        super().__init__()
        self.agent, self.callback = agent, callback

    def _on_training_start(self) -> None:
        self.callback.on_training_start(self.agent)

    def _on_step(self) -> bool:
        self.agent.num_steps = self.num_timesteps
        return bool(self.callback.on_step(
            self.agent, self.num_timesteps, np.asarray(self.locals["rewards"]), np.asarray(self.locals["dones"]),
            list(self.locals["infos"]),
        ))

    def _on_training_end(self) -> None:
        self.agent.num_steps = self.num_timesteps
        self.callback.on_training_end(self.agent)


class _MetricsWriter(KVWriter):
    """SB3 logger output that hands numeric values to the agent callback."""

    def __init__(self, agent: SB3Agent, callback: Callback) -> None:
        self.agent, self.callback = agent, callback

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, Any], step: int = 0) -> None:
        metrics = {key: float(value) for key, value in key_values.items()
                   if isinstance(value, (int, float, np.number)) and not isinstance(value, bool)}
        if metrics:
            self.callback.on_metrics(self.agent, step, metrics)

    def close(self) -> None:
        pass
