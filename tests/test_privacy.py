"""Privacy constraint: distance correlation, leakage per cut and the masks of allowed cuts."""

import numpy as np
import pytest
import torch

from sfl_env.models import build_model
from sfl_env.privacy import PRIVACY_RULES, allowed_cuts, distance_correlation, leakage_per_cut
from sfl_env.validation import ConfigError

SHAPE = (1, 8, 8)


def probe_batch(n=64, seed=0):
    return torch.randn(n, *SHAPE, generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def model():
    return build_model("mlp", SHAPE, 10, seed=0)


def test_identical_and_affinely_related_batches_have_distance_correlation_one():
    x = np.random.default_rng(0).normal(size=(100, 3, 4))
    assert distance_correlation(x, x) == pytest.approx(1.0, abs=1e-12)
    assert distance_correlation(x, 3 * x + 1) == pytest.approx(1.0, abs=1e-12)
    assert distance_correlation(torch.from_numpy(x).float(), torch.from_numpy(3 * x + 1)) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("features", [2, 64, 1024])
def test_independent_batches_have_small_distance_correlation_at_any_width(features):
    rng = np.random.default_rng(0)
    x, z = rng.normal(size=(500, features)), rng.normal(size=(500, features))
    assert distance_correlation(x, z) < 0.1
    if features >= 64:  # the uncorrected estimator is useless here: wide smashed data would all look leaky
        assert distance_correlation(x, z, bias_corrected=False) > 0.5


def test_nonlinear_dependence_is_detected():
    x = np.random.default_rng(0).uniform(-1, 1, size=(300, 1))
    assert np.corrcoef(x[:, 0], x[:, 0] ** 2)[0, 1] == pytest.approx(0.0, abs=0.1)
    assert distance_correlation(x, x**2) > 0.4


def test_distance_correlation_is_symmetric():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(80, 5))
    z = np.tanh(x[:, :2]) + 0.5 * rng.normal(size=(80, 2))
    assert distance_correlation(x, z) == pytest.approx(distance_correlation(z, x), rel=1e-12)
    assert 0.2 < distance_correlation(x, z) < 0.95


def test_constant_batch_has_zero_distance_correlation():
    x = np.random.default_rng(0).normal(size=(20, 3))
    assert distance_correlation(x, np.ones((20, 4))) == 0.0


def test_distance_correlation_rejects_unpaired_batches():
    with pytest.raises(ValueError, match="10 samples and z has 9"):
        distance_correlation(np.zeros((10, 2)), np.zeros((9, 2)))
    with pytest.raises(ValueError, match="at least 4 samples"):
        distance_correlation(np.zeros((3, 2)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="at least 2 samples"):
        distance_correlation(np.zeros((1, 2)), np.zeros((1, 2)), bias_corrected=False)


@pytest.mark.parametrize("training", [True, False])
def test_leakage_per_cut_one_value_per_cut_and_modes_restored(model, training):
    model.train(training)
    model.blocks[1].train(not training)  # a mixed state must survive too
    before = [m.training for m in model.modules()]
    leakage = leakage_per_cut(model, probe_batch())
    assert leakage.shape == (len(model.cuts),)
    assert np.all((leakage >= 0) & (leakage <= 1))
    assert [m.training for m in model.modules()] == before
    assert all(p.grad is None for p in model.parameters())


def test_leakage_per_cut_matches_the_smashed_data_of_each_cut(model):
    probe = probe_batch()
    with torch.no_grad():
        expected = [distance_correlation(probe, model.forward_range(probe, 0, cut)) for cut in model.cuts]
    assert leakage_per_cut(model, probe) == pytest.approx(expected, rel=1e-12)


def test_leakage_uses_eval_mode():
    cnn = build_model("vgg11", (3, 8, 8), 10, width=0.125, seed=0).train()  # BatchNorm: train != eval
    probe = torch.randn(16, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        eval_smashed = cnn.eval().forward_range(probe, 0, 1)
    cnn.train()
    assert leakage_per_cut(cnn, probe)[0] == pytest.approx(distance_correlation(probe, eval_smashed), rel=1e-12)
    assert cnn.training


def test_min_blocks_mask(model):
    assert model.cuts == (1, 2, 3)
    assert allowed_cuts(model).tolist() == [True, True, True]
    assert allowed_cuts(model, "min_blocks", min_client_blocks=2).tolist() == [False, True, True]
    assert allowed_cuts(model, min_client_blocks=3).tolist() == [False, False, True]


def test_leakage_mask_respects_the_threshold(model):
    probe = probe_batch()
    leakage = leakage_per_cut(model, probe)
    order = np.argsort(leakage)
    low, second = leakage[order[0]], leakage[order[1]]
    assert low < second
    mask = allowed_cuts(model, "leakage", max_leakage=float((low + second) / 2), probe=probe)
    assert np.flatnonzero(mask).tolist() == [int(order[0])]
    everything = allowed_cuts(model, "leakage", max_leakage=1.0, probe=probe)
    assert everything.all()


def test_leakage_rule_needs_probe_and_threshold(model):
    with pytest.raises(ConfigError, match="probe"):
        allowed_cuts(model, "leakage", max_leakage=0.5)
    with pytest.raises(ConfigError, match="max_leakage"):
        allowed_cuts(model, "leakage", probe=probe_batch())
    with pytest.raises(ConfigError, match=r"max_leakage=1.5 is out of range; allowed: \[0.0, 1.0\]"):
        allowed_cuts(model, "leakage", max_leakage=1.5, probe=probe_batch())


def test_no_allowed_cut_names_the_rule_and_the_measured_values(model):
    probe = probe_batch()
    leakage = leakage_per_cut(model, probe)
    with pytest.raises(ConfigError) as error:
        allowed_cuts(model, "leakage", max_leakage=float(leakage.min()) / 2, probe=probe)
    message = str(error.value)
    assert "no cut" in message and "rule='leakage'" in message and "max_leakage=" in message
    assert all(f"cut {cut}: {value:.4f}" in message for cut, value in zip(model.cuts, leakage))


@pytest.mark.parametrize("bad", [0, 4, 2.0, True])
def test_bad_min_client_blocks_names_the_model_range(model, bad):
    with pytest.raises(ConfigError, match=r"min_client_blocks=.*'mlp' has 4 blocks, so cuts 1\.\.3"):
        allowed_cuts(model, min_client_blocks=bad)


def test_unknown_rule(model):
    assert PRIVACY_RULES == ("min_blocks", "leakage")
    with pytest.raises(ConfigError, match="rule='entropy' is unknown"):
        allowed_cuts(model, "entropy")
