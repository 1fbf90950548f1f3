"""The compiled per-episode draws give what numpy's calls give, value for value and state for state."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from sfl_env.draws import EpisodeGenerators


def _generators() -> list[np.random.Generator]:
    """Generators in the states a fill must handle: plain PCG64 ones; one just before a 64-bit output whose
    upper half Lemire's method rejects at high = 147 (found by scanning seed 0's stream); one holding a
    32-bit half output over from an odd draw; one of another bit generator."""
    plain = [np.random.default_rng(seed) for seed in range(20)]
    rejecting = np.random.default_rng(0)
    rejecting.bit_generator.advance(26_941_553)  # its 3rd 64-bit output from here holds the rejected value
    holding = np.random.default_rng(7)
    holding.integers(0, 147, 3)
    return [*plain, rejecting, holding, np.random.Generator(np.random.Philox(3))]


def test_the_rejecting_generator_does_reach_a_rejected_value():
    rng = _generators()[20]
    halves = rng.bit_generator.random_raw(5)
    scaled = np.concatenate([halves & np.uint64(0xFFFFFFFF), halves >> np.uint64(32)]) * np.uint64(147)
    assert ((scaled & np.uint64(0xFFFFFFFF)) < np.uint64((2**32 - 147) % 147)).any()


FILLS = {
    "standard_normal": (lambda g, out: g.standard_normal(out), lambda rng, shape: rng.standard_normal(shape)),
    "standard_exponential": (lambda g, out: g.standard_exponential(out),
                             lambda rng, shape: rng.standard_exponential(shape)),
    "random": (lambda g, out: g.random(out), lambda rng, shape: rng.random(shape)),
    "uniform": (lambda g, out: g.uniform(20.0, 150.0, out), lambda rng, shape: rng.uniform(20.0, 150.0, shape)),
    "normal": (lambda g, out: g.normal(1.5, 8.0, out), lambda rng, shape: rng.normal(1.5, 8.0, shape)),
    "exponential": (lambda g, out: g.exponential(2.5, out), lambda rng, shape: rng.exponential(2.5, shape)),
    "integers below 147": (lambda g, out: g.integers(147, out), lambda rng, shape: rng.integers(0, 147, shape)),
    "integers below 2**33 + 5": (lambda g, out: g.integers(2**33 + 5, out),
                                 lambda rng, shape: rng.integers(0, 2**33 + 5, shape)),
}


@pytest.mark.parametrize("shape", [(10,), (2, 5), (3,)])
@pytest.mark.parametrize("method", FILLS)
def test_a_fill_draws_what_numpy_draws_and_leaves_each_generator_in_numpys_state(method, shape):
    fill, numpy_draw = FILLS[method]
    generators, twins = EpisodeGenerators(_generators()), _generators()
    dtype = np.int64 if method.startswith("integers") else np.float64
    out = np.empty((len(twins), *shape), dtype=dtype)
    for _ in range(3):
        fill(generators, out)
        np.testing.assert_array_equal(out, np.stack([numpy_draw(rng, shape) for rng in twins]))
    assert [rng.random() for rng in generators] == [rng.random() for rng in twins]


def test_rows_draw_alone_and_the_others_are_left_as_they_are():
    generators, twins = EpisodeGenerators(_generators()), _generators()
    out = np.full((len(twins), 4), -1.0)
    rows = np.array([1, 20, 22])
    generators.standard_normal(out, rows)
    for row, rng in enumerate(twins):
        if row in rows:
            np.testing.assert_array_equal(out[row], rng.standard_normal(4))
        else:
            assert (out[row] == -1.0).all()
    assert [rng.random() for rng in generators] == [rng.random() for rng in twins]


def test_a_replaced_generator_draws_its_row_after_the_first_fill():
    generators = EpisodeGenerators([np.random.default_rng(0), np.random.default_rng(1)])
    out = np.empty((2, 3))
    generators.random(out)
    generators.replace([1], [np.random.default_rng(5)])
    generators.random(out)
    np.testing.assert_array_equal(out[1], np.random.default_rng(5).random(3))
    assert generators[1] is not None and len(generators) == 2


def test_a_seeded_row_goes_on_from_its_new_state_in_the_same_object():
    generators = EpisodeGenerators([np.random.default_rng(0), np.random.default_rng(1)])
    held, out = generators[0], np.empty((2, 3))
    generators.random(out)
    words = np.random.SeedSequence(9).generate_state(8)
    generators.seed([0], words[None])
    generators.random(out)
    assert generators[0] is held
    np.testing.assert_array_equal(out[0], np.random.Generator(np.random.PCG64(np.random.SeedSequence(9))).random(3))
    np.testing.assert_array_equal(out[1], np.random.default_rng(1).random(6)[3:])


def test_a_pickled_copy_draws_on_from_the_same_states():
    generators = EpisodeGenerators([np.random.default_rng(0), np.random.default_rng(1)])
    out, copied = np.empty((2, 3)), np.empty((2, 3))
    generators.standard_normal(out)
    copy = pickle.loads(pickle.dumps(generators))
    generators.standard_normal(out)
    copy.standard_normal(copied)
    np.testing.assert_array_equal(out, copied)


@pytest.mark.parametrize("out", [np.empty((3, 4), dtype=np.float32), np.empty((2, 4)), np.empty((4, 3)).T])
def test_an_unusable_out_is_refused_by_name(out):
    generators = EpisodeGenerators([np.random.default_rng(seed) for seed in range(3)])
    with pytest.raises(ValueError, match="out must be a C-contiguous float64 array of 3 rows"):
        generators.random(out)


@pytest.mark.parametrize("method", FILLS)
def test_one_episode_draws_by_numpy_what_the_compiled_loop_draws(method):
    fill, _ = FILLS[method]
    dtype = np.int64 if method.startswith("integers") else np.float64
    alone, among = EpisodeGenerators(_generators()[20:21]), EpisodeGenerators(_generators()[20:23])
    out_alone, out_among = np.empty((1, 2, 5), dtype=dtype), np.empty((3, 2, 5), dtype=dtype)
    for _ in range(3):
        fill(alone, out_alone)
        fill(among, out_among)
        np.testing.assert_array_equal(out_alone[0], out_among[0])
    assert alone[0].random() == among[0].random()


@pytest.fixture
def threaded_runs(monkeypatch):
    """Every fill of two rows or more split into three runs on threads, whatever the cores and the draws."""
    import sfl_env.draws
    from solvers import row_runs

    monkeypatch.setattr(sfl_env.draws, "THREADED_FROM_DRAWS", 1)
    monkeypatch.setattr(row_runs, "PARALLEL_FROM_ROWS", 2)
    monkeypatch.setattr(row_runs, "SOLVER_THREADS", 3)
    monkeypatch.setattr(row_runs, "_executor", None)


@pytest.mark.parametrize("method", FILLS)
def test_a_fill_split_over_threads_draws_what_numpy_draws(threaded_runs, method):
    fill, numpy_draw = FILLS[method]
    generators, twins = EpisodeGenerators(_generators()), _generators()
    out = np.empty((len(twins), 4), dtype=np.int64 if method.startswith("integers") else np.float64)
    for _ in range(3):
        fill(generators, out)
        np.testing.assert_array_equal(out, np.stack([numpy_draw(rng, 4) for rng in twins]))


def test_a_generator_serving_two_rows_keeps_its_fills_in_one_run(threaded_runs, monkeypatch):
    # Its two rows draw one after the other from one stream, in row order; runs on threads would race for it.
    import sfl_env.draws

    split = []
    monkeypatch.setattr(sfl_env.draws, "over_rows", lambda rows, run: split.append(rows) or run(0, rows))
    shared = np.random.default_rng(11)
    generators = EpisodeGenerators([shared, np.random.default_rng(12), shared, np.random.default_rng(13)])
    out = np.empty((4, 50))
    generators.standard_normal(out)
    twin = np.random.default_rng(11)
    np.testing.assert_array_equal(out[[0, 2]], np.stack([twin.standard_normal(50), twin.standard_normal(50)]))
    assert split == []
    generators.replace([2], [np.random.default_rng(14)])  # now every row has its own
    generators.standard_normal(out)
    assert split == [4]


def test_a_small_fill_stays_on_this_thread(monkeypatch):
    import sfl_env.draws

    split = []
    monkeypatch.setattr(sfl_env.draws, "over_rows", lambda rows, run: split.append(rows) or run(0, rows))
    generators = EpisodeGenerators([np.random.default_rng(seed) for seed in range(4)])
    generators.standard_normal(np.empty((4, sfl_env.draws.THREADED_FROM_DRAWS // 4 - 1)))
    assert split == []
    generators.standard_normal(np.empty((4, sfl_env.draws.THREADED_FROM_DRAWS // 4)))
    assert split == [4]
