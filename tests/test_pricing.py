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
