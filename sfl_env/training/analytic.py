"""The analytic twin: a round trainer that follows a curve fitted to real runs instead of training.

:class:`~sfl_env.training.curve.TrainingCurveModel` gives test accuracy and loss as functions of
accumulated *progress*, where a round at cut l adds ``speed[l]``, plus the fitted round-to-round
fluctuation of the accuracy. :func:`~sfl_env.training.calibration.calibration_for` finds the curve
fitted for a configuration, or refuses one that no calibration covers. :class:`AnalyticTrainer`
implements the :class:`~sfl_env.training.RoundTrainer` protocol with it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numba import njit

from solvers.kernel_cache import drop_stale_kernels

from ..config import SFLConfig
from ..draws import EpisodeGenerators
from ..errors import ConfigError
from ..models import SplitModel, build_model
from ..profiling import profile_model
from ..schemes import get_scheme
from . import curve as curve_module
from .calibration import calibration_for
from .curve import TrainingCurveModel, ar1_noise, saturating
from .protocol import RoundOutcome

__all__ = ["AnalyticRuns", "AnalyticTrainer", "TrainingCurveModel", "ar1_noise", "build_analytic_trainer"]

drop_stale_kernels(__file__, curve_module.__file__)  # the curve's shape is compiled in


class AnalyticRuns:
    """E runs of the analytic twin as arrays, one per episode of a vectorised env (E = 1 for one).

    Each run follows the fitted curve at its own pace (drawn once from its generator when the
    calibration has a pace spread) with its own AR(1) fluctuation (one draw per round from its
    generator). Row e draws from ``rngs[e]`` alone, so a run is the same alone and in a batch;
    :meth:`restart` begins new runs in some rows.
    """

    def __init__(self, config: SFLConfig, model: SplitModel, curve: TrainingCurveModel,
                 rngs: Sequence[np.random.Generator]) -> None:
        if len(curve.speed) != len(model.cuts):
            raise ConfigError(
                f"the curve model has {len(curve.speed)} cut speeds but model {model.name!r} has {len(model.cuts)} cuts"
            )
        self.config, self.model, self.curve = config, model, curve
        self.scheme = get_scheme(config.scheme)
        # The speed of a round at each cut index (a scheme that does not split trains at the speed of cut 1).
        cuts = model.cuts if self.scheme.splits_model else (1,) * len(model.cuts)
        self.speed_per_index = np.array([curve.speed[cut - 1] for cut in cuts])
        self._innovation_std = curve.acc_noise_std * math.sqrt(1.0 - curve.acc_noise_corr**2)
        self._curve_constants = np.array([curve.acc_0, curve.acc_inf, curve.acc_tau, curve.acc_kappa, curve.loss_0,
                                          curve.loss_inf, curve.loss_tau, curve.loss_kappa], dtype=np.float64)
        runs = len(rngs)
        self.rngs = EpisodeGenerators.of(rngs)
        self.progress, self.noise, self.pace = np.zeros(runs), np.zeros(runs), np.ones(runs)
        self.round_index = np.zeros(runs, dtype=np.int64)
        self.restart(np.arange(runs), rngs)

    def restart(self, rows: np.ndarray, rngs: Sequence[np.random.Generator]) -> None:
        """Begins a new run in each of ``rows``, drawn from the matching generator of ``rngs``."""
        curve = self.curve
        self.rngs.replace(rows, list(rngs))
        rows = np.asarray(rows, dtype=np.int64)
        draws = np.empty((len(self.rngs), 1))
        self.rngs.normal(0.0, curve.acc_noise_std, draws, rows)
        self.noise[rows] = draws[rows, 0]
        # This run's pace; drawn only when the calibration has one, so older fits replay unchanged.
        if curve.pace_log_std > 0:
            self.rngs.normal(0.0, curve.pace_log_std, draws, rows)
            self.pace[rows] = np.exp(draws[rows, 0])
        else:
            self.pace[rows] = 1.0
        self.progress[rows], self.round_index[rows] = 0.0, 0

    def run_round(self, cut_index: np.ndarray) -> dict[str, np.ndarray]:
        """One round of every run at its cut index (E,): ``train_loss``, ``test_accuracy`` and
        ``test_loss`` (NaN where the round is not evaluated), arrays of shape (E,)."""
        runs, curve = len(self.rngs), self.curve
        draws = np.empty((runs, 1))
        self.rngs.standard_normal(draws)  # N(0, s) is s times a standard draw
        metrics = np.empty((3, runs))
        _advance_runs(self.progress, self.pace, self.speed_per_index, np.asarray(cut_index, dtype=np.int64),
                      self.round_index, self.noise, draws, curve.acc_noise_corr, self._innovation_std,
                      self.config.eval_every, self._curve_constants, metrics)  # fmt: skip
        return dict(zip(("train_loss", "test_accuracy", "test_loss"), metrics))


@njit(cache=True, error_model="numpy", nogil=True)
def _advance_runs(progress, pace, speed_per_index, cut_index, round_index, noise, draws, noise_corr, innovation_std,
                  eval_every, curve, metrics) -> None:  # fmt: skip
    """One round of every run, in place: its progress at its pace and cut's speed, its AR(1) fluctuation from
    its standard draw, then into ``metrics`` (3, E) the train loss, and the test accuracy (the curve plus the
    fluctuation, clipped to [0, 1]) and test loss where the round is evaluated (NaN elsewhere). ``curve``: the
    accuracy's and the loss's (start, end, tau, kappa)."""
    for e in range(progress.size):
        progress[e] = progress[e] + pace[e] * speed_per_index[cut_index[e]]
        round_index[e] += 1
        noise[e] = noise_corr * noise[e] + innovation_std * draws[e, 0]
        loss = saturating(progress[e], curve[4], curve[5], curve[6], curve[7])
        accuracy = saturating(progress[e], curve[0], curve[1], curve[2], curve[3]) + noise[e]
        accuracy = 0.0 if accuracy < 0.0 else accuracy  # a NaN stays NaN
        accuracy = 1.0 if accuracy > 1.0 else accuracy
        evaluated = round_index[e] % eval_every == 0
        metrics[0, e] = loss
        metrics[1, e] = accuracy if evaluated else math.nan
        metrics[2, e] = loss if evaluated else math.nan


class AnalyticTrainer:
    """A :class:`~sfl_env.training.RoundTrainer` that follows the fitted curve instead of training.

    ``run_round(cut)`` returns the curve model's loss after the accumulated progress and its accuracy
    plus the fitted AR(1) fluctuation drawn from ``rng`` (clipped to [0, 1]), at the run's pace (drawn
    once from ``rng`` when the calibration has a pace spread). It costs microseconds per round; the
    round's cost is priced as real training's is (:class:`~sfl_env.pricing.RoundPricer`). It is one
    run of :class:`AnalyticRuns`.
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
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.runs = AnalyticRuns(config, model, curve, [self.rng])
        self.config, self.model, self.curve, self.scheme = config, model, curve, self.runs.scheme
        self.profile = profile_model(model, bits_per_value)
        self.cut: int | None = None

    @property
    def progress(self) -> float:
        return float(self.runs.progress[0])

    @property
    def round_index(self) -> int:
        return int(self.runs.round_index[0])

    @property
    def pace(self) -> float:
        return float(self.runs.pace[0])

    def resplit(self, cut: int) -> None:
        self.cut = self.model.check_cut(cut) if self.scheme.splits_model else self.model.num_blocks

    def test_metrics(self) -> tuple[float, float]:
        """Test accuracy (with its fluctuation) and test loss after the progress so far."""
        runs = self.runs
        accuracy = min(max(float(self.curve.accuracy(runs.progress)[0] + runs.noise[0]), 0.0), 1.0)
        return accuracy, float(self.curve.loss(runs.progress)[0])

    def run_round(self, cut: int) -> RoundOutcome:
        self.resplit(cut)
        metrics = self.runs.run_round(np.array([self.model.cuts.index(cut)]))
        return RoundOutcome(round_index=self.round_index, train_loss=float(metrics["train_loss"][0]),
                            test_accuracy=float(metrics["test_accuracy"][0]),
                            test_loss=float(metrics["test_loss"][0]), diverged=False)


def build_analytic_trainer(
    config: SFLConfig, seed: int = 0, data_shape: tuple[tuple[int, int, int], int] | None = None,
    model: SplitModel | None = None, curve: TrainingCurveModel | None = None,
) -> AnalyticTrainer:
    """The analytic twin of ``config`` from ``seed`` (the fluctuation and the run's pace).

    ``data_shape`` is (input shape, classes) when the caller knows it; otherwise
    :func:`~sfl_env.data.dataset_shape` gives it. ``model``: the split model of ``config``, when the
    caller has built it (the twin reads its cuts and profile only, never its weights); building one
    costs most of a reset. ``curve``: ``config``'s fitted curve, when the caller has looked it up."""
    if model is None:
        if data_shape is None:
            from ..data import dataset_shape

            data_shape = dataset_shape(config)
        model = build_model(config.model, *data_shape, **config.model_options, seed=seed)
    if curve is None:
        curve = calibration_for(config).curve
    return AnalyticTrainer(config, model, curve, rng=np.random.default_rng(seed))
