"""The generators of new episodes, as a single env's reset makes them, for many episodes at once.

A single env's ``reset`` draws an episode seed from its env generator and makes the episode's two
generators from it: ``SeedSequence(seed).spawn(2)`` gives the channel's seed sequence (its generator
also draws the devices and their clocks) and the twin's, whose first 32-bit word seeds the twin's
generator. numpy spends tens of microseconds on each of these objects; a vectorised env resets
episodes every step. :func:`episode_words` computes the words PCG64 is seeded with by numpy's
``SeedSequence`` hash (compiled), for every episode at once; :func:`pcg64_states` turns them into
``bit_generator.state`` dicts (:func:`episode_states` does both), and :func:`seed_in_place` seeds
existing generators with them.

Setting ``bit_generator.state`` costs ~2 us a generator, more than the rest of a new episode's draws, so
:func:`seed_in_place` writes PCG64's state where numpy's ``bit_generator.ctypes.state_address`` points,
in compiled code, as numpy's own state setter (``pcg64_set_state``) writes it. That memory's layout is
numpy's, not a public interface: the first call checks it on a scratch generator, by reading back in
place what the state setter wrote and by writing a state in place that numpy's getter must read back.
Where the check fails (a numpy built without 128-bit integers lays the state out otherwise), the state
setter is used. ``tests/test_episode_seeds.py`` checks every path against numpy's objects.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Sequence

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

__all__ = ["episode_states", "episode_words", "pcg64_states", "seed_in_place", "state_addresses"]

_POOL_SIZE = 4
# numpy's SeedSequence constants, as unsigned 64-bit integers: products of two 32-bit words fit, nothing wraps.
_U = np.uint64
_INIT_A, _MULT_A, _INIT_B, _MULT_B = _U(0x43B0D7E5), _U(0x931E8875), _U(0x8B51F9DD), _U(0x58F38DED)
_MIX_MULT_L, _MIX_MULT_R = _U(0xCA01F9DD), _U(0x4973F715)
_XSHIFT, _MASK32, _TWO32, _ZERO = _U(16), _U(0xFFFFFFFF), _U(1 << 32), _U(0)
_PCG_MULTIPLIER = (2549297995355413924 << 64) + 4865540595714422341
_MASK128 = (1 << 128) - 1
_MULTIPLIER_HIGH, _MULTIPLIER_LOW = _U(_PCG_MULTIPLIER >> 64), _U(_PCG_MULTIPLIER & ((1 << 64) - 1))
_ONE, _SHIFT32, _SHIFT63 = _U(1), _U(32), _U(63)


@njit(cache=True)
def _hashmix(value, hash_const):  # (hashed value, next hash constant), all 32-bit words in uint64
    value = value ^ hash_const
    hash_const = (hash_const * _MULT_A) & _MASK32
    value = (value * hash_const) & _MASK32
    return value ^ (value >> _XSHIFT), hash_const


@njit(cache=True)
def _mix(x, y):
    result = (((_MIX_MULT_L * x) & _MASK32) + _TWO32 - ((_MIX_MULT_R * y) & _MASK32)) & _MASK32
    return result ^ (result >> _XSHIFT)


@njit(cache=True)
def _pool(entropy):
    """SeedSequence's pool of an assembled entropy of 32-bit words (uint64 array)."""
    pool = np.zeros(_POOL_SIZE, dtype=np.uint64)
    hash_const = _INIT_A
    for i in range(_POOL_SIZE):
        pool[i], hash_const = _hashmix(entropy[i] if i < entropy.size else _ZERO, hash_const)
    for i_src in range(_POOL_SIZE):
        for i_dst in range(_POOL_SIZE):
            if i_src != i_dst:
                hashed, hash_const = _hashmix(pool[i_src], hash_const)
                pool[i_dst] = _mix(pool[i_dst], hashed)
    for i_src in range(_POOL_SIZE, entropy.size):
        for i_dst in range(_POOL_SIZE):
            hashed, hash_const = _hashmix(entropy[i_src], hash_const)
            pool[i_dst] = _mix(pool[i_dst], hashed)
    return pool


