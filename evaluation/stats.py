"""Aggregate statistics for comparing agents over seeds and episodes, following rliable, and the
normalised score.

A handful of runs cannot support a bare mean, so ``evaluate.py`` reports the mean and the
interquartile mean (IQM), each with a stratified bootstrap percentile confidence interval, and the
probability that one agent improves on another (Agarwal et al., "Deep Reinforcement Learning at the
Edge of the Statistical Precipice", NeurIPS 2021).

Scores come as strata: one array per task (environment configuration), or a single stratum when
there is one configuration. Each stratum is resampled on its own, with replacement, keeping its size,
and the statistic is computed on the concatenation of the resampled strata. Scores must be finite:
callers drop NaN (for instance "never reached the target") and say how many they dropped.

:func:`paired_difference` compares two agents seed by seed, the comparison that paired seeds allow:
the mean difference, its bootstrap interval and the probability of improvement.
:func:`normalised_score` puts a return on the scale random = 0, reference (the planner) = 1;
``train_agent.py`` (its summary) and the leaderboard both use it, so the score and its tie rule are the
same everywhere.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

IQM_TRIM = 0.25  # cut from each end: the middle 50% is kept (rounded as scipy.stats.trim_mean does)
# The oracle and random returns tie when math.isclose says so with these tolerances (see normalised_score).
SCORE_TIE_REL_TOL = 1e-9
SCORE_TIE_ABS_TOL = 1e-12


def _scipy_stats() -> ModuleType:
    """``scipy.stats``, imported on first use: it costs 0.4 s, and every train_agent.py process imports
    this module while few of them need it."""
    from scipy import stats

    return stats


@functools.cache
def _rng_argument() -> str:
    """scipy >= 1.15 takes ``rng``; older releases (pyproject allows >= 1.11) take ``random_state``."""
    return "rng" if "rng" in inspect.signature(_scipy_stats().bootstrap).parameters else "random_state"

Statistic = Callable[..., Any]


def iqm(values: ArrayLike, axis: int | None = None) -> float | np.ndarray:
    """Interquartile mean: ``scipy.stats.trim_mean(values, 0.25)``, rliable's convention.

    ``int(0.25 * n)`` values are dropped from each end, so with ``n = 10`` two go from each end and
    the mean is over the middle six. With ``axis=None`` (the default) the values are flattened and a
    float comes back (NaN when there are none); with an axis it works along that axis, which is how
    :func:`bootstrap_ci` uses it. NaN raises ``ValueError``: it would sort to the top and be trimmed
    away silently.
    """
    x = np.asarray(values, dtype=float)
    if np.isnan(x).any():
        raise ValueError("iqm: scores contain NaN; filter them out before aggregating")
    if axis is None:
        return float(_scipy_stats().trim_mean(x.ravel(), IQM_TRIM)) if x.size else math.nan
    return _scipy_stats().trim_mean(x, IQM_TRIM, axis=axis)


def bootstrap_ci(
    scores_by_stratum: Sequence[ArrayLike],
    statistic: Statistic = np.mean,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Stratified bootstrap percentile confidence interval of ``statistic`` over all scores.

    ``scores_by_stratum`` is a list of strata (pass ``[scores]`` for one); each is flattened.
    ``statistic`` maps the pooled scores to a number and must not depend on their order, e.g.
    ``np.mean``, ``np.median`` or :func:`iqm`; it is vectorised when it takes an ``axis`` argument.

    Built on ``scipy.stats.bootstrap`` with one sample per stratum and ``paired=False``, which
    resamples every stratum independently. A stratum that cannot vary under resampling (one value,
    or all values equal) is held fixed; when no stratum can vary the interval is the point estimate.
    No scores gives ``(nan, nan)``; non-finite scores raise ``ValueError``. Deterministic given
    ``seed``.
    """
    strata = [s for s in _strata(scores_by_stratum) if s.size]
    if not strata:
        return math.nan, math.nan
    along_last = _along_last_axis(statistic)
    varying = [s for s in strata if np.ptp(s) > 0]
    if not varying:
        point = float(along_last(np.concatenate(strata)))
        return point, point
    fixed = np.concatenate([s for s in strata if np.ptp(s) == 0] or [np.empty(0)])
    result = _scipy_stats().bootstrap(
        varying,
        _on_concatenation(along_last, fixed),
        n_resamples=n_resamples,
        vectorized=True,
        paired=False,
        confidence_level=confidence,
        method="percentile",
        **{_rng_argument(): np.random.default_rng(seed)},
    )
    low, high = result.confidence_interval
    return float(low), float(high)


