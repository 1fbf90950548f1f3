"""The native vector env as an SB3 VecEnv: the same episodes as SB3's DummyVecEnv over single envs."""

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.vec_env import DummyVecEnv

import sfl_env  # noqa: F401  (registers the ids)
from evaluation.sb3_vector import NativeVecEnv, has_native_vector_env
from evaluation.training import make_vec_env


def test_it_plays_what_dummy_vec_env_plays_step_for_step():
    kwargs = {"max_rounds": 15}
    native = NativeVecEnv("SFLEnvDynamicAnalytic-v0", 3, kwargs)
    dummy = DummyVecEnv([lambda: gym.make("SFLEnvDynamicAnalytic-v0", **kwargs)] * 3)
    for vec in (native, dummy):
        vec.seed(21)
    np.testing.assert_array_equal(native.reset(), dummy.reset())
    rng, ended = np.random.default_rng(0), 0
    for _ in range(40):
        masks = np.stack(native.env_method("action_masks"))
        np.testing.assert_array_equal(masks, np.stack(dummy.env_method("action_masks")))
        actions = np.array([rng.choice(np.flatnonzero(mask)) for mask in masks])
        obs, rewards, dones, infos = native.step(actions)
        expected_obs, expected_rewards, expected_dones, expected_infos = dummy.step(actions)
        np.testing.assert_array_equal(obs, expected_obs)
        np.testing.assert_array_equal(rewards, expected_rewards)
        np.testing.assert_array_equal(dones, expected_dones)
        for info, expected in zip(infos, expected_infos):
            for key in ("latency_s", "episode_end", "TimeLimit.truncated", "terminal_cost"):
                assert info[key] == expected[key], key
            np.testing.assert_array_equal(info["action_mask"], expected["action_mask"])
            if "terminal_observation" in expected:
                np.testing.assert_array_equal(info["terminal_observation"], expected["terminal_observation"])
        ended += int(dones.sum())
    assert ended >= 3  # several episodes ended and were reset in the same step


def test_a_run_config_gets_the_native_env_for_analytic_ids_only():
    assert has_native_vector_env("SFLEnvAnalytic-v0") and not has_native_vector_env("SFLEnv-v0")
    vec = make_vec_env({"env_id": "SFLEnvAnalytic-v0", "env_kwargs": {"preset": "digits"}, "n_envs": 4})
    assert isinstance(vec, NativeVecEnv) and vec.num_envs == 4
    assert vec.get_attr("spec", indices=[0])[0].id == "SFLEnvAnalytic-v0"
    with pytest.raises(AttributeError, match="action_masks"):
        vec.env_method("cut_preview")
    vec.close()