@njit(cache=True)
def _state_words(pool, n_words):
    """SeedSequence.generate_state(n_words) of 32-bit words (uint64 array)."""
    out = np.zeros(n_words, dtype=np.uint64)
    hash_const = _INIT_B
    for i in range(n_words):
        value = pool[i % _POOL_SIZE] ^ hash_const
        hash_const = (hash_const * _MULT_B) & _MASK32
        value = (value * hash_const) & _MASK32
        out[i] = value ^ (value >> _XSHIFT)
    return out


@njit(cache=True)
def _episode_words(seeds):
    """For each seed below 2^32 (uint64): the 8 words of PCG64's seeding by ``SeedSequence(seed).spawn(2)[0]``,
    and the 8 words of its seeding by ``SeedSequence(w)``, w the first word of ``spawn(2)[1]``."""
    channel = np.zeros((seeds.size, 8), dtype=np.uint64)
    trainer = np.zeros((seeds.size, 8), dtype=np.uint64)
    entropy = np.zeros(_POOL_SIZE + 1, dtype=np.uint64)  # the seed, padded to the pool, then the spawn key
    for row in range(seeds.size):
        entropy[0] = seeds[row]
        entropy[_POOL_SIZE] = _ZERO
        channel[row] = _state_words(_pool(entropy), 8)
        entropy[_POOL_SIZE] = _U(1)
        first_word = _state_words(_pool(entropy), 1)
        trainer[row] = _state_words(_pool(first_word), 8)
    return channel, trainer


def pcg64_states(words: np.ndarray) -> list[dict]:
    """PCG64's state when seeded with ``generate_state(4, uint64)``'s 8 little-endian 32-bit ``words``, for each
    row of ``words`` (R, 8)."""
    words = words.astype(np.uint64)
    halves = (words[:, 1::2] << _U(32)) | words[:, 0::2]  # the four 64-bit words: seed high, low, sequence high, low
    states = []
    for seed_high, seed_low, sequence_high, sequence_low in halves.tolist():
        increment = (((sequence_high << 64) | sequence_low) << 1 | 1) & _MASK128
        state = (increment + ((seed_high << 64) | seed_low)) & _MASK128  # 0 * multiplier + increment, plus the seed
        state = (state * _PCG_MULTIPLIER + increment) & _MASK128
        states.append({"bit_generator": "PCG64", "state": {"state": state, "inc": increment},
                       "has_uint32": 0, "uinteger": 0})
    return states


def episode_words(seeds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The seeding words (R, 8) of the channel's and the twin's generators of episodes seeded ``seeds`` (each in
    [0, 2^32)), for :func:`pcg64_states` or :func:`seed_in_place`."""
    seeds = np.asarray(seeds)
    if seeds.size and not (seeds.min() >= 0 and seeds.max() < 2**32):
        raise ValueError(f"episode seeds must lie in [0, 2^32); got {seeds.min()} to {seeds.max()}")
    return _episode_words(seeds.astype(np.uint64))


def episode_states(seeds: np.ndarray) -> tuple[list[dict], list[dict]]:
    """The PCG64 states of the channel's and the twin's generators of episodes seeded ``seeds`` (each in
    [0, 2^32)): ``default_rng(SeedSequence(s).spawn(2)[0])`` and ``default_rng(int(spawn(2)[1].generate_state(1)[0]))``."""
    channel, trainer = episode_words(seeds)
    return pcg64_states(channel), pcg64_states(trainer)


def seed_in_place(generators: Sequence[np.random.Generator], words: np.ndarray,
                  addresses: np.ndarray | None = None) -> None:  # fmt: skip
    """Generator i goes on as PCG64 seeded with row i of ``words`` (R, 8): what ``generator.bit_generator.state =
    pcg64_states(words)[i]`` does, written in place where the layout check passed (module docstring).
    ``addresses``: the generators' :func:`state_addresses`, where the caller keeps them."""
    words = np.ascontiguousarray(words, dtype=np.uint64)
    if words.ndim != 2 or words.shape != (len(generators), 8):
        raise ValueError(f"words has shape {words.shape}; allowed: ({len(generators)}, 8), a row per generator")
    if addresses is None:
        addresses = state_addresses(generators)
    if addresses is not None:
        _write_states(addresses, words)
        return
    for generator, state in zip(generators, pcg64_states(words)):
        generator.bit_generator.state = state


def state_addresses(generators: Sequence[np.random.Generator]) -> np.ndarray | None:
    """Where each generator's PCG64 state lies, for :func:`seed_in_place` (they stay while the generator lives);
    None where the layout check failed. Raises for a generator that is not PCG64."""
    for i, generator in enumerate(generators):
        if type(generator.bit_generator) is not np.random.PCG64:
            raise ValueError(f"generator {i} has a {type(generator.bit_generator).__name__}; allowed: PCG64 only")
    if not _layout_checked():
        return None
    return np.array([g.bit_generator.ctypes.state_address for g in generators], dtype=np.uint64)


@intrinsic
def _words_at(typingctx, address):
    """The memory at an integer ``address`` as a pointer to unsigned 64-bit words."""
    if not isinstance(address, types.Integer):
        return None
    pointer = types.CPointer(types.uint64)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(pointer))

    return pointer(address), codegen


