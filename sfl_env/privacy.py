"""Which cut points the clients may use: a privacy constraint on the action space.

The deeper the cut, the more of the model the raw data passes through before it leaves the client.
Two rules decide which cuts are allowed: ``min_blocks`` keeps at least a given number of blocks on the
clients; ``leakage`` measures how much of the raw input the smashed data still reveals, as the distance
correlation between a probe batch and its smashed data at each cut, and allows the cuts at or below a
threshold.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import ArrayLike
from scipy.spatial.distance import pdist, squareform

from .config import PRIVACY_RULES
from .models import SplitModel
from .validation import ConfigError, check_choice, check_int, check_number



def distance_correlation(
    x: torch.Tensor | ArrayLike, z: torch.Tensor | ArrayLike, *, bias_corrected: bool = True
) -> float:
    """Sample distance correlation of two batches, in [0, 1]; rows are samples, trailing shapes flattened.

    It is 1 when ``z`` is a scaled, shifted copy of ``x``. The plain V-statistic (Szekely, Rizzo and
    Bakirov, 2007; ``bias_corrected=False``) is biased upward for independent data, badly so with many
    features (above 0.5 for 500 pairs of 64 independent features), which would make every smashed
    activation look leaky. The default is the bias-corrected estimator (Szekely and Rizzo, 2013:
    U-centred distance matrices), which is near 0 for independent batches of any width; its squared
    value can fall slightly below 0 by chance and is then reported as 0. Needs 4 samples or more.
    """
    x_rows, z_rows = _as_rows(x), _as_rows(z)
    if len(x_rows) != len(z_rows):
        raise ValueError(f"x has {len(x_rows)} samples and z has {len(z_rows)}; they must pair up")
    minimum = 4 if bias_corrected else 2
    if len(x_rows) < minimum:
        raise ValueError(f"distance correlation needs at least {minimum} samples; got {len(x_rows)}")
    centre = _u_centred_distances if bias_corrected else _double_centred_distances
    a, b = centre(x_rows), centre(z_rows)
    variance_product = np.sum(a * a) * np.sum(b * b)
    if variance_product <= 0:
        return 0.0
    covariance = max(float(np.sum(a * b)), 0.0)
    return float(np.clip(np.sqrt(covariance / np.sqrt(variance_product)), 0.0, 1.0))


def _as_rows(batch: torch.Tensor | ArrayLike) -> np.ndarray:
    if isinstance(batch, torch.Tensor):
        batch = batch.detach().cpu().to(torch.float64).numpy()
    array = np.asarray(batch, dtype=np.float64)
    return array.reshape(len(array), -1)


def _double_centred_distances(rows: np.ndarray) -> np.ndarray:
    distances = squareform(pdist(rows))
    return distances - distances.mean(0) - distances.mean(1, keepdims=True) + distances.mean()


def _u_centred_distances(rows: np.ndarray) -> np.ndarray:
    n = len(rows)
    distances = squareform(pdist(rows))
    centred = (
        distances
        - distances.sum(0) / (n - 2)
        - distances.sum(1, keepdims=True) / (n - 2)
        + distances.sum() / ((n - 1) * (n - 2))
    )
    np.fill_diagonal(centred, 0.0)
    return centred


def leakage_per_cut(model: SplitModel, probe: torch.Tensor) -> np.ndarray:
    """Distance correlation between ``probe`` and its smashed data at each of ``model.cuts``.

    A language model's probe is token windows, compared as one-hot bytes: the text itself, in a form
    that owes nothing to the model's weights (the token embeddings are the first block, so measuring
    against them would make the shallowest cut leak exactly 1 by construction).

    Uses the current weights in eval mode without gradients; every submodule's train/eval mode is
    restored afterwards.
    """
    modes = [(module, module.training) for module in model.modules()]
    device = next(model.parameters()).device
    reference = F.one_hot(probe, model.num_classes).float() if model.is_language_model else probe
    leakage = []
    try:
        model.eval()
        with torch.no_grad():
            smashed = probe.to(device)
            for cut in model.cuts:
                smashed = model.forward_range(smashed, cut - 1, cut)
                leakage.append(distance_correlation(reference, smashed))
    finally:
        for module, training in modes:
            module.train(training)
    return np.array(leakage)


def allowed_cuts(
    model: SplitModel,
    rule: str = "min_blocks",
    *,
    min_client_blocks: int = 1,
    max_leakage: float | None = None,
    probe: torch.Tensor | None = None,
) -> np.ndarray:
    """A bool mask over ``model.cuts``: True where ``rule`` allows the cut.

    ``min_blocks`` allows cut ``l`` iff ``l >= min_client_blocks``; ``leakage`` allows it iff the
    leakage measured on ``probe`` is at most ``max_leakage``. Raises :class:`ConfigError` when no cut is
    allowed.
    """
    check_choice("rule", rule, PRIVACY_RULES)
    _check_min_client_blocks(model, min_client_blocks)
    cuts = np.array(model.cuts)
    if rule == "min_blocks":
        allowed = cuts >= min_client_blocks
        detail = f"min_client_blocks={min_client_blocks}"
    else:
        if probe is None:
            raise ConfigError("rule='leakage' needs a probe batch (probe=...) to measure leakage on")
        if max_leakage is None:
            raise ConfigError("rule='leakage' needs max_leakage, a distance correlation in [0, 1]")
        check_number("max_leakage", max_leakage, low=0.0, high=1.0)
        leakage = leakage_per_cut(model, probe)
        allowed = leakage <= max_leakage
        measured = ", ".join(f"cut {cut}: {value:.4f}" for cut, value in zip(cuts, leakage))
        detail = f"max_leakage={max_leakage} (measured leakage {measured})"
    if not allowed.any():
        raise ConfigError(f"no cut of model {model.name!r} is allowed by rule={rule!r} with {detail}")
    return allowed


def _check_min_client_blocks(model: SplitModel, min_client_blocks: int) -> None:
    try:
        check_int("min_client_blocks", min_client_blocks, low=1, high=model.num_blocks - 1)
    except ConfigError as error:
        raise ConfigError(
            f"{error} (model {model.name!r} has {model.num_blocks} blocks, so cuts {model.cuts[0]}..{model.cuts[-1]})"
        ) from None
