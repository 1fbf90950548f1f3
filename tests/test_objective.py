"""The decision problem: time to accuracy within budgets, failing loses, the tasks, and the planner."""

import math

import gymnasium as gym
import numpy as np
import pytest

import agents
import sfl_env
from evaluation.rollout import run_episode
from sfl_env.availability import governor_multipliers
from sfl_env.budgets import EpisodeBudget
from sfl_env.config import EnvConfig
from sfl_env.errors import ConfigError
from sfl_env.tasks import PRESET_BUDGETS


def play(env, action, seed):
    env.reset(seed=seed)
    total, done = 0.0, False
    while not done:
        _, reward, terminated, truncated, info = env.step(action)
        total += reward
        done = terminated or truncated
    return total, info, terminated, truncated


def test_the_default_objective_is_time_to_accuracy_within_the_presets_time_budget():
    config = EnvConfig.from_kwargs()
    assert config.reward == "time_to_accuracy" and config.task == "default"
    assert config.time_budget_s == PRESET_BUDGETS["shapes"]["time_budget_s"]
    assert EnvConfig.from_kwargs(preset="digits").time_budget_s == PRESET_BUDGETS["digits"]["time_budget_s"]
    assert EnvConfig.from_kwargs(preset="digits", time_budget_s=5.0).time_budget_s == 5.0  # keywords win


def test_every_failed_episode_returns_less_than_every_episode_that_reached_the_target():
    env = gym.make("SFLEnvAnalytic-v0", preset="digits", time_budget_s=10.0)  # about the median time to target
    budget = env.unwrapped.config.time_budget_s
    successes, failures = [], []
    for action in range(env.action_space.n):
        for seed in range(6):
            total, info, terminated, truncated = play(env, action, seed)
            reference = info["reference_latency_s"]
            assert terminated and not truncated  # a budget end is a terminal state, not a time limit
            if info["episode_end"] == "target":
                assert info["terminal_cost"] == 0 and info["elapsed_s"] <= budget
                successes.append(total)
                assert total >= -budget / reference - 1e-9
            else:
                assert info["episode_end"] == "time_budget"
                failures.append(total)
                assert total <= -2 * budget / reference + 1e-9
    assert successes and failures and max(failures) < min(successes)


def test_a_tight_time_budget_fails_and_pays_the_terminal_cost():
    env = gym.make("SFLEnvAnalytic-v0", preset="digits", time_budget_s=1.0)
    total, info, terminated, _ = play(env, 0, seed=0)
    assert terminated and info["episode_end"] == "time_budget" and info["elapsed_s"] > 1.0
    # the round that ran out pays max(B - elapsed, 0) = 0 plus one budget: B / T_ref
    assert info["terminal_cost"] == pytest.approx(1.0 / info["reference_latency_s"])


def test_max_rounds_truncates_without_a_terminal_cost():
    env = gym.make("SFLEnvAnalytic-v0", preset="digits", max_rounds=3)
    total, info, terminated, truncated = play(env, 0, seed=0)
    assert truncated and not terminated and info["episode_end"] == "max_rounds" and info["terminal_cost"] == 0


def test_leakage_and_energy_budgets_end_the_episode_when_spent():
    env = gym.make("SFLEnvAnalytic-v0", preset="digits", leakage_budget=2.5)
    _, info, terminated, _ = play(env, 0, seed=0)
    # cut 1 of the digits CNN leaks 0.989 a round: the third round overdraws 2.5
    assert terminated and info["episode_end"] == "leakage_budget" and env.unwrapped.episode_state()["round"] == 3
    env = gym.make("SFLEnvAnalytic-v0", preset="digits", energy_budget_j=1e-3)
    _, info, terminated, _ = play(env, 0, seed=0)
    assert terminated and info["episode_end"] == "energy_budget" and info["budget_left"]["energy"] == 0


def test_the_observation_carries_the_budgets_left():
    env = gym.make("SFLEnvBudgetAnalytic-v0", preset="digits")
    obs, _ = env.reset(seed=0)
    k = env.unwrapped.num_clients
    assert obs.shape == (2 * k + 8,) and (obs[-3:] == 1).all()
    obs, _, _, _, info = env.step(0)
    left = info["budget_left"]
    np.testing.assert_allclose(obs[-3:], [left["time"], left["leakage"], left["energy"]], rtol=1e-6)
    assert all(0 < value < 1 for value in left.values())


def test_episode_budget_ends_in_the_documented_order():
    config = EnvConfig.from_kwargs(preset="digits", leakage_budget=1.0, energy_budget_j=1.0)
    budget = EpisodeBudget(config, num_clients=2)
    budget.charge(1.0, 0.5, np.array([0.1, 0.2]))
    assert budget.end(accuracy=0.95, diverged=False) == "target"
    assert budget.end(accuracy=0.95, diverged=True) == "diverged"
    budget.charge(config.time_budget_s, 0.6, np.array([0.0, 0.9]))  # every budget overdrawn at once
    assert budget.end(accuracy=0.95, diverged=False) == "time_budget"  # and the target does not count
    assert budget.left() == {"time": 0.0, "leakage": 0.0, "energy": 0.0}


