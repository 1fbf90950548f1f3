"""Round trainers: what runs one SFL training round, real or analytic, behind one protocol.

A :class:`RoundTrainer` trains (or, for the analytic twin, predicts) one round at a cut and returns its
:class:`RoundOutcome`: what the round taught. What the round cost is the pricer's
(:class:`~sfl_env.pricing.RoundPricer`), the same for both trainers. The env uses nothing else.

``real``
    :class:`~sfl_env.training.real.RealTrainer`: PyTorch training of one global split model.
``analytic``
    :class:`~sfl_env.training.analytic.AnalyticTrainer`: the calibrated twin; accuracy and loss follow a
    curve fitted to real runs, the ledger is the real one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..config import TRAININGS
from ..validation import check_choice
from .protocol import RoundOutcome, RoundTrainer

if TYPE_CHECKING:
    from ..config import SFLConfig
    from ..models import SplitModel
    from .curve import TrainingCurveModel

__all__ = ["TRAININGS", "RoundOutcome", "RoundTrainer", "build_trainer"]


def build_trainer(
    config: SFLConfig, seed: int = 0, training: str = "real",
    data_shape: tuple[tuple[int, int, int], int] | None = None, model: SplitModel | None = None,
    curve: TrainingCurveModel | None = None,
) -> RoundTrainer:
    """The whole training system of ``config`` from ``seed``: real PyTorch rounds or the analytic twin.

    ``data_shape`` (input shape, classes) spares the analytic twin a dataset load when the caller has it;
    ``model`` (the analytic twin only) is the split model it prices, shared rather than built again: the
    twin never trains it, so one model serves every episode; ``curve`` (the analytic twin only) is its fitted
    curve when the caller has looked it up (:func:`~sfl_env.training.calibration.calibration_for`)."""
    check_choice("training", training, TRAININGS)
    if training == "real":
        from .real import build_real_trainer

        return build_real_trainer(config, seed)
    from .analytic import build_analytic_trainer

    return build_analytic_trainer(config, seed, data_shape, model=model, curve=curve)
