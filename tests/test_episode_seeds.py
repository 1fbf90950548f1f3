"""Episode generator states computed at once equal those numpy's SeedSequence and PCG64 make one by one."""

from __future__ import annotations

import numpy as np
import pytest

from sfl_env.episode_seeds import episode_states


def test_the_states_are_numpys_for_every_seed_drawn_and_at_the_ends_of_the_range():
    seeds = np.concatenate([[0, 1, 2**31 - 2, 2**32 - 1], np.random.default_rng(0).integers(0, 2**31 - 1, 300)])
    channel, trainer = episode_states(seeds)
    for seed, channel_state, trainer_state in zip(seeds, channel, trainer):
        channel_seq, trainer_seq = np.random.SeedSequence(int(seed)).spawn(2)
        assert channel_state == np.random.default_rng(channel_seq).bit_generator.state
        assert trainer_state == np.random.default_rng(int(trainer_seq.generate_state(1)[0])).bit_generator.state


def test_a_generator_set_to_a_state_draws_what_numpys_draws():
    (channel_state,), _ = episode_states(np.array([12345]))
    rng = np.random.Generator(np.random.PCG64(0))
    rng.bit_generator.state = channel_state
    expected = np.random.default_rng(np.random.SeedSequence(12345).spawn(2)[0])
    np.testing.assert_array_equal(rng.standard_normal(20), expected.standard_normal(20))


@pytest.mark.parametrize("seeds", [[-1], [2**32]])
def test_seeds_outside_32_bits_are_refused(seeds):
    with pytest.raises(ValueError, match=r"episode seeds must lie in \[0, 2\^32\)"):
        episode_states(np.array(seeds))
