"""The agent zoo: the Double-DQN target, masks, persistence, the registry and the baselines."""

import math
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from stable_baselines3.common.env_util import make_vec_env

import agents
import sfl_env  # noqa: F401
from agents.base import masked_argmax
from agents.ddqn import DDQNAgent, ReplayBuffer, double_dqn_target, linear_epsilon
from evaluation.rollout import run_episode
from sfl_env.errors import ConfigError

ENV_ID = "SFLEnvAnalytic-v0"
# Cut 1 is forbidden (min_client_blocks=2), so every test below has a real mask to honour. Agents
# that do not use masks while learning need privacy="penalty" (learn() refuses "mask" for them).
MASKED = {"min_client_blocks": 2, "max_rounds": 20, "time_budget_s": None}  # no budget: only the target ends early
PENALTY = MASKED | {"privacy": "penalty"}
SMALL = {
    "ddqn": {"learning_starts": 50, "batch_size": 16, "buffer_size": 500, "log_interval": 50},
    "dqn": {"learning_starts": 50, "batch_size": 16, "buffer_size": 500},
    "qrdqn": {"learning_starts": 50, "batch_size": 16, "buffer_size": 500},
    "ppo": {"n_steps": 64, "batch_size": 32, "n_epochs": 2},
    "maskable-ppo": {"n_steps": 64, "batch_size": 32, "n_epochs": 2},
    "a2c": {"n_steps": 8},
}


def vec(kwargs, n_envs=1, seed=0):
    return make_vec_env(ENV_ID, n_envs=n_envs, seed=seed, env_kwargs=kwargs)


# ---------------------------------------------------------------------------------------------- DDQN


def test_double_dqn_target_matches_a_hand_computed_example():
    rewards = torch.tensor([1.0, -0.5, 2.0])
    terminated = torch.tensor([0.0, 0.0, 1.0])
    next_q_online = torch.tensor([[1.0, 5.0, 3.0], [4.0, 0.0, 9.0], [7.0, 1.0, 1.0]])
    next_q_target = torch.tensor([[10.0, 20.0, 30.0], [40.0, 50.0, 60.0], [70.0, 80.0, 90.0]])
    next_masks = torch.tensor([[True, True, True], [True, True, False], [True, True, True]])
    # row 0: online argmax is action 1 -> target value 20 -> 1 + 0.9 * 20 = 19
    # row 1: action 2 is masked, so argmax over {0, 1} is 0 -> 40 -> -0.5 + 0.9 * 40 = 35.5
    #        (vanilla DQN would take max(Q_target) = 60, DDQN without the mask 60 too)
    # row 2: terminated -> just the reward
    target = double_dqn_target(rewards, terminated, next_q_online, next_q_target, next_masks, gamma=0.9)
    torch.testing.assert_close(target, torch.tensor([19.0, 35.5, 2.0]))


def test_epsilon_decays_linearly_then_stays():
    cfg = agents.ddqn.DDQNConfig(exploration_fraction=0.5)
    assert linear_epsilon(0, 1000, cfg) == 1.0
    assert linear_epsilon(250, 1000, cfg) == pytest.approx((1.0 + 0.01) / 2)
    assert linear_epsilon(500, 1000, cfg) == pytest.approx(0.01)
    assert linear_epsilon(900, 1000, cfg) == pytest.approx(0.01)


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(mask_bits=st.lists(st.booleans(), min_size=5, max_size=5).filter(any), seed=st.integers(0, 10_000),
       epsilon=st.sampled_from([0.0, 0.5, 1.0]))
def test_ddqn_never_chooses_a_masked_action(mask_bits, seed, epsilon):
    agent = DDQNAgent(obs_dim=7, n_actions=5, seed=seed)
    mask = np.array(mask_bits)
    obs = np.random.default_rng(seed).random((8, 7)).astype(np.float32)
    assert all(mask[agent.predict(o, mask)] for o in obs)
    assert mask[agent._explore(obs, np.tile(mask, (8, 1)), epsilon)].all()


