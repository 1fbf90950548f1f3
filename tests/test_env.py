"""SFLEnv through the Gymnasium API: checkers, determinism, pickling, subprocesses, errors, SB3."""

import multiprocessing
import pickle
import tempfile
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import sfl_env
from sfl_env.errors import ActionError, ConfigError

ENV_IDS = [env_id for env_id, spec in gym.registry.items() if str(spec.entry_point).startswith("sfl_env")]
FAST = {"num_train": 400, "num_test": 200, "num_clients": 4, "local_iters": 2, "max_rounds": 4}

# Warnings allowed from the checkers; any other warning fails the test.
ALLOWED_WARNINGS = (
    # The rgb_array figure is drawn with matplotlib; the checker re-creates the env per render mode.
    "The environment is being initialised with render_mode",
)


def make(env_id="SFLEnvAnalytic-v0", **kwargs):
    return gym.make(env_id, **kwargs)


def test_both_ids_are_registered():
    assert {"SFLEnv-v0", "SFLEnvAnalytic-v0"} <= set(ENV_IDS)
    sfl_env.register_envs()  # idempotent


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_gymnasium_and_sb3_checkers_pass_without_unexpected_warnings(env_id):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        env = make(env_id, **(FAST if "Analytic" not in env_id else {}))
        gym_check_env(env.unwrapped, skip_render_check=True)
        sb3_check_env(env.unwrapped, warn=True)
        env.close()
    unexpected = [str(w.message) for w in caught if not any(a in str(w.message) for a in ALLOWED_WARNINGS)]
    assert not unexpected, unexpected


def rollout(env, seed, actions):
    obs, info = env.reset(seed=seed)
    out = [(obs, info)]
    for action in actions:
        out.append(env.step(action))
    return out


@pytest.mark.parametrize("env_id, kwargs", [("SFLEnvAnalytic-v0", {}), ("SFLEnv-v0", FAST)])
def test_same_seed_same_episode_different_seed_differs(env_id, kwargs):
    actions = [0, 2, 1, 2, 0, 1, 1, 2, 0, 0][: kwargs.get("max_rounds", 10)]
    a = rollout(make(env_id, **kwargs), 7, actions)
    b = rollout(make(env_id, **kwargs), 7, actions)
    c = rollout(make(env_id, **kwargs), 8, actions)
    for x, y in zip(a, b):
        for u, v in zip(x, y):
            assert gym.utils.env_checker.data_equivalence(u, v, exact=True)
    assert not np.array_equal(a[1][0], c[1][0])


def test_pickle_and_spec_json_round_trip():
    env = make(rho=0.3)
    env.reset(seed=0)
    env.step(1)
    clone = pickle.loads(pickle.dumps(env))
    assert clone.unwrapped.config == env.unwrapped.config
    spec = gym.spec("SFLEnvAnalytic-v0")
    assert gym.envs.registration.EnvSpec.from_json(spec.to_json()) == spec


def _make_in_child(queue):
    import gymnasium

    env = gymnasium.make("sfl_env:SFLEnvAnalytic-v0")
    obs, _ = env.reset(seed=0)
    queue.put(obs.shape)


@pytest.mark.slow
def test_creation_in_a_spawned_subprocess():
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_make_in_child, args=(queue,))
    child.start()
    shape = queue.get(timeout=120)
    child.join(timeout=60)
    assert child.exitcode == 0 and shape == make().observation_space.shape


@pytest.mark.slow
def test_subproc_vec_env_with_two_workers_steps():
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import SubprocVecEnv

    venv = make_vec_env("sfl_env:SFLEnvAnalytic-v0", n_envs=2, seed=0, vec_env_cls=SubprocVecEnv,
                        vec_env_kwargs={"start_method": "spawn"})
    venv.reset()
    obs, rewards, dones, infos = venv.step(np.array([0, 2]))
    assert obs.shape == (2, venv.observation_space.shape[0]) and [i["cut"] for i in infos] == [1, 3]
    venv.close()


def test_truncates_at_max_rounds():
    env = make(max_rounds=3, target_accuracy=1.0)
    env.reset(seed=0)
    flags = [env.step(0)[2:4] for _ in range(3)]
    assert flags == [(False, False), (False, False), (False, True)]


