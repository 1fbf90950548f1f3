"""The analytic twin: a round trainer that follows a curve fitted to real runs instead of training.

:class:`TrainingCurveModel` gives test accuracy and loss as functions of accumulated *progress*, where a
round at cut l adds ``speed[l]``, plus the fitted round-to-round fluctuation of the accuracy. Its
constants are fitted to real runs by ``python -m sfl_env.calibration.fit`` and stored as JSON next to
that script, one file per (dataset, model). :class:`AnalyticTrainer` implements the
:class:`~sfl_env.training.RoundTrainer` protocol with it; its ledger is the real one.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from ..config import SFLConfig
from ..errors import ConfigError
from ..ledger import round_cost
from ..models import SplitModel, build_model
from ..profiling import profile_model
from ..schemes import get_scheme
from .protocol import RoundOutcome, RoundResult


@dataclass(frozen=True)
class TrainingCurveModel:
    """Test accuracy and loss as functions of progress p, the sum of ``speed[cut]`` over past rounds.

    accuracy(p) = a_inf - (a_inf - a_0) exp(-(p / tau)^kappa), and the same shape for the loss with its
    own constants. ``speed`` holds one value per candidate cut (index = cut - 1); the shallowest cut has
    speed 1, so p counts "rounds at that cut".

    Real test accuracy fluctuates around that curve from round to round, and "rounds to 90 %" is the
    first round that touches 90 %, which such fluctuations bring forward. The model therefore carries
    the fitted fluctuation: an AR(1) process with standard deviation ``acc_noise_std`` and lag-one
    correlation ``acc_noise_corr``, which :class:`AnalyticTrainer` adds and :meth:`rounds_to` accounts for.
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

    def rounds_to(self, accuracy: float, cut: int, *, samples: int = 2000, horizon: int = 3000, seed: int = 0) -> float:
        """Median first round at or above ``accuracy`` at a fixed cut, fluctuations included (inf if the
        median run has not got there within ``horizon`` rounds). Deterministic for a given ``seed``."""
        expected = self.expected_rounds_to(accuracy, cut)
        if self.acc_noise_std == 0:
            return expected
        if math.isfinite(expected):  # past the noiseless crossing the curve keeps rising: passage is near
            horizon = min(horizon, 2 * expected + 50)
        curve = self.accuracy(self.speed[cut - 1] * np.arange(1, horizon + 1))
        noise = ar1_noise(np.random.default_rng(seed), (samples, horizon), self.acc_noise_std, self.acc_noise_corr)
        hit = (curve + noise) >= accuracy
        first = np.where(hit.any(1), hit.argmax(1) + 1, np.inf)
        return float(np.median(first))

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


def _saturating(p, start: float, end: float, tau: float, kappa: float):
    p = np.maximum(np.asarray(p, dtype=np.float64), 0.0)
    value = end - (end - start) * np.exp(-((p / tau) ** kappa))
    return float(value) if value.ndim == 0 else value


@functools.lru_cache(maxsize=64)
def load_curve_model(scheme: str, dataset: str = "digits", model: str = "cnn", path: str | Path | None = None
                     ) -> TrainingCurveModel:
    """The fitted curve model of ``scheme`` on (dataset, model) from the calibration file (read once per
    process and argument set)."""
    source = resources.files("sfl_env.calibration").joinpath(f"{dataset}-{model}.json") if path is None else Path(path)
    if not source.is_file():
        raise ConfigError(
            f"no calibrated training model for {dataset}/{model} (looked for {source.name}); "
            "fit one with `python -m sfl_env.calibration.fit`"
        )
    text = source.read_text()
    fits = json.loads(text)["schemes"]
    if scheme not in fits:
        raise ConfigError(
            f"no calibrated training model for scheme={scheme!r} on {dataset}/{model}; calibrated: {', '.join(fits)}"
        )
    return TrainingCurveModel.from_dict(fits[scheme])


class AnalyticTrainer:
    """A :class:`~sfl_env.training.RoundTrainer` that follows the fitted curve instead of training.

    ``run_round(cut)`` returns the curve model's loss after the accumulated progress and its accuracy
    plus the fitted AR(1) fluctuation drawn from ``rng`` (clipped to [0, 1]); its cost is the real ledger
    (:func:`~sfl_env.ledger.round_cost`). It costs microseconds per round.
    """

    def __init__(
        self,
        config: SFLConfig,
        model: SplitModel,
        curve: TrainingCurveModel,
        *,
        bits_per_value: int = 32,
        rng: np.random.Generator | None = None,
    ) -> None:
        if len(curve.speed) != len(model.cuts):
            raise ConfigError(
                f"the curve model has {len(curve.speed)} cut speeds but model {model.name!r} has {len(model.cuts)} cuts"
            )
        self.config, self.model, self.curve = config, model, curve
        self.scheme = get_scheme(config.scheme)
        self.profile = profile_model(model, bits_per_value)
        self.progress, self.round_index, self.cut = 0.0, 0, None
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self._noise = self.rng.normal(0.0, curve.acc_noise_std)

    def resplit(self, cut: int) -> None:
        self.cut = self.model.check_cut(cut) if self.scheme.splits_model else self.model.num_blocks

    def test_metrics(self) -> tuple[float, float]:
        """Test accuracy (with its fluctuation) and test loss after the progress so far."""
        accuracy = min(max(self.curve.accuracy(self.progress) + self._noise, 0.0), 1.0)
        return accuracy, self.curve.loss(self.progress)

    def run_round(self, cut: int) -> RoundResult:
        previous = self.cut
        self.resplit(cut)
        speed_cut = self.cut if self.scheme.splits_model else 1
        self.progress += self.curve.speed[speed_cut - 1]
        self.round_index += 1
        corr, std = self.curve.acc_noise_corr, self.curve.acc_noise_std
        self._noise = corr * self._noise + self.rng.normal(0.0, std * math.sqrt(1.0 - corr**2))
        evaluated = self.round_index % self.config.eval_every == 0
        acc, loss = self.test_metrics() if evaluated else (math.nan, math.nan)
        train_loss = loss if evaluated else self.curve.loss(self.progress)  # the curve's loss either way
        outcome = RoundOutcome(round_index=self.round_index, train_loss=train_loss, test_accuracy=acc,
                               test_loss=loss, diverged=False)
        config = self.config
        cost = round_cost(self.profile, self.scheme, self.cut, previous, num_clients=config.num_clients,
                          local_iters=config.local_iters, batch_size=config.batch_size,
                          gradient_aggregation=config.gradient_aggregation)
        return RoundResult(outcome, cost)


def build_analytic_trainer(
    config: SFLConfig, seed: int = 0, data_shape: tuple[tuple[int, int, int], int] | None = None
) -> AnalyticTrainer:
    """The analytic twin of ``config`` from ``seed`` (the model's initial weights and the fluctuation).

    ``data_shape`` is (input shape, classes) when the caller knows it; otherwise the dataset is loaded
    to read it."""
    if data_shape is None:
        from ..data import load_dataset

        data = load_dataset(config.dataset, config.data_dir, num_train=config.num_train, num_test=config.num_test)
        data_shape = (data.input_shape, data.num_classes)
    model = build_model(config.model, *data_shape, width=config.model_width, seed=seed)
    curve = load_curve_model(config.scheme, config.dataset, config.model)
    return AnalyticTrainer(config, model, curve, rng=np.random.default_rng(seed))