def test_building_a_ddqn_agent_leaves_the_global_torch_rng_alone():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    agent = DDQNAgent(obs_dim=7, n_actions=5, seed=4)
    assert torch.equal(torch.get_rng_state(), before), "DDQNAgent() advanced torch's global RNG"
    # ... and the agent is still a function of its seed alone, whatever the global RNG holds.
    torch.manual_seed(999)
    twin = DDQNAgent(obs_dim=7, n_actions=5, seed=4)
    for network in ("q_network", "target_network"):
        for a, b in zip(getattr(agent, network).parameters(), getattr(twin, network).parameters()):
            assert torch.equal(a, b)


def test_replay_buffer_wraps_around_and_round_trips():
    buffer = ReplayBuffer(capacity=4, obs_dim=2, n_actions=3)
    for step in range(6):
        buffer.add(np.full((1, 2), step), [step % 3], [float(step)], np.full((1, 2), step + 1), [0.0],
                   [[True, step % 2 == 0, True]], [0.9])
    assert buffer.size == 4 and buffer.position == 2
    assert sorted(buffer.rewards.tolist()) == [2.0, 3.0, 4.0, 5.0]  # the two oldest were overwritten
    copy = ReplayBuffer(capacity=4, obs_dim=2, n_actions=3)
    copy.load_state_dict(buffer.state_dict())
    for name in ReplayBuffer.FIELDS:
        np.testing.assert_array_equal(getattr(copy, name), getattr(buffer, name))
    assert (copy.position, copy.size) == (buffer.position, buffer.size)


def test_a_replay_buffer_saved_before_discounts_loads_with_one_step_discounts():
    buffer = ReplayBuffer(capacity=4, obs_dim=2, n_actions=3)
    buffer.add(np.zeros((2, 2)), [0, 1], [1.0, 2.0], np.ones((2, 2)), [0.0, 1.0], np.ones((2, 3), bool), [0.9, 0.9])
    old = {name: value for name, value in buffer.state_dict().items() if name != "discounts"}
    copy = ReplayBuffer(capacity=4, obs_dim=2, n_actions=3)
    with pytest.raises(ValueError, match="holds no discounts"):
        copy.load_state_dict(old)
    copy.load_state_dict(old, gamma=0.9)
    np.testing.assert_allclose(copy.discounts[:2], [0.9, 0.9])


def test_n_step_transitions_sum_the_discounted_rewards_and_bootstrap_with_gamma_to_the_n():
    agent = DDQNAgent(obs_dim=1, n_actions=2, gamma=0.5, n_step=3)
    steps = [(np.array([float(t)]), t % 2, float(t + 1)) for t in range(3)]  # rewards 1, 2, 3
    mask = np.array([True, True])
    agent._store(list(steps), np.array([3.0]), 0.0, mask, flush=False)
    assert agent.buffer.size == 1
    assert agent.buffer.rewards[0] == 1 + 0.5 * 2 + 0.25 * 3 and agent.buffer.discounts[0] == 0.125
    assert agent.buffer.obs[0, 0] == 0.0 and agent.buffer.next_obs[0, 0] == 3.0
    # an episode that ends flushes every pending step, each with the rewards left to its end
    agent._store(list(steps[1:]), np.array([9.0]), 1.0, mask, flush=True)
    assert agent.buffer.rewards[1:3].tolist() == [2 + 0.5 * 3, 3.0]
    assert agent.buffer.discounts[1:3].tolist() == [0.25, 0.5] and agent.buffer.terminated[1:3].tolist() == [1, 1]


