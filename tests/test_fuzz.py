"""Property-based fuzzing of every gym.make keyword: a clear error at construction, or an env that works.

For every keyword of both env ids, hypothesis draws finite, infinite, NaN, denormal, huge, negative and
wrongly typed values (and tuples of them for the range options). Each must give either a
``ConfigError`` (a ``DatasetError`` for the data options) whose message names the keyword, raised by
``gym.make``, or an env whose ``reset`` and 5 ``step``s return finite observations and rewards. Examples are derandomised, so a run is repeatable.
"""

from __future__ import annotations

import math
import signal

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import sfl_env  # noqa: F401  (registers the ids)
from sfl_env.config import EnvConfig
from sfl_env.errors import UserError

# render_mode is left out: gym.make reads it before the env exists (a non-string crashes inside
# Gymnasium itself); the env's own check of it is tested in test_env.py
KEYWORDS = sorted(EnvConfig.from_kwargs().to_kwargs()) + ["preset"]
# The base of every example: the digits preset (its twin is calibrated); on the real env also small, so
# that its 5 steps take well under a second.
BASE = {"SFLEnvAnalytic-v0": {"preset": "digits", "max_rounds": 20},
        "SFLEnv-v0": {"preset": "digits", "num_train": 300, "num_test": 100, "num_clients": 3, "local_iters": 1,
                      "max_rounds": 20}}
SECONDS_PER_EXAMPLE = 30

NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.inf, -math.inf, math.nan, 5e-324, -5e-324, 1e-310, 1e308, -1e308, 0.0, -0.0, -1.0, 0.5]),
    st.sampled_from([0, 1, 2, 3, -1, 10**9, -(10**9), 2**63, 10**30]),
    st.integers(-5, 40),
    st.sampled_from([np.int64(2), np.float32(0.5), np.float64("nan"), np.bool_(True)]),
)
WRONG_TYPES = st.one_of(
    st.text(max_size=6), st.none(), st.booleans(), st.lists(st.integers(-2, 5), max_size=4),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=1), st.just(object()), st.just(b"bytes"),
)
# every keyword also gets these, whatever hypothesis draws
EXTREMES = (math.inf, math.nan, 5e-324, -1, 10**9, 1e308, "x", None, True, (0.0, math.inf))
VALUES = st.one_of(NUMBERS, WRONG_TYPES, st.tuples(NUMBERS, NUMBERS), st.tuples(NUMBERS, NUMBERS, NUMBERS))


class Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise Timeout


def check_keyword(env_id: str, key: str, value: object) -> None:
    """The property: a ConfigError naming ``key`` from gym.make, or reset and 5 finite steps."""
    kwargs = BASE[env_id] | {key: value}
    try:
        env = gym.make(env_id, **kwargs)
    except UserError as error:  # a ConfigError, or a DatasetError for the data options
        assert key in str(error), f"{key}={value!r}: the error does not name the option: {error}"
        return
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(SECONDS_PER_EXAMPLE)
    try:
        obs, _ = env.reset(seed=0)
        assert np.isfinite(obs).all(), f"{key}={value!r}: reset observation {obs}"
        for _ in range(5):
            mask = env.unwrapped.action_masks()
            obs, reward, terminated, truncated, _ = env.step(int(np.flatnonzero(mask)[0]))
            assert np.isfinite(obs).all() and math.isfinite(reward), f"{key}={value!r}: {obs}, {reward}"
            if terminated or truncated:
                obs, _ = env.reset()
    except Timeout:
        pytest.fail(f"{key}={value!r} was accepted but 5 steps took over {SECONDS_PER_EXAMPLE} s")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        env.close()


def fuzzed(max_examples: int):
    """hypothesis' values for ``value``, after the :data:`EXTREMES`, derandomised."""
    def decorate(test):
        for value in EXTREMES:
            test = example(value=value)(test)
        return settings(max_examples=max_examples, derandomize=True, database=None, deadline=None,
                        suppress_health_check=[HealthCheck.too_slow])(given(value=VALUES)(test))
    return decorate


@pytest.mark.parametrize("key", KEYWORDS)
@fuzzed(max_examples=8)
def test_analytic_env_keyword_fuzz(key, value):
    check_keyword("SFLEnvAnalytic-v0", key, value)


@pytest.mark.parametrize("key", KEYWORDS)
@fuzzed(max_examples=3)
def test_real_env_keyword_fuzz(key, value):
    check_keyword("SFLEnv-v0", key, value)
