"""The analytic twin: a round trainer that follows a curve fitted to real runs instead of training.

:class:`~sfl_env.training.curve.TrainingCurveModel` gives test accuracy and loss as functions of
accumulated *progress*, where a round at cut l adds ``speed[l]``, plus the fitted round-to-round
fluctuation of the accuracy. :func:`~sfl_env.training.calibration.calibration_for` finds the curve
fitted for a configuration, or refuses one that no calibration covers. :class:`AnalyticTrainer`
implements the :class:`~sfl_env.training.RoundTrainer` protocol with it.
"""

from __future__ import annotations

import math

import numpy as np

from ..config import SFLConfig
from ..errors import ConfigError
from ..models import SplitModel, build_model
from ..profiling import profile_model
from ..schemes import get_scheme
from .calibration import calibration_for
from .curve import TrainingCurveModel, ar1_noise
from .protocol import RoundOutcome

__all__ = ["AnalyticTrainer", "TrainingCurveModel", "ar1_noise", "build_analytic_trainer"]


class AnalyticTrainer:
    """A :class:`~sfl_env.training.RoundTrainer` that follows the fitted curve instead of training.

    ``run_round(cut)`` returns the curve model's loss after the accumulated progress and its accuracy
    plus the fitted AR(1) fluctuation drawn from ``rng`` (clipped to [0, 1]), at the run's pace (drawn
    once from ``rng`` when the calibration has a pace spread). It costs microseconds per round; the
    round's cost is priced as real training's is (:class:`~sfl_env.pricing.RoundPricer`).
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
        # This run's pace; drawn only when the calibration has one, so older fits replay unchanged.
        self.pace = math.exp(self.rng.normal(0.0, curve.pace_log_std)) if curve.pace_log_std > 0 else 1.0

    def resplit(self, cut: int) -> None:
        self.cut = self.model.check_cut(cut) if self.scheme.splits_model else self.model.num_blocks

    def test_metrics(self) -> tuple[float, float]:
        """Test accuracy (with its fluctuation) and test loss after the progress so far."""
        accuracy = min(max(self.curve.accuracy(self.progress) + self._noise, 0.0), 1.0)
        return accuracy, self.curve.loss(self.progress)

    def run_round(self, cut: int) -> RoundOutcome:
        self.resplit(cut)
        speed_cut = self.cut if self.scheme.splits_model else 1
        self.progress += self.pace * self.curve.speed[speed_cut - 1]
        self.round_index += 1
        corr, std = self.curve.acc_noise_corr, self.curve.acc_noise_std
        self._noise = corr * self._noise + self.rng.normal(0.0, std * math.sqrt(1.0 - corr**2))
        evaluated = self.round_index % self.config.eval_every == 0
        acc, loss = self.test_metrics() if evaluated else (math.nan, math.nan)
        train_loss = loss if evaluated else self.curve.loss(self.progress)  # the curve's loss either way
        return RoundOutcome(round_index=self.round_index, train_loss=train_loss, test_accuracy=acc,
                            test_loss=loss, diverged=False)


def build_analytic_trainer(
    config: SFLConfig, seed: int = 0, data_shape: tuple[tuple[int, int, int], int] | None = None,
    model: SplitModel | None = None,
) -> AnalyticTrainer:
    """The analytic twin of ``config`` from ``seed`` (the fluctuation and the run's pace).

    ``data_shape`` is (input shape, classes) when the caller knows it; otherwise
    :func:`~sfl_env.data.dataset_shape` gives it. ``model``: the split model of ``config``, when the
    caller has built it (the twin reads its cuts and profile only, never its weights); building one
    costs most of a reset."""
    if model is None:
        if data_shape is None:
            from ..data import dataset_shape

            data_shape = dataset_shape(config)
        model = build_model(config.model, *data_shape, **config.model_options, seed=seed)
    curve = calibration_for(config).curve
    return AnalyticTrainer(config, model, curve, rng=np.random.default_rng(seed))
