"""RLlib's PPO module with action masking: forbidden cuts get zero probability in every forward pass.

It reads the Dict observation ``{"observations", "action_mask"}`` of
:class:`sfl_env.rllib.MaskedObservation`, builds PPO's default networks for the observations alone,
and sets the logit of every masked cut to ``FLOAT_MIN`` in exploration, inference and the loss, so
RLlib never samples a masked cut and the loss sees the same distribution it sampled from. Importing
this module imports Ray (``pip install 'sfl-env[rllib]'``).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import torch
from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import DefaultPPOTorchRLModule
from ray.rllib.core.columns import Columns
from ray.rllib.utils.torch_utils import FLOAT_MIN


class MaskedPPOModule(DefaultPPOTorchRLModule):
    """PPO's torch RL module on ``{"observations", "action_mask"}`` observations."""

    def __init__(self, *, observation_space: gym.Space | None = None, **kwargs: Any) -> None:
        self._space_with_mask = observation_space
        inner = observation_space["observations"] if isinstance(observation_space, gym.spaces.Dict) \
            else observation_space
        super().__init__(observation_space=inner, **kwargs)

    def setup(self) -> None:
        super().setup()  # the networks are built for the observations alone
        self.observation_space = self._space_with_mask

    @staticmethod
    def split(batch: dict[str, Any]) -> tuple[torch.Tensor | None, dict[str, Any]]:
        """(the action mask, the batch with the observations alone); no mask for a plain batch."""
        obs = batch[Columns.OBS]
        if not isinstance(obs, dict):
            return None, batch
        return obs["action_mask"], {**batch, Columns.OBS: obs["observations"]}

    @staticmethod
    def mask_logits(output: dict[str, Any], mask: torch.Tensor | None) -> dict[str, Any]:
        if mask is not None:
            logits = output[Columns.ACTION_DIST_INPUTS]
            output[Columns.ACTION_DIST_INPUTS] = logits.masked_fill(mask <= 0, FLOAT_MIN)
        return output

    def _forward(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        mask, batch = self.split(batch)
        return self.mask_logits(super()._forward(batch, **kwargs), mask)

    def _forward_train(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        mask, batch = self.split(batch)
        return self.mask_logits(super()._forward_train(batch, **kwargs), mask)

    def compute_values(self, batch: dict[str, Any], embeddings: Any = None) -> torch.Tensor:
        _, batch = self.split(batch)
        return super().compute_values(batch, embeddings)