@njit(cache=True)
def _mul_high(a, b):
    """The upper 64 bits of the 128-bit product of two unsigned 64-bit words."""
    a_low, a_high, b_low, b_high = a & _MASK32, a >> _SHIFT32, b & _MASK32, b >> _SHIFT32
    low_low, low_high, high_low = a_low * b_low, a_low * b_high, a_high * b_low
    middle = (low_low >> _SHIFT32) + (low_high & _MASK32) + (high_low & _MASK32)
    return a_high * b_high + (low_high >> _SHIFT32) + (high_low >> _SHIFT32) + (middle >> _SHIFT32)


@njit(cache=True)
def _write_states(addresses, words):
    """pcg64_set_state at each ``addresses[i]`` (a pcg64_state: the pointer to its 128-bit state and increment,
    then has_uint32 and uinteger), seeded with ``words[i]`` as :func:`pcg64_states` seeds: 128-bit arithmetic
    mod 2^128 in (high, low) words of 64 bits."""
    for i in range(addresses.size):
        w = words[i]
        seed_high, seed_low = (w[1] << _SHIFT32) | w[0], (w[3] << _SHIFT32) | w[2]
        sequence_high, sequence_low = (w[5] << _SHIFT32) | w[4], (w[7] << _SHIFT32) | w[6]
        inc_high, inc_low = (sequence_high << _ONE) | (sequence_low >> _SHIFT63), (sequence_low << _ONE) | _ONE
        low = inc_low + seed_low  # the increment plus the seed
        high = inc_high + seed_high + (_ONE if low < inc_low else _ZERO)
        product_low = low * _MULTIPLIER_LOW  # times the multiplier, plus the increment
        product_high = _mul_high(low, _MULTIPLIER_LOW) + low * _MULTIPLIER_HIGH + high * _MULTIPLIER_LOW
        state_low = product_low + inc_low
        state_high = product_high + inc_high + (_ONE if state_low < product_low else _ZERO)
        header = _words_at(addresses[i])
        state = _words_at(header[0])
        state[0], state[1], state[2], state[3] = state_low, state_high, inc_low, inc_high
        header[1] = _ZERO  # has_uint32 and uinteger


@functools.cache
def _layout_checked() -> bool:
    """Whether a PCG64's state lies where :func:`_write_states` writes it: the state setter's words are read back
    in place, then a state written in place reads back through the getter."""
    bit_generator = np.random.PCG64(0)
    state, increment, held = (3 << 64) | 5, (7 << 64) | 9, 0x9E3779B9
    bit_generator.state = {"bit_generator": "PCG64", "state": {"state": state, "inc": increment},
                           "has_uint32": 1, "uinteger": held}
    address = bit_generator.ctypes.state_address
    header = (ctypes.c_uint64 * 2).from_address(address)
    if list((ctypes.c_uint64 * 4).from_address(header[0])) != [5, 3, 9, 7] or header[1] != 1 | held << 32:
        return False
    words = np.arange(1, 9, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15 >> 32)
    _write_states(np.array([address], dtype=np.uint64), words[None])
    return bit_generator.state == pcg64_states(words[None])[0]