def test_terminates_at_the_target_accuracy():
    env = make(target_accuracy=0.3, max_rounds=200)
    env.reset(seed=0)
    for _ in range(200):
        _, _, terminated, truncated, info = env.step(0)
        if terminated:
            break
    assert terminated and not truncated and info["test_accuracy"] >= 0.3


def test_info_holds_the_documented_keys_and_a_consistent_ledger():
    env = make()
    env.reset(seed=0)
    _, reward, _, _, info = env.step(1)
    assert set(info) == {"cut", "latency_s", "latency", "reference_latency_s", "bits_up", "bits_down", "train_loss",
                         "test_accuracy", "test_loss", "allocation", "reward_terms", "action_mask", "solver", "privacy",
                         "diverged", "energy_j", "leakage", "elapsed_s", "budget_left", "episode_end", "terminal_cost"}
    assert info["cut"] == 2 and info["latency_s"] == pytest.approx(sum(info["latency"].values()))
    assert 0 < info["test_loss"] < 10  # a classifier: no test_perplexity (language models add it)
    assert info["elapsed_s"] == info["latency_s"] and info["episode_end"] is None and info["terminal_cost"] == 0
    assert info["energy_j"].shape == (10,) and (info["energy_j"] > 0).all() and 0 < info["leakage"] < 1
    terms = info["reward_terms"]
    assert set(terms) == {"convergence", "latency", "privacy_penalty"}
    assert terms["latency"] == info["latency_s"] / info["reference_latency_s"]
    assert reward == -terms["latency"]  # time_to_accuracy, the default
    assert info["allocation"]["bandwidth_share"].sum() <= 1 + 1e-9
    paper = make(reward="paper")
    paper.reset(seed=0)
    _, reward, _, _, info = paper.step(1)
    terms = info["reward_terms"]
    assert reward == pytest.approx(-(0.5 * terms["convergence"] + 0.5 * terms["latency"]))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"rho": 2}, r"rho=2 is out of range; allowed: \[0.0, 1.0\]"),
        ({"solver": "gurobi"}, "solver='gurobi' is unknown; allowed: 'exact', 'cvxpy'"),
        ({"num_clinets": 3}, "unknown option 'num_clinets' \\(did you mean 'num_clients'\\?\\)"),
        ({"reward": "accuracy"}, "reward='accuracy' is unknown"),
        ({"bandwidth_mhz": -1}, "bandwidth_mhz=-1 is out of range"),
        ({"privacy_rule": "leakage"}, "privacy_rule='leakage' needs max_leakage"),
        ({"privacy_rule": "leakage", "max_leakage": 0.5}, "privacy_rule='leakage' measures real smashed data"),
        # the analytic twin exists only where it was calibrated: refused at construction, not at reset
        ({"model": "mlp"}, "no calibration for dataset='shapes', model='mlp'"),
        ({"convergence": "calibrated", "model": "lenet5"}, "no calibration for dataset='shapes', model='lenet5'"),
        ({"lr": 1e-6}, r"not calibrated for lr=1e-06 \(calibrated for sfl-ga: lr="),
        ({"partition": "iid"}, r"not calibrated for partition='iid' \(calibrated: partition='dirichlet'\)"),
        ({"local_iters": 1}, r"not calibrated for local_iters=1"),
        ({"gradient_aggregation": 0.0}, r"not calibrated for gradient_aggregation=0.0"),
    ],
)
def test_bad_keywords_name_the_option(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        make(**kwargs)


@pytest.mark.parametrize("action", [-1, 5, 1.5, "1"])
def test_bad_actions_are_refused_clearly(action):
    env = make()
    env.reset(seed=0)
    with pytest.raises(ActionError, match=r"is invalid; allowed: an integer in 0..4"):
        env.step(action)


def test_privacy_mask_refuses_or_penalises():
    env = make(min_client_blocks=2)
    _, info = env.reset(seed=0)
    assert info["action_mask"].tolist() == [False, True, True, True, True] == env.unwrapped.action_masks().tolist()
    with pytest.raises(ActionError, match=r"violates the privacy constraint.*allowed actions: \[1, 2, 3, 4\]"):
        env.step(0)
    env = make(min_client_blocks=2, privacy="penalty", privacy_penalty=0.5)
    env.reset(seed=0)
    _, reward, _, _, info = env.step(0)
    assert info["cut"] == 2 and info["privacy"]["violated"] and info["reward_terms"]["privacy_penalty"] == 0.5


def test_a_failed_solve_falls_back_and_says_so(monkeypatch):
    from sfl_env import pricing
    from solvers import batch, exact

    def unsolved(*args):  # the compiled solver solves no row: each goes to the one-problem solver
        pass

    def broken(problem):
        raise exact.ExactSolverError("no convergence")

    monkeypatch.setattr(pricing, "priced_rows", unsolved)  # the pricer's one compiled pass solves no row either
    monkeypatch.setattr(batch, "solve_rows", unsolved)
    monkeypatch.setattr(exact, "solve_exact", broken)
    env = make()
    env.reset(seed=0)
    _, reward, _, _, info = env.step(0)
    assert info["solver"]["fallback"] and info["solver"]["status"].startswith("solver_error") and np.isfinite(reward)
    np.testing.assert_allclose(info["allocation"]["bandwidth_share"], 1.0 / env.unwrapped.num_clients)


def test_a_diverged_round_ends_the_episode():
    env = make("SFLEnv-v0", **(FAST | {"lr": 1e6}))
    env.reset(seed=0)
    for _ in range(FAST["max_rounds"]):
        _, reward, terminated, truncated, info = env.step(0)
        if info["diverged"]:
            break
    assert info["diverged"] and terminated and not truncated and np.isfinite(reward)


def test_renders_the_round_that_was_played():
    env = make(render_mode="ansi", scheme="sfl-v1")
    env.reset(seed=0)
    gain = env.unwrapped._channel.gain.copy()  # the channel the round is played on
    _, _, _, _, info = env.step(1)
    lines = env.render().splitlines()
    assert lines[0].startswith("round 1  scheme sfl-v1  cut 2  reward")
    table = [line.split() for line in lines[4:]]
    assert [float(row[1]) for row in table] == pytest.approx(10 * np.log10(gain), abs=0.051)
    assert not np.allclose(gain, env.unwrapped._channel.gain, rtol=1e-3, atol=0)  # the next round is drawn
    shares = info["allocation"]["bandwidth_share"]
    assert [float(row[3]) for row in table] == pytest.approx(100 * shares, abs=0.051)
    env = make(render_mode="rgb_array")
    env.reset(seed=0)
    env.step(2)
    image = env.render()
    assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
    env.close()
    env.close()


def sb3_temp_folders() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("SB3-*")}