def aggregate(
    scores_by_stratum: Sequence[ArrayLike],
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> dict[str, float | int]:
    """Mean and IQM of all scores with their stratified bootstrap intervals, and the count ``n``.

    Keys: ``mean``, ``mean_low``, ``mean_high``, ``iqm``, ``iqm_low``, ``iqm_high``, ``n``. Both
    intervals use the same seed, hence the same resamples. No scores gives NaN everywhere and ``n = 0``.
    """
    strata = _strata(scores_by_stratum)
    pooled = np.concatenate(strata) if strata else np.empty(0)
    options = {"confidence": confidence, "n_resamples": n_resamples, "seed": seed}
    mean_low, mean_high = bootstrap_ci(strata, np.mean, **options)
    iqm_low, iqm_high = bootstrap_ci(strata, iqm, **options)
    return {
        "mean": float(pooled.mean()) if pooled.size else math.nan,
        "mean_low": mean_low,
        "mean_high": mean_high,
        "iqm": iqm(pooled),
        "iqm_low": iqm_low,
        "iqm_high": iqm_high,
        "n": int(pooled.size),
    }


def probability_of_improvement(x: ArrayLike, y: ArrayLike) -> float:
    """``P(X > Y) + 0.5 P(X = Y)`` over all pairs of scores from ``x`` and ``y`` (one task).

    The Mann-Whitney U statistic divided by ``len(x) * len(y)``, as rliable defines it. 0.5 means
    neither is better. NaN when either side is empty; NaN scores raise ``ValueError``.
    """
    xs, ys = _finite_1d(x, "x"), np.sort(_finite_1d(y, "y"))
    if not xs.size or not ys.size:
        return math.nan
    below = np.searchsorted(ys, xs, side="left")  # per x: how many y are smaller
    not_above = np.searchsorted(ys, xs, side="right")  # per x: how many y are smaller or equal
    wins, ties = below.sum(), (not_above - below).sum()
    return float((wins + 0.5 * ties) / (xs.size * ys.size))


def paired_difference(
    x: ArrayLike, y: ArrayLike, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0
) -> dict[str, float]:
    """The paired comparison of two agents on the same seeds: ``x[i]`` and ``y[i]`` share seed ``i``.

    Returns ``mean`` (the mean of ``x - y``), its percentile bootstrap interval ``low`` and ``high``
    (the seeds are resampled with replacement and both agents keep their pairing, so the between-seed
    spread that both share cancels), and ``p_improvement``, the share of seeds where ``x`` beats ``y``
    with ties counted half: the paired form of rliable's probability of improvement. Deterministic
    given ``seed``; NaN everywhere for no pairs.
    """
    xs, ys = _finite_1d(x, "x"), _finite_1d(y, "y")
    if xs.size != ys.size:
        raise ValueError(f"paired_difference needs one y per x; got {xs.size} and {ys.size}")
    if not xs.size:
        return {"mean": math.nan, "low": math.nan, "high": math.nan, "p_improvement": math.nan}
    difference = xs - ys
    low, high = bootstrap_ci([difference], np.mean, confidence, n_resamples, seed)
    wins = float(np.mean(difference > 0) + 0.5 * np.mean(difference == 0))
    return {"mean": float(difference.mean()), "low": low, "high": high, "p_improvement": wins}


def normalised_score(agent_return: float, random_return: float, reference_return: float) -> float:
    """``(R - R_random) / (R_ref - R_random)``: 0 is the random policy, 1 the reference.

    The reference is the planner where it can run (a calibrated configuration; ``evaluate.py`` and
    ``train_agent.py`` say which they used), else the per-round oracle. Tie rule: when ``R_ref`` and
    ``R_random`` tie (``math.isclose`` with a relative tolerance of ``SCORE_TIE_REL_TOL`` = 1e-9 and an
    absolute one of ``SCORE_TIE_ABS_TOL`` = 1e-12) the span has no scale and the score is NaN,
    undefined, whatever ``R`` is (even when ``R`` ties too). Callers drop NaN scores before
    aggregating: the leaderboard scores an agent on the seeds without a tie only (``n/a`` when every
    seed ties), and ``train_agent.py`` writes NaN to summary.json. A NaN return gives NaN too. The
    score may be below 0 or above 1 (neither reference is optimal).
    """
    if math.isnan(random_return) or math.isnan(reference_return) or math.isclose(
            reference_return, random_return, rel_tol=SCORE_TIE_REL_TOL, abs_tol=SCORE_TIE_ABS_TOL):
        return math.nan
    return (agent_return - random_return) / (reference_return - random_return)


def _strata(scores_by_stratum: Sequence[ArrayLike]) -> list[np.ndarray]:
    """The strata as flat float arrays, rejecting non-finite scores and a bare list of scores."""
    if isinstance(scores_by_stratum, np.ndarray) and scores_by_stratum.ndim < 2:
        raise ValueError("scores_by_stratum is a list of strata; pass [scores] for a single stratum")
    strata = []
    for i, stratum in enumerate(scores_by_stratum):
        array = np.asarray(stratum, dtype=float)
        if array.ndim == 0:
            raise ValueError("scores_by_stratum is a list of strata; pass [scores] for a single stratum")
        strata.append(_finite_1d(array, f"stratum {i}"))
    return strata


def _finite_1d(values: ArrayLike, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=float).ravel()
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite scores; filter them out before aggregating")
    return array


def _along_last_axis(statistic: Statistic) -> Callable[[np.ndarray], Any]:
    """``statistic`` applied along the last axis (one value per row of a batch of resamples)."""
    try:
        takes_axis = "axis" in inspect.signature(statistic).parameters
    except (TypeError, ValueError):  # some builtins have no introspectable signature
        takes_axis = False
    if takes_axis:
        return lambda x: statistic(x, axis=-1)
    return lambda x: np.apply_along_axis(statistic, -1, x)


def _on_concatenation(along_last: Callable[[np.ndarray], Any], fixed: np.ndarray) -> Statistic:
    """The statistic scipy calls with one resampled batch per stratum: it pools them with ``fixed``."""

    def pooled(*samples: np.ndarray, axis: int = -1) -> Any:
        batch_shape = samples[0].shape[:-1]
        held = np.broadcast_to(fixed, (*batch_shape, fixed.size))
        return np.asarray(along_last(np.concatenate([*samples, held], axis=-1)), dtype=float)

    return pooled