def test_n_step_ddqn_learns_and_its_config_round_trips(tmp_path):
    env = vec(MASKED)
    agent = agents.make("ddqn", env, seed=0, **SMALL["ddqn"], n_step=4, gamma=0.99).learn(env, 200)
    assert agent.num_steps >= 200 and agent.gradient_steps > 0
    discounts = agent.buffer.discounts[: agent.buffer.size]
    powers = 0.99 ** np.arange(1, 5, dtype=np.float32)
    assert np.isclose(discounts[:, None], powers).any(axis=1).all()  # gamma^k, k <= 4
    assert np.isclose(discounts, powers[-1]).mean() > 0.5  # most transitions look 4 rounds ahead
    assert DDQNAgent.load(agent.save(tmp_path / "policy")).config.n_step == 4


def test_ddqn_save_load_gives_identical_actions_and_loads_weights_only(tmp_path, monkeypatch):
    env = vec(MASKED)
    agent = agents.make("ddqn", env, seed=3, **SMALL["ddqn"]).learn(env, 300)
    path = agent.save(tmp_path / "policy")
    calls = []
    original = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append(k) or original(*a, **k))
    loaded = DDQNAgent.load(path)
    assert calls and all(k.get("weights_only") is True for k in calls)
    obs = np.random.default_rng(0).random((50, env.observation_space.shape[0])).astype(np.float32)
    mask = np.array([False, True, True, True, True])
    assert [agent.predict(o, mask) for o in obs] == [loaded.predict(o, mask) for o in obs]
    np.testing.assert_array_equal(agent.q_values(obs), loaded.q_values(obs))


def test_a_dueling_ddqn_is_value_plus_centred_advantage_and_saves_its_shape(tmp_path):
    from agents.ddqn import QNetwork

    network = QNetwork(6, 4, [8], dueling=True)
    obs = torch.randn(5, 6)
    features = network.net(obs)
    advantage = network.advantage(features)
    torch.testing.assert_close(network(obs), network.value(features) + advantage - advantage.mean(-1, keepdim=True))
    torch.testing.assert_close(network(obs).mean(-1, keepdim=True), network.value(features))  # V: the mean Q
    assert [name for name, _ in QNetwork(6, 4, [8]).named_parameters()] == [  # the paper's network: unchanged
        "net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias"]

    env = vec(MASKED)
    agent = agents.make("ddqn", env, seed=0, dueling=True, **SMALL["ddqn"]).learn(env, 200)
    loaded = DDQNAgent.load(agent.save(tmp_path / "policy"))
    assert loaded.config.dueling and loaded.q_network.dueling
    obs = np.random.default_rng(0).random((20, env.observation_space.shape[0])).astype(np.float32)
    np.testing.assert_array_equal(agent.q_values(obs), loaded.q_values(obs))
    with pytest.raises(ValueError, match="ddqn hyperparameter dueling=1 is out of range"):
        agents.make("ddqn", env, dueling=1)


def test_ddqn_checkpoint_restores_weights_optimizer_replay_and_rng(tmp_path):
    env = vec(MASKED)
    agent = agents.make("ddqn", env, seed=1, **SMALL["ddqn"]).learn(env, 200)
    agent.save_checkpoint(tmp_path)
    restored = agents.make("ddqn", env, seed=1, **SMALL["ddqn"])
    restored.load_checkpoint(tmp_path)
    assert (restored.num_steps, restored.gradient_steps) == (agent.num_steps, agent.gradient_steps)
    assert restored.buffer.size == agent.buffer.size == 200
    np.testing.assert_array_equal(restored.buffer.obs, agent.buffer.obs)
    assert restored.rng.random() == agent.rng.random()
    for a, b in zip(restored.optimizer.state_dict()["state"].values(), agent.optimizer.state_dict()["state"].values()):
        torch.testing.assert_close(a["exp_avg"], b["exp_avg"])
    # Both continue identically from here.
    agent.learn(env, 300)
    restored.learn(env, 300)
    obs = np.random.default_rng(0).random((20, env.observation_space.shape[0])).astype(np.float32)
    np.testing.assert_array_equal(agent.q_values(obs), restored.q_values(obs))


def test_corrupt_ddqn_checkpoint_is_refused_with_the_file_named(tmp_path):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="model.pt is not a readable DDQN checkpoint"):
        DDQNAgent.load(bad)
    with pytest.raises(FileNotFoundError, match="no DDQN checkpoint"):
        DDQNAgent.load(tmp_path / "missing.pt")


