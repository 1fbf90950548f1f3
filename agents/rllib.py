"""RLlib algorithms (new API stack) on the SFL-Env tasks, and their trained policies behind the agent protocol.

* :func:`algorithm_config`: the ``AlgorithmConfig`` of ``rllib-ppo`` (masked where masks are in play)
  or ``rllib-dqn`` (``privacy="penalty"`` only: RLlib's DQN has no masking module) on one task id.
* :class:`RLlibAgent`: a trained RL module as an :class:`~agents.base.Agent`, so ``evaluate.py`` plays it
  like any other run folder (``train_rllib.py`` writes those).

Ray is imported when these are used; ``pip install 'sfl-env[rllib]'`` installs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sfl_env.errors import ConfigError
from sfl_env.rllib import register, uses_masks

from .base import Agent, masked_argmax

RLLIB_ALGORITHMS = ("rllib-ppo", "rllib-dqn")
MODULE_FOLDER = "rl_module"  # the trained RL module inside a run folder


def algorithm_config(algorithm: str, env_id: str, env_kwargs: dict[str, Any], seed: int = 0,
                     num_env_runners: int = 0, **training: Any) -> Any:
    """The RLlib ``AlgorithmConfig`` of ``algorithm`` (one of :data:`RLLIB_ALGORITHMS`) on task ``env_id``.

    ``env_kwargs`` become RLlib's ``env_config`` (the ``gym.make`` keywords); ``training`` are
    ``AlgorithmConfig.training`` options (``lr``, ``train_batch_size_per_learner``, ...). With
    ``num_env_runners=0`` the driver samples; with more, each runner builds the env by name.
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
              .env_runners(num_env_runners=num_env_runners, num_envs_per_env_runner=1)
              .debugging(seed=seed).training(**training))
    if masks:
        from ray.rllib.core.rl_module.rl_module import RLModuleSpec

        from .masked_ppo import MaskedPPOModule

        config = config.rl_module(rl_module_spec=RLModuleSpec(module_class=MaskedPPOModule))
    return config


class RLlibAgent(Agent):
    """A trained RLlib RL module acting through the agent protocol (greedy: the best allowed cut)."""

    learns = False

    def __init__(self, module: Any, algorithm: str, n_actions: int) -> None:
        super().__init__()
        self.module, self.name, self.n_actions = module, algorithm, int(n_actions)
        self.masked = hasattr(module, "split")  # a MaskedPPOModule reads the mask with the observation

    @classmethod
    def load(cls, folder: str | Path, algorithm: str, n_actions: int) -> RLlibAgent:
        """The RL module saved in ``folder`` (an RLlib module checkpoint)."""
        from ray.rllib.core.rl_module.rl_module import RLModule

        path = Path(folder)
        if not path.is_dir():
            raise FileNotFoundError(f"no RLlib module at {path}")
        return cls(RLModule.from_checkpoint(path.resolve()), algorithm, n_actions)

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
