"""The fitted training curve of the analytic twin: test accuracy and loss as functions of progress.

Its constants are fitted to recorded real runs by ``python -m sfl_env.calibration.fit``; see
:mod:`sfl_env.training.calibration` for the files that hold them and what they were fitted on.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from numba import njit


@dataclass(frozen=True)
class TrainingCurveModel:
    """Test accuracy and loss as functions of progress p, the sum of ``speed[cut]`` over past rounds.

    accuracy(p) = a_inf - (a_inf - a_0) exp(-(p / tau)^kappa), and the same shape for the loss with its
    own constants. ``speed`` holds one value per candidate cut (index = cut - 1); the shallowest cut has
    speed 1, so p counts "rounds at that cut".

    Real runs differ in two ways, and the model carries both as fitted:

    - **pace**: one run (one seed: its initial weights, partition and batches) progresses faster or
      slower than another throughout; each run's progress per round is multiplied by
      ``exp(N(0, pace_log_std))``, drawn once per run;
    - **fluctuation**: test accuracy wobbles around the run's own curve from round to round, an AR(1)
      process with standard deviation ``acc_noise_std`` and lag-one correlation ``acc_noise_corr``.
      "Rounds to 90 %" is a first passage, which such fluctuations bring forward.

    :class:`~sfl_env.training.analytic.AnalyticTrainer` draws both, and :meth:`rounds_to` accounts for them.
    """

    scheme: str
    dataset: str
    model: str
    speed: tuple[float, ...]
    acc_0: float
    acc_inf: float
    acc_tau: float
    acc_kappa: float
    loss_0: float
    loss_inf: float
    loss_tau: float
    loss_kappa: float
    acc_noise_std: float = 0.0
    acc_noise_corr: float = 0.0
    pace_log_std: float = 0.0

    def speeds_for(self, cuts: tuple[int, ...]) -> np.ndarray:
        return np.array([self.speed[cut - 1] for cut in cuts])

    def accuracy(self, progress: float | np.ndarray) -> float | np.ndarray:
        return _saturating(progress, self.acc_0, self.acc_inf, self.acc_tau, self.acc_kappa)

    def loss(self, progress: float | np.ndarray) -> float | np.ndarray:
        return _saturating(progress, self.loss_0, self.loss_inf, self.loss_tau, self.loss_kappa)

    def progress_to(self, accuracy: float) -> float:
        """Progress at which the model reaches ``accuracy`` (inf if it never does)."""
        if accuracy <= self.acc_0:
            return 0.0
        if accuracy >= self.acc_inf:
            return math.inf
        ratio = (self.acc_inf - accuracy) / (self.acc_inf - self.acc_0)
        return self.acc_tau * (-math.log(ratio)) ** (1.0 / self.acc_kappa)

    def expected_rounds_to(self, accuracy: float, cut: int) -> float:
        """Rounds at a fixed cut until the noiseless curve reaches ``accuracy`` (inf if it never does)."""
        progress = self.progress_to(accuracy)
        return progress if math.isinf(progress) else math.ceil(progress / self.speed[cut - 1] - 1e-9)

    def rounds_to(self, accuracy: float, cut: int, *, samples: int = 2000, horizon: int = 3000, seed: int = 0,
                  quantile: float = 0.5) -> float:
        """Median (or another ``quantile``) first round at or above ``accuracy`` at a fixed cut over runs
        of the model, pace and fluctuations included (inf if that run has not got there within
        ``horizon`` rounds). Deterministic for a given ``seed``."""
        expected = self.expected_rounds_to(accuracy, cut)
        if self.acc_noise_std == 0 and self.pace_log_std == 0:
            return expected
        if math.isfinite(expected):  # past the noiseless crossing the curve keeps rising: passage is near
            horizon = int(min(horizon, 3 * expected + 50))
        hit = self.sample_runs(np.random.default_rng(seed), cut, samples, horizon) >= accuracy
        first = np.where(hit.any(1), hit.argmax(1) + 1, np.inf)
        return float(np.median(first) if quantile == 0.5 else np.quantile(first, quantile, method="inverted_cdf"))

    def sample_runs(self, rng: np.random.Generator, cut: int, runs: int, rounds: int) -> np.ndarray:
        """(runs, rounds) test accuracies of runs at a fixed cut, each at its own pace and with its own
        fluctuation (unclipped)."""
        pace = np.exp(rng.normal(0.0, self.pace_log_std, (runs, 1))) if self.pace_log_std > 0 else 1.0
        curve = self.accuracy(pace * self.speed[cut - 1] * np.arange(1, rounds + 1))
        return curve + ar1_noise(rng, (runs, rounds), self.acc_noise_std, self.acc_noise_corr)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainingCurveModel:
        return cls(**{**values, "speed": tuple(values["speed"])})


def ar1_noise(rng: np.random.Generator, shape: tuple[int, int], std: float, corr: float) -> np.ndarray:
    """Stationary AR(1) sequences along the last axis: marginal ``std``, lag-one correlation ``corr``."""
    noise = np.empty(shape)
    noise[..., 0] = rng.normal(0.0, std, shape[:-1])
    innovations = rng.normal(0.0, std * math.sqrt(1.0 - corr**2), shape)
    for t in range(1, shape[-1]):
        noise[..., t] = corr * noise[..., t - 1] + innovations[..., t]
    return noise


@njit(cache=True, error_model="numpy", nogil=True)
def saturating(progress: float, start: float, end: float, tau: float, kappa: float) -> float:
    """``end - (end - start) exp(-(p / tau)^kappa)`` at ``p = max(progress, 0)`` (NaN stays NaN): the curve's
    shape, compiled, so the twin's rounds (:class:`~sfl_env.training.analytic.AnalyticRuns`) and
    :meth:`TrainingCurveModel.accuracy` give the same values."""
    p = 0.0 if progress < 0 else progress
    return end - (end - start) * math.exp(-((p / tau) ** kappa))


@njit(cache=True, error_model="numpy", nogil=True)
def _saturating_all(progress, start, end, tau, kappa, out) -> None:
    for i in range(progress.size):
        out[i] = saturating(progress[i], start, end, tau, kappa)


def _saturating(p, start: float, end: float, tau: float, kappa: float):
    progress = np.ascontiguousarray(p, dtype=np.float64)
    value = np.empty(progress.shape)
    _saturating_all(progress.reshape(-1), float(start), float(end), float(tau), float(kappa), value.reshape(-1))
    return float(value) if value.ndim == 0 else value