def test_ddqn_skips_an_update_whose_loss_is_not_finite():
    env = vec(MASKED)
    agent = agents.make("ddqn", env, seed=0, **SMALL["ddqn"]).learn(env, 100)
    agent.buffer.rewards[:] = np.nan
    before = [p.clone() for p in agent.q_network.parameters()]
    loss, _ = agent._update()
    assert loss is None and agent.skipped_updates == 1
    assert all(torch.equal(a, b) for a, b in zip(before, agent.q_network.parameters()))


# ---------------------------------------------------------------------------------------------- registry


@pytest.mark.parametrize("name", agents.AGENTS)
def test_every_agent_runs_a_few_hundred_steps_and_predicts_allowed_actions(name):
    masked_learner = name in ("ddqn", "maskable-ppo")
    kwargs = MASKED if masked_learner or name in agents.BASELINES else PENALTY
    env = vec(kwargs)
    agent = agents.make(name, env, seed=0, **SMALL.get(name, {}))
    agent.learn(env, 256)
    if agent.learns:
        assert agent.num_steps >= 256
    eval_env = gym.make(ENV_ID, **kwargs)
    episode = run_episode(agent, eval_env, seed=5)
    assert episode.rounds == len(episode.cuts) <= kwargs["max_rounds"]
    assert episode.reached_target or episode.rounds == kwargs["max_rounds"]  # only the target ends it early
    assert min(episode.cuts) >= 2, f"{name} took a forbidden cut: {episode.cuts}"
    assert episode.privacy_violations == 0


@pytest.mark.parametrize("name", ["dqn", "ppo", "a2c", "qrdqn"])
def test_mask_unaware_learners_refuse_an_env_that_would_raise_on_forbidden_cuts(name):
    with pytest.raises(ValueError, match="privacy=penalty"):
        agents.make(name, vec(MASKED), **SMALL[name]).learn(vec(MASKED), 64)


@pytest.mark.parametrize("name", ["dqn", "maskable-ppo"])
def test_sb3_save_load_gives_identical_actions(tmp_path, name):
    env = vec(PENALTY if name == "dqn" else MASKED)
    agent = agents.make(name, env, seed=0, **SMALL[name]).learn(env, 128)
    agent.save(tmp_path / "model")
    loaded = agents.sb3.SB3Agent(name, env.action_space.n).load_model(tmp_path / "model")
    obs = np.random.default_rng(0).random((30, env.observation_space.shape[0])).astype(np.float32)
    mask = np.array([False, True, True, True, True])
    assert [agent.predict(o, mask) for o in obs] == [loaded.predict(o, mask) for o in obs]


def test_unknown_agent_and_hyperparameters_are_named():
    env = vec(MASKED)
    with pytest.raises(ConfigError, match=r"unknown agent 'dqnn' \(did you mean 'dqn'\?\); allowed: .*ddqn"):
        agents.make("dqnn", env)
    with pytest.raises(ConfigError, match=r"'SFLEnv-v7' is not registered \(did you mean 'SFLEnv-v0'\?\)"):
        agents.check_env_id("SFLEnv-v7")
    with pytest.raises(ValueError, match="unknown ddqn hyperparameter 'learning_rat'; allowed: gamma"):
        agents.make("ddqn", env, learning_rat=0.1)
    with pytest.raises(ValueError, match="unknown ppo hyperparameter 'epochs'; allowed: .*n_epochs"):
        agents.make("ppo", env, epochs=3)
    with pytest.raises(ValueError, match="ddqn hyperparameter gamma=1.5 is out of range"):
        agents.make("ddqn", env, gamma=1.5)
    with pytest.raises(ConfigError, match="baseline 'random' takes no hyperparameters"):
        agents.make("random", env, gamma=0.5)


