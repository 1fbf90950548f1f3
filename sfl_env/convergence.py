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

:class:`TrainingCurveModel` is the analytic stand-in for real training used by the fast env: test
accuracy and loss as a function of accumulated *progress*, where a round at cut l adds ``speed[l]``.
Its constants are fitted to real runs by ``python -m sfl_env.calibration.fit`` and stored as JSON next
to that script.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from .models import SplitModel
from .profiling import ModelProfile, profile_model
from .schemes import RoundResult, migration_bits, round_ledger
from .validation import ConfigError, check_choice

GAMMA_FORMS: tuple[str, ...] = ("parameter_fraction", "bound", "calibrated")


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
    check_choice("convergence", form, GAMMA_FORMS)
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
    """Drop-in for :class:`~sfl_env.schemes.SchemeTrainer` that follows the fitted curve instead of training.

    ``run_round(cut)`` returns a :class:`~sfl_env.schemes.RoundResult` with the same work and traffic
    fields as real training (they come from the model's profile), the curve model's loss after the
    accumulated progress, and its accuracy plus the fitted AR(1) fluctuation drawn from ``rng`` (clipped
    to [0, 1]). It costs microseconds per round.
    """

    def __init__(
        self,
        model: SplitModel,
        curve: TrainingCurveModel,
        *,
        scheme: str,
        num_clients: int,
        batch_size: int,
        local_iters: int,
        gradient_aggregation: float = 1.0,
        eval_every: int = 1,
        bits_per_value: int = 32,
        rng: np.random.Generator | None = None,
    ) -> None:
        if len(curve.speed) != len(model.cuts):
            raise ConfigError(
                f"the curve model has {len(curve.speed)} cut speeds but model {model.name!r} has {len(model.cuts)} cuts"
            )
        self.model, self.curve, self.scheme = model, curve, scheme
        self.profile = profile_model(model, bits_per_value)
        self.num_clients, self.batch_size, self.local_iters = num_clients, batch_size, local_iters
        self.gradient_aggregation, self.eval_every = gradient_aggregation, eval_every
        self.progress, self.round_index, self.cut = 0.0, 0, None
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self._noise = self.rng.normal(0.0, curve.acc_noise_std)

    def resplit(self, cut: int) -> tuple[float, float]:
        cut = self.model.num_blocks if self.scheme == "fl" else self.model.check_cut(cut)
        previous, self.cut = self.cut, cut
        return migration_bits(self.profile, self.scheme, previous, cut, self.num_clients)

    def evaluate(self) -> tuple[float, float]:
        accuracy = min(max(self.curve.accuracy(self.progress) + self._noise, 0.0), 1.0)
        return accuracy, self.curve.loss(self.progress)

    def run_round(self, cut: int) -> RoundResult:
        previous = self.cut
        migrated_up, migrated_down = self.resplit(cut)
        speed_cut = 1 if self.scheme == "fl" else self.cut
        self.progress += self.curve.speed[speed_cut - 1]
        self.round_index += 1
        corr, std = self.curve.acc_noise_corr, self.curve.acc_noise_std
        self._noise = corr * self._noise + self.rng.normal(0.0, std * math.sqrt(1.0 - corr**2))
        evaluated = self.round_index % self.eval_every == 0
        acc, loss = self.evaluate() if evaluated else (math.nan, math.nan)
        train_loss = loss if evaluated else self.curve.loss(self.progress)  # the curve's loss either way
        return RoundResult(
            round_index=self.round_index, scheme=self.scheme, cut=self.cut, previous_cut=previous,
            train_loss=train_loss, test_accuracy=acc, test_loss=loss, diverged=False,
            migrated_bits_up=migrated_up, migrated_bits_down=migrated_down,
            **round_ledger(self.profile, self.scheme, self.cut, self.num_clients, self.local_iters,
                           self.batch_size, self.gradient_aggregation),
        )
