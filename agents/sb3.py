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

import importlib
import inspect
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import KVWriter, Logger

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
            self.model = self.cls(self.policy, env, seed=self.seed, verbose=0, **self.hyperparameters)
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
        path = Path(path).with_suffix(".zip")
        if not path.is_file():
            raise FileNotFoundError(f"no {self.name} model at {path}")
        self.model = self.cls.load(path, env=env, device="cpu")
        self.num_steps = self.model.num_timesteps
        return self

    def save_checkpoint(self, folder: str | Path) -> None:
        folder = Path(folder)
        self.save(folder / "model")
        if hasattr(self.model, "replay_buffer") and self.model.replay_buffer is not None:
            with replacing(folder / "replay.pkl") as tmp:
                self.model.save_replay_buffer(tmp)

    def load_checkpoint(self, folder: str | Path, env: Any = None) -> None:
        folder = Path(folder)
        self.load_model(folder / "model", env=env)
        if (folder / "replay.pkl").is_file() and hasattr(self.model, "load_replay_buffer"):
            self.model.load_replay_buffer(folder / "replay.pkl")


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
