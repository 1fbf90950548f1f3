"""The memory estimate of real training: measured per block, extrapolated exactly over the context, and
a configuration that cannot fit refused by name before any work."""

import gymnasium as gym
import numpy as np
import pytest

import sfl_env  # noqa: F401  (registers the ids)
from sfl_env import memory
from sfl_env.config import EnvConfig
from sfl_env.errors import ConfigError

LM = EnvConfig.from_kwargs(preset="lm").system


def test_a_long_context_is_extrapolated_exactly_from_three_short_ones(monkeypatch):
    options = LM.model_options
    measured = memory._per_sample_bytes("gpt", (96,), 256, tuple(sorted(options.items())))  # 96 > 32: extrapolated
    monkeypatch.setattr(memory, "_PROBE_CONTEXTS", (96, 128, 160))  # now 96 is measured directly
    memory._per_sample_bytes.cache_clear()
    direct = memory._per_sample_bytes("gpt", (96,), 256, tuple(sorted(options.items())))
    memory._per_sample_bytes.cache_clear()
    np.testing.assert_allclose(measured, direct, rtol=1e-9)
    assert direct[1:-1].min() > 0  # every transformer block saves activations


def test_activations_grow_with_clients_batch_and_the_square_of_the_context():
    def estimate(context: int, clients: int = 8, batch: int = 8) -> memory.MemoryEstimate:
        return memory.estimate_training_memory("gpt", (context,), 256, LM.model_options, clients, batch, "adam")

    assert estimate(64, clients=16).activations == pytest.approx(2 * estimate(64).activations)
    assert estimate(64, batch=4).activations == pytest.approx(estimate(64).activations / 2)
    long, longer = estimate(2048).per_sample, estimate(4096).per_sample
    assert 3.5 < longer / long < 4.0  # attention scores: T^2 dominates at long contexts


def test_a_round_that_cannot_fit_is_refused_at_construction_with_the_estimate(monkeypatch):
    gym.make("SFLEnv-v0", preset="lm")  # the preset fits this machine (about 0.15 GB)
    monkeypatch.setattr(memory, "available_memory_bytes", lambda device="cpu": 0.1e9)
    with pytest.raises(ConfigError, match=r"python-stdlib/gpt, 8 clients x batch 8 of shape \(32,\): one round of "
                                          r"real training needs about 0.\d\d GB .* and cpu has 0.10 GB available; "
                                          r"allowed: a configuration that fits"):
        gym.make("SFLEnv-v0", preset="lm")
    gym.make("SFLEnvAnalytic-v0", preset="lm")  # the twin trains nothing: no check


def test_the_check_compares_with_the_memory_given():
    small = memory.MemoryEstimate(activations=1e9, parameters=1e8, per_sample=1e6, eval_per_sample=1e5)
    memory.check_training_memory(small, "setting", available=3e9)
    with pytest.raises(ConfigError, match=r"setting: one round of real training needs about 2.10 GB .* 2.00 GB"
                                          r" available"):
        memory.check_training_memory(small, "setting", available=3e9 - 1e9)


def test_evaluation_chunks_shrink_as_samples_grow():
    assert memory.eval_batch_size(memory.MemoryEstimate(0, 0, 0, eval_per_sample=1e3)) == memory.MAX_EVAL_BATCH
    assert memory.eval_batch_size(memory.MemoryEstimate(0, 0, 0, eval_per_sample=2 ** 27)) == 4
    assert memory.eval_batch_size(memory.MemoryEstimate(0, 0, 0, eval_per_sample=2 ** 40)) == 1
