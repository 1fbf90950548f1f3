"""Episode generator states computed at once equal those numpy's SeedSequence and PCG64 make one by one."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from sfl_env import episode_seeds
from sfl_env.episode_seeds import episode_states, episode_words, pcg64_states, seed_in_place


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


def _generators_in_every_state() -> list[np.random.Generator]:
    """Fresh, advanced, and holding the other half of a 64-bit output (has_uint32 set)."""
    holding = np.random.default_rng(3)
    holding.integers(0, 7, 1, dtype=np.uint32)
    advanced = np.random.default_rng(4)
    advanced.standard_normal(1001)
    return [np.random.default_rng(1), holding, advanced, np.random.Generator(np.random.PCG64(2**63 + 1))]


@pytest.mark.parametrize("in_place", [True, False])
def test_seeding_in_place_sets_the_state_numpys_setter_sets(in_place, monkeypatch):
    if in_place and not episode_seeds._layout_checked():
        pytest.skip("this numpy build keeps PCG64's state in another layout: the state setter is used")
    monkeypatch.setattr(episode_seeds, "_layout_checked", lambda: in_place)
    seeds = np.array([0, 1, 2**32 - 1, 987654321])
    words, _ = episode_words(seeds)
    generators = _generators_in_every_state()
    held = [g.bit_generator for g in generators]
    seed_in_place(generators, words)
    assert [g.bit_generator.state for g in generators] == pcg64_states(words)
    assert [g.bit_generator for g in generators] == held  # the same objects, seeded anew
    expected = [np.random.default_rng(np.random.SeedSequence(int(s)).spawn(2)[0]) for s in seeds]
    for generator, twin in zip(generators, expected):
        assert generator.integers(0, 7, 3, dtype=np.uint32).tolist() == twin.integers(0, 7, 3, dtype=np.uint32).tolist()
        np.testing.assert_array_equal(generator.standard_normal(5), twin.standard_normal(5))


def test_seeding_in_place_refuses_what_it_cannot_seed():
    words, _ = episode_words(np.array([5, 6]))
    with pytest.raises(ValueError, match="generator 1 has a Philox; allowed: PCG64 only"):
        seed_in_place([np.random.default_rng(0), np.random.Generator(np.random.Philox(0))], words)
    with pytest.raises(ValueError, match=r"words has shape \(2, 8\); allowed: \(3, 8\)"):
        seed_in_place([np.random.default_rng(seed) for seed in range(3)], words)


@pytest.mark.skipif(sys.platform == "win32" or sys.byteorder != "little",
                    reason="numpy built by MSVC, or on a big-endian machine, lays its 128-bit state out otherwise")
def test_the_layout_check_passes_where_numpy_has_128_bit_integers():
    # It also guards the writer: a state written in place must read back through numpy's getter.
    assert episode_seeds._layout_checked()