def quiet(model):
    """An SB3 model whose logger writes nowhere: SB3's default one makes an SB3-<time> folder in the
    system temp folder at every learn()."""
    from stable_baselines3.common.logger import Logger

    model.set_logger(Logger(folder=None, output_formats=[]))
    return model


@pytest.mark.parametrize("algo", ["DQN", "PPO", "A2C"])
def test_sb3_agents_learn_a_few_hundred_steps(algo):
    import stable_baselines3

    before = sb3_temp_folders()
    env = make()
    kwargs = {"learning_starts": 50} if algo == "DQN" else {"n_steps": 64} if algo == "PPO" else {}
    model = quiet(getattr(stable_baselines3, algo)("MlpPolicy", env, seed=0, device="cpu", **kwargs))
    model.learn(total_timesteps=300)
    action, _ = model.predict(env.reset(seed=1)[0], deterministic=True)
    assert env.action_space.contains(int(action))
    assert sb3_temp_folders() == before  # the test suite leaves nothing in the system temp folder


def test_maskable_ppo_never_picks_a_masked_cut():
    from sb3_contrib import MaskablePPO

    env = make(min_client_blocks=2)
    model = quiet(MaskablePPO("MlpPolicy", env, n_steps=64, seed=0, device="cpu"))
    model.learn(total_timesteps=128)
    obs, _ = env.reset(seed=3)
    for _ in range(20):
        action, _ = model.predict(obs, action_masks=env.unwrapped.action_masks())
        assert int(action) != 0
        obs, *_ = env.step(int(action))


def test_measured_leakage_decides_the_mask():
    env = make("SFLEnv-v0", preset="digits", **(FAST | {"privacy_rule": "leakage", "max_leakage": 0.95}))
    _, info = env.reset(seed=0)
    assert info["action_mask"].tolist() == [False, False, True], "shallow cuts leak more than the threshold"
    with pytest.raises(ConfigError, match=r"no cut of model 'cnn' is allowed by rule='leakage'.*measured leakage"):
        make("SFLEnv-v0", preset="digits", **(FAST | {"privacy_rule": "leakage", "max_leakage": 0.1})).reset(seed=0)


