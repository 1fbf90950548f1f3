"""evaluation.stats: IQM, stratified bootstrap intervals, probability of improvement and the normalised score."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import stats

from evaluation.stats import aggregate, bootstrap_ci, iqm, normalised_score, probability_of_improvement


@pytest.fixture(autouse=True)
def _no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def test_iqm_of_eight_values_is_the_mean_of_the_middle_four():
    # Sorted: 1 2 | 3 4 5 6 | 7 100. int(0.25 * 8) = 2 dropped from each end: (3+4+5+6)/4 = 4.5.
    assert iqm([100, 3, 7, 1, 6, 2, 5, 4]) == pytest.approx(4.5)


def test_iqm_drops_whole_values_only():
    # n = 10: 0.25 * 10 = 2.5, rounded down, so 2 go from each end and the middle 6 are averaged:
    # (4+8+16+32+64+128)/6 = 42. Weighting the boundary values by half (a "true" middle 50%) would
    # give (2+8+16+32+64+64)/5 = 37.2 instead.
    values = [512, 1, 256, 2, 128, 4, 64, 8, 32, 16]
    assert iqm(values) == pytest.approx(42.0)
    assert iqm(values) == pytest.approx(stats.trim_mean(values, 0.25))


def test_iqm_flattens_and_works_along_an_axis():
    grid = np.arange(16.0).reshape(4, 4)
    assert iqm(grid) == pytest.approx(7.5)
    np.testing.assert_allclose(iqm(grid, axis=-1), [1.5, 5.5, 9.5, 13.5])


def test_iqm_of_nothing_is_nan_and_nan_is_rejected():
    assert math.isnan(iqm([]))
    with pytest.raises(ValueError, match="NaN"):
        iqm([1.0, math.nan, 2.0])


def test_single_stratum_is_scipys_percentile_bootstrap():
    x = np.random.default_rng(3).normal(size=25)
    ours = bootstrap_ci([x], np.mean, n_resamples=400, seed=7)
    theirs = stats.bootstrap(
        (x,), np.mean, n_resamples=400, method="percentile", rng=np.random.default_rng(7)
    ).confidence_interval
    assert ours == pytest.approx((theirs.low, theirs.high))


def test_bootstrap_ci_of_the_mean_covers_the_true_mean_at_about_the_nominal_rate():
    data_rng = np.random.default_rng(2024)
    repetitions, covered = 300, 0
    for rep in range(repetitions):
        sample = data_rng.exponential(scale=1.0, size=40)  # true mean 1
        low, high = bootstrap_ci([sample], np.mean, n_resamples=500, seed=rep)
        covered += low <= 1.0 <= high
    assert 0.90 <= covered / repetitions <= 0.98


def test_each_stratum_keeps_its_size_in_every_resample():
    rng = np.random.default_rng(0)
    low_level, high_level = rng.uniform(0, 1, size=5), rng.uniform(1000, 1001, size=50)

    def count_high(x, axis=-1):
        return np.sum(x >= 1000, axis=axis)

    # Stratified: every replicate has exactly 50 high scores, so the interval collapses onto 50.
    assert bootstrap_ci([low_level, high_level], count_high, n_resamples=300) == (50.0, 50.0)
    # Pooled into one stratum the count varies from replicate to replicate.
    low, high = bootstrap_ci([np.concatenate([low_level, high_level])], count_high, n_resamples=300)
    assert low < 50 < high


def test_stratified_interval_is_narrower_than_pooled_when_strata_differ():
    rng = np.random.default_rng(1)
    strata = [rng.normal(0, 1, size=8), rng.normal(100, 1, size=40)]
    strat_low, strat_high = bootstrap_ci(strata, np.mean, n_resamples=500)
    pool_low, pool_high = bootstrap_ci([np.concatenate(strata)], np.mean, n_resamples=500)
    assert strat_low <= np.concatenate(strata).mean() <= strat_high
    assert (strat_high - strat_low) < 0.2 * (pool_high - pool_low)


def test_statistic_without_axis_gives_the_same_interval_as_its_vectorised_form():
    strata = [np.arange(10.0), np.arange(5.0) * 3]
    vectorised = bootstrap_ci(strata, np.median, n_resamples=200, seed=4)
    looped = bootstrap_ci(strata, lambda x: float(np.median(x)), n_resamples=200, seed=4)
    assert vectorised == pytest.approx(looped)


def test_bootstrap_ci_degenerate_inputs():
    assert bootstrap_ci([[3.5]]) == (3.5, 3.5)
    assert bootstrap_ci([[0.1] * 40]) == (pytest.approx(0.1), pytest.approx(0.1))
    assert bootstrap_ci([[2.0, 2.0], [7.0]], np.mean) == (pytest.approx(11 / 3), pytest.approx(11 / 3))
    assert all(math.isnan(v) for v in bootstrap_ci([]))
    assert all(math.isnan(v) for v in bootstrap_ci([[], []]))
    # Empty and constant strata alongside a varying one: the interval still brackets the mean.
    low, high = bootstrap_ci([[], [5.0], [1.0, 2.0, 3.0, 4.0]], np.mean, n_resamples=300)
    assert low < 3.0 < high


def test_bootstrap_ci_rejects_nan_and_a_bare_list_of_scores():
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_ci([[1.0, math.nan, 2.0]])
    with pytest.raises(ValueError, match="list of strata"):
        bootstrap_ci([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="list of strata"):
        bootstrap_ci(np.array([1.0, 2.0, 3.0]))


def test_aggregate_reports_point_estimates_intervals_and_count():
    rng = np.random.default_rng(5)
    strata = [rng.normal(0.8, 0.05, size=(3, 4)), rng.normal(0.6, 0.05, size=6)]
    result = aggregate(strata, n_resamples=300, seed=11)
    pooled = np.concatenate([s.ravel() for s in strata])
    assert set(result) == {"mean", "mean_low", "mean_high", "iqm", "iqm_low", "iqm_high", "n"}
    assert result["n"] == 18
    assert result["mean"] == pytest.approx(pooled.mean())
    assert result["iqm"] == pytest.approx(stats.trim_mean(pooled, 0.25))
    assert result["mean_low"] <= result["mean"] <= result["mean_high"]
    assert result["iqm_low"] <= result["iqm"] <= result["iqm_high"]
    assert aggregate(strata, n_resamples=300, seed=11) == result
    assert aggregate(strata, n_resamples=300, seed=12) != result


def test_aggregate_of_nothing():
    result = aggregate([[]])
    assert result["n"] == 0
    assert all(math.isnan(v) for k, v in result.items() if k != "n")


@pytest.mark.parametrize(
    ("x", "y", "expected"),
    [
        ([1, 2, 3], [4, 5], 0.0),
        ([4, 5], [1, 2, 3], 1.0),
        ([2, 2], [2, 2, 2], 0.5),
        ([1, 3], [2], 0.5),  # one win, one loss
        ([1, 2], [2, 3], 0.125),  # pairs: 1<2 1<3 2=2 2<3 -> (0 wins + 0.5 * 1 tie) / 4
    ],
)
def test_probability_of_improvement_hand_cases(x, y, expected):
    assert probability_of_improvement(x, y) == pytest.approx(expected)


def test_probability_of_improvement_matches_mann_whitney_and_is_antisymmetric():
    rng = np.random.default_rng(9)
    x, y = rng.integers(0, 5, size=13), rng.integers(0, 5, size=9)  # plenty of ties
    u = stats.mannwhitneyu(x, y).statistic
    assert probability_of_improvement(x, y) == pytest.approx(u / (13 * 9))
    assert probability_of_improvement(x, y) + probability_of_improvement(y, x) == pytest.approx(1.0)


def test_probability_of_improvement_degenerate_inputs():
    assert math.isnan(probability_of_improvement([], [1.0]))
    with pytest.raises(ValueError, match="NaN"):
        probability_of_improvement([math.nan], [1.0])


def test_normalised_score_puts_random_at_zero_and_oracle_at_one():
    assert normalised_score(-2.0, -2.0, 3.0) == 0.0
    assert normalised_score(3.0, -2.0, 3.0) == 1.0
    assert normalised_score(0.5, -2.0, 3.0) == pytest.approx(0.5)
    assert normalised_score(4.0, -2.0, 3.0) == pytest.approx(1.2)  # the per-round oracle can be beaten


@pytest.mark.parametrize("agent_return", [1.5, 0.0, 9.0])
def test_normalised_score_is_nan_when_oracle_and_random_tie(agent_return):
    # The tie rule: no span, no scale, no score, whatever the agent did (even when it ties too).
    assert math.isnan(normalised_score(agent_return, 1.5, 1.5))
    assert math.isnan(normalised_score(agent_return, 1.5, 1.5 + 1e-13))  # equal up to rounding
    assert math.isnan(normalised_score(agent_return, 0.0, 1e-13))
    assert math.isfinite(normalised_score(agent_return, 1.5, 1.5 + 1e-6))  # a real, if small, gap
    assert math.isnan(normalised_score(agent_return, math.nan, 1.5))
