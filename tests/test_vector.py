"""The native vector env: E episodes as arrays, each equal to a single env on its seed, step for step."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import VectorEnv

import sfl_env
import sfl_env.draws
from sfl_env.errors import ActionError, ConfigError

ANALYTIC_IDS = [env_id for env_id, kwargs in sfl_env.TASK_IDS.items() if kwargs.get("training") == "analytic"]


def _play(vector: VectorEnv, singles: list[gym.Env], seed: int, steps: int, rng: np.random.Generator,
          any_cut: bool = False) -> list[str]:
    """Steps the vector env and the single envs side by side on random allowed actions (``any_cut``: over
    every cut, forbidden ones included), checking every observation, reward, end and info exactly;
    returns how each episode that ended, ended."""
    obs, infos = vector.reset(seed=seed)
    single_obs = [env.reset(seed=seed + e)[0] for e, env in enumerate(singles)]
    np.testing.assert_array_equal(obs, np.stack(single_obs))
    ends, pending = [], np.zeros(len(singles), dtype=bool)
    for _ in range(steps):
        if any_cut:
            actions = rng.integers(0, vector.single_action_space.n, len(singles))
        else:
            actions = np.array([rng.choice(np.flatnonzero(mask)) for mask in infos["action_mask"]])
        obs, rewards, terminated, truncated, infos = vector.step(actions)
        for e, env in enumerate(singles):
            if pending[e]:  # next-step autoreset: this step reset the episode
                expected_obs, info = env.reset()
                assert rewards[e] == 0.0 and not terminated[e] and not truncated[e] and not infos["_cut"][e]
            else:
                expected_obs, reward, done, cut_short, info = env.step(int(actions[e]))
                assert (rewards[e], terminated[e], truncated[e]) == (reward, done, cut_short)
                for key in ("cut", "latency_s", "elapsed_s", "terminal_cost", "episode_end"):
                    assert infos[key][e] == info[key], key
                np.testing.assert_equal(infos["test_accuracy"][e], info["test_accuracy"])
                if done or cut_short:
                    ends.append(info["episode_end"])
            np.testing.assert_array_equal(obs[e], expected_obs)
            np.testing.assert_array_equal(infos["action_mask"][e], info["action_mask"])
        pending = terminated | truncated
    return ends


@pytest.mark.parametrize("env_id", ANALYTIC_IDS)
def test_each_episode_equals_the_single_env_on_its_seed_through_autoresets(env_id):
    num_envs = 3
    vector = gym.make_vec(env_id, num_envs=num_envs, max_rounds=25)  # short episodes: several autoresets
    assert isinstance(vector.unwrapped, sfl_env.vector.SFLVectorEnv)
    singles = [gym.make(env_id, max_rounds=25) for _ in range(num_envs)]
    assert len(_play(vector, singles, seed=11, steps=60, rng=np.random.default_rng(0))) >= num_envs


def test_privacy_penalty_and_budgets_match_too():
    kwargs = dict(privacy="penalty", privacy_rule="min_blocks", min_client_blocks=2, max_rounds=30)
    vector = gym.make_vec("SFLEnvBudgetAnalytic-v0", num_envs=2, **kwargs)
    singles = [gym.make("SFLEnvBudgetAnalytic-v0", **kwargs) for _ in range(2)]
    # Random actions over every cut: the disallowed ones are replaced and pay the penalty in both.
    _play(vector, singles, seed=3, steps=40, rng=np.random.default_rng(1), any_cut=True)


def test_failures_and_their_terminal_costs_match_too():
    # budgets tight enough that episodes fail on time, leakage or energy and pay the terminal cost
    kwargs = dict(time_budget_s=6.0, leakage_budget=8.0, energy_budget_j=1.5, max_rounds=40)
    vector = gym.make_vec("SFLEnvAnalytic-v0", num_envs=4, **kwargs)
    singles = [gym.make("SFLEnvAnalytic-v0", **kwargs) for _ in range(4)]
    ends = _play(vector, singles, seed=40, steps=60, rng=np.random.default_rng(3), any_cut=True)
    assert {"time_budget", "energy_budget"} <= set(ends)  # failures happened and were compared


def test_a_batch_of_one_is_the_single_env():
    vector = gym.make_vec("SFLEnvDynamicAnalytic-v0", num_envs=1, max_rounds=20)
    _play(vector, [gym.make("SFLEnvDynamicAnalytic-v0", max_rounds=20)], seed=5, steps=30,
          rng=np.random.default_rng(2))


def test_spaces_masks_and_seeds():
    vector = gym.make_vec("SFLEnvAnalytic-v0", num_envs=4)
    single = gym.make("SFLEnvAnalytic-v0")
    assert vector.single_observation_space == single.observation_space
    assert vector.observation_space.shape == (4, *single.observation_space.shape)
    obs, infos = vector.reset(seed=[7, 7, 8, None])
    assert obs.shape == (4, *single.observation_space.shape) and obs.dtype == np.float32
    np.testing.assert_array_equal(obs[0], obs[1])  # the same seed, the same episode
    assert infos["action_mask"].shape == (4, single.action_space.n)
    np.testing.assert_array_equal(vector.unwrapped.action_masks(), infos["action_mask"])


def test_bad_input_is_refused_before_any_work():
    with pytest.raises(ConfigError, match="analytic twin only"):
        gym.make_vec("SFLEnvAnalytic-v0", num_envs=2, vectorization_mode="vector_entry_point", training="real")
    with pytest.raises(ConfigError, match="num_envs"):
        sfl_env.vector.SFLVectorEnv(0)
    vector = gym.make_vec("SFLEnvAnalytic-v0", num_envs=2)
    with pytest.raises(RuntimeError, match="reset"):
        vector.step(np.zeros(2, dtype=int))
    vector.reset(seed=0)
    with pytest.raises(ActionError, match="shape"):
        vector.step(np.zeros(3, dtype=int))
    with pytest.raises(ActionError, match=r"actions\[1\]=99"):
        vector.step(np.array([0, 99]))
    with pytest.raises(ConfigError, match="one per episode"):
        vector.reset(seed=[1, 2, 3])
    masked = gym.make_vec("SFLEnvAnalytic-v0", num_envs=2, privacy_rule="min_blocks", min_client_blocks=2)
    masked.reset(seed=0)
    with pytest.raises(ActionError, match="privacy"):
        masked.step(np.array([1, 0]))


def test_a_step_split_over_threads_is_bitwise_the_step_in_one_run(monkeypatch):
    # From PARALLEL_FROM_ROWS episodes the compiled kernels (the solver, the channel, the draws) take their rows in
    # runs on threads, and from SHARING_FROM_ROWS the pricer's pass shares its rows among threads; each row is computed
    # by the same code, so nothing may change.
    from solvers import row_runs

    def play() -> list[np.ndarray]:
        vector = gym.make_vec("SFLEnvDynamicAnalytic-v0", num_envs=7, max_rounds=15)
        rng, (obs, _) = np.random.default_rng(3), vector.reset(seed=5)
        seen = [obs]
        for _ in range(40):
            obs, reward, terminated, truncated, _ = vector.step(rng.integers(0, vector.single_action_space.n, 7))
            seen += [obs, reward, terminated, truncated]
        return seen

    monkeypatch.setattr(row_runs, "PARALLEL_FROM_ROWS", 10**9)
    monkeypatch.setattr(row_runs, "SHARING_FROM_ROWS", 10**9)
    in_one_run = play()
    monkeypatch.setattr(row_runs, "PARALLEL_FROM_ROWS", 1)
    monkeypatch.setattr(row_runs, "SHARING_FROM_ROWS", 1)
    monkeypatch.setattr(sfl_env.draws, "THREADED_FROM_DRAWS", 1)
    monkeypatch.setattr(row_runs, "SOLVER_THREADS", 3)  # three runs of rows, whatever the cores
    monkeypatch.setattr(row_runs, "_executor", None)
    for threaded, expected in zip(play(), in_one_run, strict=True):
        np.testing.assert_array_equal(threaded, expected)


@pytest.mark.parametrize("kwargs", [{}, {"allocation": "equal"}])
def test_a_step_in_which_every_episode_is_reset_prices_no_round_and_still_equals_the_single_envs(kwargs):
    # One-round episodes: every other step resets every episode, so the pricer sees a batch of no round.
    vector = gym.make_vec("SFLEnvAnalytic-v0", num_envs=2, max_rounds=1, **kwargs)
    singles = [gym.make("SFLEnvAnalytic-v0", max_rounds=1, **kwargs) for _ in range(2)]
    assert _play(vector, singles, seed=2, steps=6, rng=np.random.default_rng(1)) == ["max_rounds"] * 6
