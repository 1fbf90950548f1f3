"""RLlib on the SFL tasks: registration by name, the masked observation, masked PPO, DQN with penalties,
train_rllib.py's run folder played by evaluate.py. Skipped where Ray's RLlib is not installed."""

from __future__ import annotations

import csv
import json

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import agents
import sfl_env
from sfl_env.errors import ConfigError

pytest.importorskip("ray.rllib")
pytestmark = pytest.mark.ray
import ray  # noqa: E402

import sfl_env.rllib  # noqa: E402
from agents.rllib import algorithm_config  # noqa: E402

MASKED = {"preset": "digits", "min_client_blocks": 2, "max_rounds": 20}  # cut 1 is forbidden
SMALL = {"train_batch_size_per_learner": 100, "minibatch_size": 50, "num_epochs": 1}


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    yield
    ray.shutdown()


def test_every_task_id_is_registered_with_rllib_under_its_name(local_ray):
    from ray.tune.registry import ENV_CREATOR, _global_registry

    assert sfl_env.rllib.register() == list(sfl_env.TASK_IDS)
    creator = _global_registry.get(ENV_CREATOR, "SFLEnvBudgetAnalytic-v0")
    env = creator({"preset": "digits"})  # RLlib's env_config dict is the gym.make keywords
    assert env.unwrapped.config.task == "budget" and env.unwrapped.config.system.dataset == "digits"
    with pytest.raises(ConfigError, match="'CartPole-v1' is not an SFL-Env task"):
        sfl_env.rllib.register(["CartPole-v1"])


def test_the_masked_env_passes_gymnasium_and_sb3_checks_and_carries_the_mask():
    # the checkers step random actions, so they run where privacy="mask" allows every cut
    for privacy in ("mask", "penalty"):
        checked = sfl_env.rllib.make_env("SFLEnvAnalytic-v0", {"preset": "digits", "privacy": privacy})
        gym_check_env(checked, skip_render_check=True)
        sb3_check_env(checked, warn=False)
    env = sfl_env.rllib.make_env("SFLEnvAnalytic-v0", MASKED)
    obs, _ = env.reset(seed=0)
    assert set(obs) == {"observations", "action_mask"}
    np.testing.assert_array_equal(obs["action_mask"], [0.0, 1.0, 1.0])
    assert env.observation_space.contains(obs)
    plain = sfl_env.rllib.make_env("SFLEnvAnalytic-v0", MASKED | {"privacy": "penalty"})
    assert isinstance(plain.observation_space, gym.spaces.Box)  # no mask in play: the plain observation


def test_an_env_runner_asking_for_several_episodes_gets_the_native_vector_env_masked_alike():
    vector = sfl_env.rllib.make_env("SFLEnvAnalytic-v0", MASKED | {"num_envs": 3})
    obs, _ = vector.reset(seed=0)
    assert vector.single_observation_space == sfl_env.rllib.make_env("SFLEnvAnalytic-v0", MASKED).observation_space
    assert obs["observations"].shape == (3, vector.single_observation_space["observations"].shape[0])
    np.testing.assert_array_equal(obs["action_mask"], [[0.0, 1.0, 1.0]] * 3)
    assert vector.observation_space.contains(obs)
    obs, *_ = vector.step(np.array([1, 2, 1]))
    assert vector.observation_space.contains(obs)
    with pytest.raises(ConfigError, match="no native vector env"):
        sfl_env.rllib.make_env("SFLEnv-v0", {"num_envs": 2})


def test_masked_ppo_trains_in_a_remote_env_runner_and_never_sends_a_masked_cut(local_ray):
    algorithm = algorithm_config("rllib-ppo", "SFLEnvAnalytic-v0", MASKED, num_env_runners=1,
                                 num_envs_per_env_runner=4, **SMALL).build_algo()
    try:
        # the env lives in the remote runner, built there from the registered name: the native vector env
        built = algorithm.env_runner_group.foreach_env_runner(
            lambda runner: (runner.config.env, type(runner.env.unwrapped).__name__, runner.env.unwrapped.num_envs),
            local_env_runner=False)
        assert built == [("SFLEnvAnalytic-v0", "SFLVectorEnv", 4)]
        # with privacy="mask" a forbidden cut raises inside the env, so sampling would fail on the first one
        result = algorithm.train()
        assert result["env_runners"]["num_env_steps_sampled_lifetime"] >= SMALL["train_batch_size_per_learner"]
        module = algorithm.get_module()
        agent = agents.rllib.RLlibAgent(module, "rllib-ppo", 3)
        env = gym.make("SFLEnvAnalytic-v0", **MASKED)
        for seed in range(20):
            obs, _ = env.reset(seed=seed)
            mask = env.unwrapped.action_masks()
            assert agent.action_scores(obs, mask)[0] < -1e30 and agent.predict(obs, mask) != 0
    finally:
        algorithm.stop()


def test_rllib_dqn_needs_penalties_and_trains_with_them(local_ray):
    with pytest.raises(ConfigError, match="rllib-dqn has no action-masking module"):
        algorithm_config("rllib-dqn", "SFLEnvAnalytic-v0", MASKED)
    algorithm = algorithm_config("rllib-dqn", "SFLEnvAnalytic-v0", MASKED | {"privacy": "penalty"},
                                 train_batch_size_per_learner=16, num_steps_sampled_before_learning_starts=0,
                                 ).reporting(min_sample_timesteps_per_iteration=50).build_algo()
    try:
        result = algorithm.train()  # one iteration: it samples, then updates the Q-network
        assert result["env_runners"]["num_env_steps_sampled_lifetime"] > 0
        agent = agents.rllib.RLlibAgent(algorithm.get_module(), "rllib-dqn", 3)
        env = gym.make("SFLEnvAnalytic-v0", **MASKED | {"privacy": "penalty"})
        obs, _ = env.reset(seed=0)
        assert np.isfinite(agent.action_scores(obs)).all() and 0 <= agent.predict(obs) < 3
    finally:
        algorithm.stop()


def test_train_rllib_writes_a_run_folder_that_evaluate_plays(tmp_path, local_ray):
    import evaluate
    import train_rllib

    run = tmp_path / "rllib-ppo"
    assert train_rllib.main(["--env-kwargs", *(f"{k}={v}" for k, v in MASKED.items()), "--iterations", "1",
                             "--training", *(f"{k}={v}" for k, v in SMALL.items()), "--out", str(run)]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["agent"] == "rllib-ppo" and config["env_kwargs"] == MASKED
    assert (run / "metrics.jsonl").read_text().count('"kind": "train"') == 1
    out = tmp_path / "eval"
    assert evaluate.main(["--mode", "agents", "--agents", str(run), "--seeds", "1", "--out", str(out),
                          "--env-kwargs", *(f"{k}={v}" for k, v in MASKED.items())]) == 0
    with (out / "results.csv").open(newline="") as file:
        rows = [row for row in csv.DictReader(file) if row["agent"] == "rllib-ppo"]
    assert len(rows) == 1 and rows[0]["cuts"] and "1" not in rows[0]["cuts"].split()  # never cut 1
