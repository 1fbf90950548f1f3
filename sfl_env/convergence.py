"""The cut-dependent convergence term Gamma(l) and the analytic training model.

Gamma(l) grows with the client-side model; the paper's finding is that a smaller client-side model
converges better under gradient aggregation (SFL-GA, arXiv 2501.01078). Two pluggable forms:

``parameter_fraction``
    q(l) / Q, the share of the model's bits on the clients (the default).
``calibrated``
    The slowdown measured by real training: 1 / speed(l) of the fitted :class:`TrainingCurveModel`,
    i.e. how many rounds cut l needs relative to a unit-speed cut.

The calibrated form reads the fitted :class:`~sfl_env.training.analytic.TrainingCurveModel` of the
analytic twin.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .config import CONVERGENCE_FORMS
from .profiling import ModelProfile
from .validation import ConfigError, check_choice

if TYPE_CHECKING:
    from .training.analytic import TrainingCurveModel


def parameter_fraction(profile: ModelProfile, cuts: tuple[int, ...]) -> np.ndarray:
    """Gamma(l) = q(l) / Q for every cut."""
    return np.array([profile.client_model_bits(cut) / profile.model_bits for cut in cuts])


def convergence_term(
    form: str,
    profile: ModelProfile,
    cuts: tuple[int, ...],
    *,
    curve_model: TrainingCurveModel | None = None,
) -> np.ndarray:
    """Gamma(l) for every cut in the chosen form, normalised so that its largest value is 1."""
    check_choice("convergence", form, CONVERGENCE_FORMS)
    if form == "parameter_fraction":
        gamma = parameter_fraction(profile, cuts)
    else:
        if curve_model is None:
            raise ConfigError("convergence='calibrated' needs a fitted TrainingCurveModel")
        gamma = 1.0 / curve_model.speeds_for(cuts)
    return gamma / gamma.max()
