"""The cut-dependent convergence term Gamma(l) and the analytic training model.

Gamma(l) grows with the client-side model; the paper's finding is that a smaller client-side model
converges better under gradient aggregation. Three pluggable forms (paper_spec.md 4.3):

``parameter_fraction``
    q(l) / Q, the share of the model's bits on the clients (the default).
``bound``
    The per-block bound ``sum_{j < l} (c1 I^2 eta^2 L^2 G_j^2 + c2 zeta_j^2)`` from block gradient
    norms G_j^2 and aggregation errors zeta_j^2 (measure them with :func:`measure_block_statistics`).
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


def bound_gamma(
    block_grad_sq: np.ndarray,
    block_agg_err_sq: np.ndarray,
    cuts: tuple[int, ...],
    *,
    c1: float = 1.0,
    c2: float = 1.0,
    local_iters: int = 5,
    lr: float = 0.05,
    smoothness: float = 1.0,
) -> np.ndarray:
    """Gamma(l) = sum over client blocks j < l of c1 I^2 eta^2 L^2 G_j^2 + c2 zeta_j^2 (paper_spec.md 4.3)."""
    per_block = c1 * (local_iters * lr * smoothness) ** 2 * np.asarray(block_grad_sq) + c2 * np.asarray(
        block_agg_err_sq
    )
    if np.any(per_block < 0):
        raise ConfigError("block gradient norms and aggregation errors must be >= 0")
    cumulative = np.cumsum(per_block)
    return np.array([cumulative[cut - 1] for cut in cuts])


def convergence_term(
    form: str,
    profile: ModelProfile,
    cuts: tuple[int, ...],
    *,
    curve_model: TrainingCurveModel | None = None,
    block_grad_sq: np.ndarray | None = None,
    block_agg_err_sq: np.ndarray | None = None,
    **bound_kwargs: float,
) -> np.ndarray:
    """Gamma(l) for every cut in the chosen form, normalised so that its largest value is 1."""
    check_choice("convergence", form, CONVERGENCE_FORMS)
    if form == "parameter_fraction":
        gamma = parameter_fraction(profile, cuts)
    elif form == "bound":
        if block_grad_sq is None or block_agg_err_sq is None:
            raise ConfigError("convergence='bound' needs block_grad_sq and block_agg_err_sq (see measure_block_statistics)")
        gamma = bound_gamma(block_grad_sq, block_agg_err_sq, cuts, **bound_kwargs)
    else:
        if curve_model is None:
            raise ConfigError("convergence='calibrated' needs a fitted TrainingCurveModel")
        gamma = 1.0 / curve_model.speeds_for(cuts)
    return gamma / gamma.max()


def measure_block_statistics(trainer, batches: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Per-block G_j^2 and zeta_j^2 of SFL-GA at the deepest cut, averaged over ``batches`` batches.

    G_j^2 is the squared norm of the exact FedAvg'd gradient of block j (every client back-propagates
    its own G_k); zeta_j^2 is the squared norm of what aggregation changes in it (clients
    back-propagate the aggregate instead). The last block always lives on the server: its zeta is 0.
    Nothing is trained.
    """
    model = trainer.model
    cut = model.cuts[-1]
    names = [[n for n, _ in block.named_parameters()] for block in model.blocks]
    grad_sq, err_sq = np.zeros(model.num_blocks), np.zeros(model.num_blocks)
    for _ in range(batches):
        batch = trainer.sampler.next_batch()
        exact = trainer.client_gradient(cut, batch, ratio=0.0)
        aggregated = trainer.client_gradient(cut, batch, ratio=1.0)
        for j in range(cut):
            keys = [f"blocks.{j}.{n}" for n in names[j]]
            grad_sq[j] += sum(float(exact[k].pow(2).sum()) for k in keys) / batches
            err_sq[j] += sum(float((aggregated[k] - exact[k]).pow(2).sum()) for k in keys) / batches
    return grad_sq, err_sq