@pytest.mark.parametrize("kwargs", [{}, {"scheme": "psl"}, {"scheme": "fl"}, {"reward": "time_to_accuracy"},
                                    {"privacy": "penalty", "min_client_blocks": 2}, {"allocation": "equal"}])
def test_cut_preview_prices_exactly_what_step_returns_and_changes_nothing(kwargs):
    previewed, plain = make(**kwargs), make(**kwargs)
    previewed.reset(seed=4)
    plain.reset(seed=4)
    rng = np.random.default_rng(0)
    for _ in range(25):
        preview = previewed.unwrapped.cut_preview()
        assert np.isfinite(preview["reward"]).all() and (preview["latency_s"] > 0).all()
        action = int(rng.integers(3))
        a, b = previewed.step(action), plain.step(action)
        assert a[1] == preview["reward"][action] - a[4]["terminal_cost"]  # the card: less a failure's cost
        assert a[4]["latency_s"] == preview["latency_s"][action]
        np.testing.assert_array_equal(a[0], b[0])
        assert a[1:4] == b[1:4]
        if a[2] or a[3]:
            break


def test_cut_preview_marks_refused_actions_and_needs_a_reset():
    env = make(min_client_blocks=3)
    with pytest.raises(RuntimeError, match="reset"):
        env.unwrapped.cut_preview()
    env.reset(seed=0)
    preview = env.unwrapped.cut_preview()
    assert preview["allowed"].tolist() == [False, False, True, True, True]
    assert np.isnan(preview["reward"][:2]).all() and np.isfinite(preview["reward"][2])


def test_the_reference_latency_is_one_constant_of_the_config_as_the_card_says():
    # it used to be drawn per episode, which let a failure in a slow cell return more than a success in a
    # fast one once devices and shadowing vary between episodes
    assert "the same in every episode" in sfl_env.env.__doc__
    env = make(max_rounds=20)
    references = set()
    for seed in (0, 1):
        env.reset(seed=seed)
        references |= {env.step(i % 3)[4]["reference_latency_s"] for i in range(20)}
    assert len(references) == 1
    assert make(max_rounds=20, bandwidth_mhz=5.0).unwrapped.pricer.reference_s > references.pop()


def test_a_bool_is_not_an_action():
    # True used to be taken as action 1
    env = make(preset="digits")
    env.reset(seed=0)
    for action in (True, np.bool_(False)):
        with pytest.raises(ActionError, match="is invalid; allowed: an integer in 0..2"):
            env.step(action)
    env.step(np.int64(1))  # numpy integers are actions


@pytest.mark.parametrize("kwargs, message", [
    # a batch of 10**7 images was allocated at the first step; more clients than samples failed at reset
    ({"batch_size": 10**7}, "batch_size=10000000 is larger than the 1438 training samples of 'digits'; "
                            "allowed: 1 to 1438"),
    ({"num_clients": 5000}, "num_clients=5000 is larger than the 1438 training samples of 'digits'"),
])
def test_batches_and_clients_must_fit_the_training_set_at_construction(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        gym.make("SFLEnv-v0", preset="digits", **kwargs)


def test_fl_prices_no_migration_whatever_the_cut():
    # The env mapped the cut to the whole model for FL but not the previous cut, so FL's reference
    # latency and every sampled round cost priced a migration FL never makes.
    from sfl_env.ledger import round_cost

    env = make(scheme="fl").unwrapped
    env.reset(seed=0)
    samples = env.sample_round_costs(samples=4)["latency_s"]
    np.testing.assert_array_equal(samples, np.repeat(samples[:, :1], samples.shape[1], axis=1))
    blocks = env.profile.num_blocks
    for previous in (None, *env.cuts):
        cost = env.pricer.round_cost(env.cuts[0], previous)
        assert cost.migrated_bits_down == cost.migrated_bits_up == 0, previous
    no_move = round_cost(env.profile, env.scheme, blocks, blocks, num_clients=env.num_clients,
                         local_iters=env.config.system.local_iters, batch_size=env.config.system.batch_size)
    assert env.pricer.round_cost(env.cuts[0], env.cuts[0]) == no_move