@pytest.mark.parametrize("task, preset", [("default", None), ("dynamic", None), ("budget", None), ("default", "lm")])
def test_every_task_has_a_real_and_an_analytic_id(task, preset):
    ids = {env_id: kwargs for env_id, kwargs in sfl_env.TASK_IDS.items()
           if kwargs["task"] == task and kwargs.get("preset") == preset}
    assert sorted(kwargs.get("training", "real") for kwargs in ids.values()) == ["analytic", "real"]
    for env_id in ids:
        assert gym.spec(env_id).kwargs["task"] == task
        assert gym.spec(env_id).kwargs.get("preset") == preset


def test_the_budget_task_refuses_a_preset_without_measured_budgets():
    with pytest.raises(ConfigError, match="task='budget' needs the measured budgets of preset 'mnist'"):
        EnvConfig.from_kwargs(preset="mnist", task="budget", data_dir="x")
    with pytest.raises(ConfigError, match="task='hard' is unknown"):
        EnvConfig.from_kwargs(task="hard")


def test_the_dynamic_task_makes_client_cpus_busy_and_clients_move():
    env = gym.make("SFLEnvDynamicAnalytic-v0", preset="digits").unwrapped
    env.reset(seed=0)
    seen_busy, distances = False, env._channel.distance_m
    for _ in range(10):
        env.step(0)
        busy = env._cpu.busy
        seen_busy |= bool(busy.any())
        assert np.all(env._cpu.cpu_hz[busy] <= 0.25 * env._cpu.base_hz[busy] * governor_multipliers().max())
    assert seen_busy and not np.array_equal(env._channel.distance_m, distances)


def test_the_vehicular_task_moves_its_clients_ten_times_faster():
    assert EnvConfig.from_kwargs(task="vehicular").wireless.speed_km_h == 30.0
    assert EnvConfig.from_kwargs().wireless.speed_km_h == 3.0
    env = gym.make("SFLEnvVehicularAnalytic-v0", preset="digits").unwrapped
    env.reset(seed=0)
    before = env._channel.shadowing_db
    _, _, _, _, info = env.step(0)
    kept = math.exp(-30.0 / 3.6 * info["latency_s"] / 50.0)
    assert kept < 1.0 and not np.array_equal(env._channel.shadowing_db, before)


def test_sample_round_costs_reads_distributions_and_moves_no_random_state():
    env = gym.make("SFLEnvAnalytic-v0", preset="digits")
    env.reset(seed=3)
    first = env.unwrapped.sample_round_costs(16, seed=1)
    assert first["latency_s"].shape == (16, 3) and first["energy_j"].shape == (16, 3, 10)
    np.testing.assert_array_equal(first["latency_s"], env.unwrapped.sample_round_costs(16, seed=1)["latency_s"])
    twin = gym.make("SFLEnvAnalytic-v0", preset="digits")
    twin.reset(seed=3)
    a = env.step(1)
    b = twin.step(1)
    assert a[1] == b[1] and np.array_equal(a[0], b[0])


def test_the_planner_rations_the_energy_budget_that_the_one_round_oracle_overdraws():
    # shapes budget task: cut 2's rounds are sometimes the quickest but cost more energy; the oracle takes
    # them when they are and runs out of energy, the planner keeps to cut 1 and reaches the target more often
    env = gym.make("SFLEnvBudgetAnalytic-v0")
    oracle, planner = agents.make("oracle", env), agents.make("planner", env)
    oracle_ends = [run_episode(oracle, env, seed).episode_end for seed in range(8)]
    planner_ends = [run_episode(planner, env, seed).episode_end for seed in range(8)]
    assert oracle_ends.count("energy_budget") >= 3
    assert planner_ends.count("target") > oracle_ends.count("target")


def test_the_planner_needs_a_calibrated_configuration():
    env = gym.make("SFLEnv-v0", preset="digits", model="mlp", num_train=200, num_test=100)
    planner = agents.make("planner", env)
    obs, info = env.reset(seed=0)
    with pytest.raises(ConfigError, match="no calibration"):
        planner.predict(obs, info["action_mask"])


def test_an_episode_that_runs_out_of_budget_has_not_reached_the_target():
    # a bug fixed with the budgets: every termination used to count as reaching the target
    env = gym.make("SFLEnvAnalytic-v0", preset="digits", time_budget_s=1.0)
    episode = run_episode(agents.make("cut-1", env), env, seed=0)
    assert episode.episode_end == "time_budget" and not episode.reached_target
    assert math.isnan(episode.seconds_to_target)


def test_without_budgets_or_a_reachable_target_the_planner_takes_the_least_seconds_per_progress():
    # target above the twin's plateau: no plan can reach it, and there is no budget to ration
    env = gym.make("SFLEnvAnalytic-v0", preset="digits", time_budget_s=None, target_accuracy=0.999)
    planner = agents.make("planner", env)
    obs, info = env.reset(seed=0)
    action = planner.predict(obs, info["action_mask"])
    costs = planner._costs["latency_s"] / planner._curve.speeds_for(env.unwrapped.cuts)
    assert action == int(np.argmin(costs))


def test_fedavg_spends_no_leakage_budget():
    # FL sends model updates, never smashed data: its rounds leak nothing by this measure
    env = gym.make("SFLEnvAnalytic-v0", preset="digits", scheme="fl", leakage_budget=0.5)
    env.reset(seed=0)
    _, _, _, _, info = env.step(0)
    assert info["leakage"] == 0.0 and info["budget_left"]["leakage"] == 1.0
