"""The round pricer: the one code that prices a round for step, cut_preview, sample_round_costs and T_ref."""

import gymnasium as gym
import numpy as np
import pytest

import sfl_env  # noqa: F401  (registers the ids)
from solvers import equal_split


@pytest.mark.parametrize("env_id", ["SFLEnvAnalytic-v0", "SFLEnvBudgetAnalytic-v0"])
def test_step_is_the_pricer_on_the_state_before_the_round(env_id):
    env = gym.make(env_id).unwrapped
    env.reset(seed=4)
    for action in (0, 1, 1, 0):
        state = env._round_state()
        cost = env.pricer.round_cost(env.cuts[action], env._trainer.cut)
        priced = env.pricer.price(cost, state, action, False)
        _, reward, terminated, _, info = env.step(action)
        assert not terminated
        assert reward == priced.reward and info["latency_s"] == priced.latency.total_s
        assert info["reward_terms"] == priced.terms and info["leakage"] == priced.leakage
        np.testing.assert_array_equal(info["energy_j"], priced.energy_j)
        np.testing.assert_array_equal(info["allocation"]["bandwidth_share"], priced.allocation.bandwidth_share)


def test_pricing_is_pure_and_energy_is_optional():
    env = gym.make("SFLEnvAnalytic-v0").unwrapped
    env.reset(seed=0)
    state = env._round_state()
    cost = env.pricer.round_cost(env.cuts[2], env.cuts[0])
    first = env.pricer.price(cost, state, 2, True)
    again = env.pricer.price(cost, state, 2, True, energy=False)
    assert again.energy_j is None and first.energy_j.shape == (env.num_clients,)
    assert again.reward == first.reward and again.latency.phases == first.latency.phases
    assert first.terms["privacy_penalty"] == env.config.privacy_penalty > 0
    assert cost.migrated_bits_down > 0  # a move from cut 1 to cut 3 broadcasts the two blocks


def test_reference_latency_is_the_shallowest_cut_under_an_equal_split_in_the_nominal_cell():
    env = gym.make("SFLEnvAnalytic-v0").unwrapped
    pricer, nominal = env.pricer, env._nominal_state()
    cost = pricer.round_cost(env.cuts[0], env.cuts[0])
    from sfl_env.latency import allocation_problem

    problem = allocation_problem(cost, nominal.uplink_gain, nominal.client_cpu_hz, env.config.wireless,
                                 env.config.compute, client_cycles_per_flop=nominal.client_cycles_per_flop)
    assert pricer.reference_s == pricer.latency(cost, equal_split(problem), nominal).total_s
    optimal = pricer.latency(cost, pricer.allocate(cost, nominal), nominal).total_s
    assert optimal <= pricer.reference_s  # the solver never loses to the equal split it is measured in


def batch_of_rounds(env, rounds: int, seed: int):
    """``rounds`` rounds at random cuts after random cuts, each in a state drawn from its own channel."""
    from sfl_env.pricing import StateBatch

    rng = np.random.default_rng(seed)
    cut_index = rng.integers(0, len(env.cuts), rounds)
    costs = env.pricer.cost_batch(cut_index, rng.integers(-1, len(env.cuts), rounds))
    gains = env._channel.gain * rng.exponential(1.0, (rounds, env.num_clients))
    cpu_hz = np.broadcast_to(env._cpu.cpu_hz, (rounds, env.num_clients)).copy()
    per_flop = np.broadcast_to(env._cpu.cycles_per_flop, (rounds, env.num_clients)).copy()
    return costs, StateBatch(gains, cpu_hz, per_flop), cut_index


@pytest.mark.parametrize("scheme", ["sfl-ga", "sfl-v1", "sfl-v2", "psl", "fl"])
def test_the_one_pass_exact_pricing_equals_allocating_then_timing(scheme, monkeypatch):
    # price_batch's one compiled pass (problem, solve, latency, energy per row) against its general path:
    # allocate_batch, then latency_batch and energy_batch. Some rows are left unsolved by the pass, as a row the
    # compiled solver cannot take would be: they take the general path inside it.
    from sfl_env import pricing

    env = gym.make("SFLEnvAnalytic-v0", scheme=scheme).unwrapped
    env.reset(seed=1)
    costs, states, cut_index = batch_of_rounds(env, 40, seed=2)
    violated = np.zeros(40, dtype=bool)
    separate = env.pricer.allocate_batch(costs, states)
    expected = env.pricer.price_batch(costs, states, cut_index, violated, allocation=separate)
    real_pass = pricing.priced_rows

    def leaving_rows_unsolved(*args):
        real_pass(*args)
        solved = args[15]
        solved[::3] = False

    for one_pass in (real_pass, leaving_rows_unsolved):
        monkeypatch.setattr(pricing, "priced_rows", one_pass)
        priced = env.pricer.price_batch(costs, states, cut_index, violated)
        assert priced.allocation.status == separate.status and priced.allocation.method == "exact"
        np.testing.assert_array_equal(priced.allocation.fallback, separate.fallback)
        for field in ("bandwidth_share", "server_cpu_share", "latency_s"):
            np.testing.assert_array_equal(getattr(priced.allocation, field), getattr(separate, field))
        np.testing.assert_array_equal(priced.latency.total_s, expected.latency.total_s)
        for name, seconds in expected.latency.phases.items():
            np.testing.assert_array_equal(priced.latency.phases[name], seconds)
        for name, seconds in expected.latency.per_client_s.items():
            np.testing.assert_array_equal(priced.latency.per_client_s[name], seconds)
        np.testing.assert_array_equal(priced.energy_j, expected.energy_j)
        np.testing.assert_array_equal(priced.reward, expected.reward)
