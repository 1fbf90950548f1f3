"""The native vector env behind Stable-Baselines3's ``VecEnv`` interface, for every SB3 agent and the DDQN.

:class:`NativeVecEnv` runs ``gym.make_vec(env_id, num_envs=n, vectorization_mode="vector_entry_point")``
(:class:`~sfl_env.vector.SFLVectorEnv`: n analytic episodes stepped as arrays in this process) with
same-step autoreset, and speaks SB3's dialect: ``reset()`` returns the observations only (the infos go to
``reset_infos``), ``step`` returns one info dict per env with ``terminal_observation`` and
``TimeLimit.truncated`` on the step that ends an episode, ``seed(s)`` seeds env i with ``s + i`` at the
next reset, and ``env_method("action_masks")`` gives each env's mask. Episode i then equals what SB3's
``DummyVecEnv`` over ``gym.make(env_id)`` plays, step for step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvStepReturn

_INFO_KEYS = ("cut", "latency_s", "elapsed_s", "test_accuracy", "train_loss", "terminal_cost", "episode_end")


def has_native_vector_env(env_id: str) -> bool:
    """Whether ``env_id`` registers a native vector env (every analytic id does)."""
    return gym.spec(env_id).vector_entry_point is not None


class NativeVecEnv(VecEnv):
    """``num_envs`` episodes of ``env_id`` in one native vector env, as an SB3 ``VecEnv``."""

    def __init__(self, env_id: str, num_envs: int, env_kwargs: dict[str, Any] | None = None) -> None:
        self.env_id = env_id
        self.venv = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point",
                                 autoreset_mode=AutoresetMode.SAME_STEP, **(env_kwargs or {}))
        super().__init__(num_envs, self.venv.single_observation_space, self.venv.single_action_space)
        self._actions: np.ndarray | None = None
        self._masks = np.ones((num_envs, self.action_space.n), dtype=bool)

    def reset(self) -> np.ndarray:
        seeds = None if all(seed is None for seed in self._seeds) else self._seeds
        obs, infos = self.venv.reset(seed=seeds)
        self._masks = infos["action_mask"]
        self.reset_infos = [{"action_mask": mask.copy()} for mask in self._masks]
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions, dtype=np.int64).reshape(self.num_envs)

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, terminated, truncated, infos = self.venv.step(self._actions)
        dones = terminated | truncated
        self._masks = infos["action_mask"]
        final = infos.get("final_info", {})
        step_infos = []
        for i in range(self.num_envs):
            source = final if dones[i] else infos
            info = {key: source[key][i] for key in _INFO_KEYS}
            info["action_mask"] = self._masks[i].copy()
            info["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
            if dones[i]:
                info["terminal_observation"] = infos["final_obs"][i]
                self.reset_infos[i] = {"action_mask": self._masks[i].copy()}
            step_infos.append(info)
        return obs, rewards.astype(np.float32), dones, step_infos

    def close(self) -> None:
        self.venv.close()

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        if attr_name == "spec":
            value = gym.spec(self.env_id)
        elif attr_name == "render_mode":
            value = None
        else:
            value = getattr(self.venv.unwrapped, attr_name)
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        raise AttributeError(f"the native vector env's episodes share their attributes; cannot set {attr_name!r}")

    def env_method(self, method_name: str, *method_args, indices: VecEnvIndices = None, **method_kwargs) -> list[Any]:
        if method_name != "action_masks":
            raise AttributeError(f"the native vector env has no per-episode method {method_name!r}; "
                                 "allowed: 'action_masks'")
        return [self._masks[i].copy() for i in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [None for _ in range(self.num_envs)]