def test_the_agent_zoo_does_not_import_the_evaluation_harness():
    # Imports go one way: solvers <- sfl_env <- agents <- evaluation <- scripts.
    code = "import sys, agents, agents.ddqn, agents.sb3, agents.baselines; print('evaluation' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.stdout.strip() == "False"


def test_configs_are_keyed_by_env_id_with_a_default():
    default = agents.hyperparameters("ddqn")
    real = agents.hyperparameters("ddqn", "SFLEnv-v0")
    assert default["gamma"] == real["gamma"] == 0.99
    vehicular = agents.hyperparameters("ddqn", "SFLEnvVehicularAnalytic-v0")  # a task's section overrides
    assert vehicular["gamma"] == 1.0 and vehicular["n_step"] == 32 and vehicular["dueling"] is True
    assert default["n_timesteps"] == 50_000 and real["n_timesteps"] < default["n_timesteps"]
    for name in agents.LEARNERS:
        assert agents.hyperparameters(name), f"agents/configs/{name}.yml is missing or empty"
    assert agents.hyperparameters("oracle") == {}


# ---------------------------------------------------------------------------------------------- baselines


def test_masked_argmax_ignores_forbidden_and_nan_entries():
    assert masked_argmax([5.0, 1.0, 2.0], [False, True, True]) == 2
    assert masked_argmax([math.nan, 1.0, -math.inf], None) == 1
    assert masked_argmax([-math.inf, -math.inf], [False, True]) == 1
    with pytest.raises(ValueError, match="allows no action"):
        masked_argmax([1.0, 2.0], [False, False])
    with pytest.raises(ValueError, match=r"shape \(3,\); allowed: \(2,\)"):
        masked_argmax([1.0, 2.0], [True, True, True])


def test_oracle_takes_the_best_previewed_reward_and_greedy_the_least_latency():
    env = gym.make(ENV_ID, min_client_blocks=2)
    oracle, greedy = agents.make("oracle", env), agents.make("greedy-latency", env)
    obs, info = env.reset(seed=0)
    for _ in range(15):
        preview = env.unwrapped.cut_preview()
        assert np.isnan(preview["reward"][0])  # forbidden under privacy="mask"
        assert greedy.predict(obs, info["action_mask"]) == 1 + int(np.argmin(preview["latency_s"][1:]))
        action = oracle.predict(obs, info["action_mask"])
        assert action == 1 + int(np.argmax(preview["reward"][1:]))
        obs, reward, terminated, truncated, info = env.step(action)
        assert reward == preview["reward"][action]
        if terminated or truncated:
            break


def test_pricing_baselines_need_an_env():
    agent = agents.baselines.OracleAgent(3)
    with pytest.raises(RuntimeError, match="call agent.bind"):
        agent.predict(np.zeros(25, np.float32))


@pytest.mark.parametrize("position, expected", [("shallowest", 1), ("middle", 2), ("deepest", 3)])
def test_fixed_cut_positions_count_among_allowed_cuts(position, expected):
    agent = agents.baselines.FixedCutAgent(5, position=position)
    assert agent.predict(None, np.array([False, True, True, True, False])) == expected


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(mask_bits=st.lists(st.booleans(), min_size=4, max_size=4).filter(any), seed=st.integers(0, 100))
def test_random_agent_covers_exactly_the_allowed_actions(mask_bits, seed):
    agent = agents.baselines.RandomAgent(4, seed=seed)
    picks = {agent.predict(None, np.array(mask_bits)) for _ in range(200)}
    assert picks == set(np.flatnonzero(mask_bits))


def test_learning_rate_decays_linearly_when_a_final_rate_is_set():
    env = vec(MASKED)
    agent = agents.make("ddqn", env, learning_rate_final=0.0, **SMALL["ddqn"]).learn(env, 200)
    assert agent.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * (1 - 199 / 200))
    constant = agents.make("ddqn", env, learning_rate_final=None, **SMALL["ddqn"]).learn(env, 200)
    assert constant.optimizer.param_groups[0]["lr"] == 1e-3
