"""RLlib on every SFL-Env task: ``sfl_env.rllib.register()`` makes each task id an RLlib env of the same name.

    import sfl_env.rllib
    sfl_env.rllib.register()
    config = PPOConfig().environment("SFLEnvAnalytic-v0", env_config={"preset": "digits"})

RLlib's new API stack does not read the Gymnasium registry: its env runners build envs from names
registered with ``ray.tune.registry.register_env``, and Ray stores those registrations in the cluster,
so every worker finds them by name. :func:`register` registers every id of :data:`sfl_env.TASK_IDS`;
RLlib's ``env_config`` dict is taken as the ``gym.make`` keywords. On a cluster the package itself
must reach the nodes: install it there, or ship it with ``ray.init(runtime_env={"py_modules": [...]})``.

Vector envs: RLlib's env runners step ``num_envs_per_env_runner`` episodes each; on an analytic id
:func:`agents.rllib.algorithm_config` has them build the native vector env (``gym_env_vectorize_mode=
"vector_entry_point"``: :func:`make_env` receives ``num_envs``), so a runner steps its episodes as arrays.

Masks: with ``privacy="mask"`` (the default) a cut may be forbidden, so the env RLlib sees is wrapped
in :class:`MaskedObservation`: a Dict observation ``{"observations": <the Box observation>,
"action_mask": <1.0 per allowed cut>}``, the layout RLlib's action-masking RL modules read (PPO with
``agents.rllib.MaskedPPOModule``). With ``privacy="penalty"`` no cut is refused, the observation
stays the plain Box, and any RLlib algorithm (DQN among them) learns on it.

This module imports Ray only inside :func:`register`; ``pip install 'sfl-env[rllib]'`` installs it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from .errors import ConfigError


class MaskedObservation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """The env's observation and its action mask as one Dict observation (RLlib's masking layout)."""

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.ObservationWrapper.__init__(self, env)
        n_actions = int(env.action_space.n)
        self.observation_space = spaces.Dict({
            "observations": env.observation_space,
            "action_mask": spaces.Box(0.0, 1.0, (n_actions,), dtype=np.float32),
        })

    def observation(self, observation: np.ndarray) -> dict[str, np.ndarray]:
        mask = np.asarray(self.env.unwrapped.action_masks(), dtype=np.float32)
        return {"observations": observation, "action_mask": mask}


class MaskedVectorObservation(gym.vector.VectorObservationWrapper):
    """:class:`MaskedObservation` for a vector env: each episode's observation and action mask as one Dict
    observation, batched (``{"observations": (E, ...), "action_mask": (E, n_cuts)}``)."""

    def __init__(self, env: gym.vector.VectorEnv) -> None:
        super().__init__(env)
        n_actions = int(env.single_action_space.n)
        self.single_observation_space = spaces.Dict({
            "observations": env.single_observation_space,
            "action_mask": spaces.Box(0.0, 1.0, (n_actions,), dtype=np.float32),
        })
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, env.num_envs)

    def observations(self, observations: np.ndarray) -> dict[str, np.ndarray]:
        masks = np.asarray(self.env.unwrapped.action_masks(), dtype=np.float32)
        return {"observations": observations, "action_mask": masks}


def uses_masks(env_config: Mapping[str, Any]) -> bool:
    """Whether an env built from ``env_config`` may refuse cuts (``privacy="mask"``, the default)."""
    return env_config.get("privacy", "mask") == "mask"


def make_env(env_id: str, env_config: Mapping[str, Any] | None = None) -> gym.Env | gym.vector.VectorEnv:
    """The env RLlib gets for ``env_id``: ``gym.make(env_id, **env_config)``, masked where masks are in play.

    ``env_config`` may be RLlib's ``EnvContext`` (a dict with the worker index and such as attributes).
    With ``num_envs`` in it (RLlib adds it when ``gym_env_vectorize_mode`` is ``"vector_entry_point"``,
    :func:`agents.rllib.algorithm_config` sets that for every analytic id), the native vector env of that
    many episodes (:class:`~sfl_env.vector.SFLVectorEnv`), masked alike.
    """
    import sfl_env  # noqa: F401  (registers the Gymnasium ids in this worker)

    if env_id not in sfl_env.TASK_IDS:
        raise ConfigError(f"{env_id!r} is not an SFL-Env task; allowed: {', '.join(sfl_env.TASK_IDS)}")
    kwargs = dict(env_config or {})
    num_envs = kwargs.pop("num_envs", None)
    if num_envs is None:
        env = gym.make(env_id, **kwargs)
        return MaskedObservation(env) if uses_masks(kwargs) else env
    if not has_native_vector_env(env_id):
        raise ConfigError(f"{env_id!r} trains for real and has no native vector env; allowed: an analytic id, or "
                          "RLlib's gym_env_vectorize_mode='sync'")
    vector = gym.make_vec(env_id, num_envs=int(num_envs), vectorization_mode="vector_entry_point", **kwargs)
    return MaskedVectorObservation(vector) if uses_masks(kwargs) else vector


def has_native_vector_env(env_id: str) -> bool:
    """Whether ``env_id`` steps many episodes as arrays (every analytic id)."""
    import sfl_env

    return sfl_env.TASK_IDS[env_id].get("training") == "analytic"


def register(ids: Iterable[str] | None = None) -> list[str]:
    """Registers each task id (default: all of :data:`sfl_env.TASK_IDS`) with RLlib under the same name;
    returns the names. Call it in the driver before building an algorithm."""
    try:
        from ray.tune.registry import register_env
    except ImportError as error:
        raise ImportError("sfl_env.rllib needs Ray: pip install 'sfl-env[rllib]'") from error
    import sfl_env

    names = list(sfl_env.TASK_IDS if ids is None else ids)
    for env_id in names:
        if env_id not in sfl_env.TASK_IDS:
            raise ConfigError(f"{env_id!r} is not an SFL-Env task; allowed: {', '.join(sfl_env.TASK_IDS)}")
        register_env(env_id, functools.partial(make_env, env_id))
    return names
