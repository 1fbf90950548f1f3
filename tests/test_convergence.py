"""The convergence term Gamma(l), its measurement, and the analytic training model."""

import math

import numpy as np
import pytest

from sfl_env.config import SFLConfig
from sfl_env.convergence import convergence_term, parameter_fraction
from sfl_env.data import dataset_shape
from sfl_env.errors import ConfigError
from sfl_env.models import build_model
from sfl_env.profiling import profile_model
from sfl_env.schemes import SCHEMES
from sfl_env.training import RoundTrainer, build_trainer
from sfl_env.training.analytic import AnalyticTrainer, TrainingCurveModel
from sfl_env.training.calibration import calibration_for, shipped_calibrations

# The tiny preset: digits and its 4-block CNN (3 cuts), fast to train.
DIGITS = {"dataset": "digits", "model": "cnn", "model_width": 1.0, "momentum": 0.0}

CURVE = TrainingCurveModel(
    scheme="sfl-ga", dataset="digits", model="cnn", speed=(1.0, 0.5, 0.25),
    acc_0=0.1, acc_inf=0.98, acc_tau=30.0, acc_kappa=2.0,
    loss_0=2.3, loss_inf=0.1, loss_tau=25.0, loss_kappa=1.5,
)


def test_parameter_fraction_grows_with_the_client_model():
    model = build_model("cnn", (1, 8, 8), 10)
    gamma = parameter_fraction(profile_model(model), model.cuts)
    assert np.all(np.diff(gamma) > 0) and 0 < gamma[0] and gamma[-1] < 1


def test_convergence_term_is_normalised_and_checks_its_inputs():
    model = build_model("cnn", (1, 8, 8), 10)
    profile = profile_model(model)
    for form, kwargs in [("parameter_fraction", {}), ("calibrated", {"curve_model": CURVE})]:
        gamma = convergence_term(form, profile, model.cuts, **kwargs)
        assert gamma.max() == 1.0 and np.all(np.diff(gamma) > 0), form
    np.testing.assert_allclose(convergence_term("calibrated", profile, model.cuts, curve_model=CURVE), [0.25, 0.5, 1])
    with pytest.raises(ConfigError, match="convergence='calibrated' needs a fitted TrainingCurveModel"):
        convergence_term("calibrated", profile, model.cuts)
    with pytest.raises(ConfigError, match="convergence='loss' is unknown; allowed: 'parameter_fraction'"):
        convergence_term("loss", profile, model.cuts)


def test_curve_model_is_monotone_and_invertible():
    p = np.linspace(0, 200, 401)
    acc = CURVE.accuracy(p)
    assert acc[0] == pytest.approx(0.1) and np.all(np.diff(acc) >= 0) and acc[-1] <= 0.98
    assert np.all(np.diff(CURVE.loss(p)) <= 0)
    assert CURVE.accuracy(CURVE.progress_to(0.9)) == pytest.approx(0.9)
    assert CURVE.progress_to(0.99) == math.inf and CURVE.progress_to(0.05) == 0.0
    # half the speed, twice the rounds (up to rounding to whole rounds)
    assert CURVE.rounds_to(0.9, 2) == math.ceil(2 * CURVE.progress_to(0.9))
    assert TrainingCurveModel.from_dict(CURVE.to_dict()) == CURVE


def test_fluctuations_bring_the_first_passage_forward_and_are_seeded():
    noisy = TrainingCurveModel.from_dict(CURVE.to_dict() | {"acc_noise_std": 0.05, "acc_noise_corr": 0.6})
    assert CURVE.rounds_to(0.9, 1) == CURVE.expected_rounds_to(0.9, 1)
    assert noisy.rounds_to(0.9, 1) < noisy.expected_rounds_to(0.9, 1)
    assert noisy.rounds_to(0.9, 1, seed=3) == noisy.rounds_to(0.9, 1, seed=3)
    model = build_model("cnn", (1, 8, 8), 10)

    def run(seed):
        trainer = AnalyticTrainer(SFLConfig(**DIGITS), model, noisy, rng=np.random.default_rng(seed))
        return np.array([trainer.run_round(1).test_accuracy for _ in range(200)])

    a, b, c = run(0), run(0), run(1)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    residual = a - CURVE.accuracy(np.arange(1, 201))
    assert 0.03 < residual[50:].std() < 0.07 and np.corrcoef(residual[:-1], residual[1:])[0, 1] > 0.3
    assert a.min() >= 0 and a.max() <= 1


def test_each_twin_run_has_its_own_pace_drawn_from_the_fitted_spread():
    paced = TrainingCurveModel.from_dict(CURVE.to_dict() | {"pace_log_std": 0.2})
    model = build_model("cnn", (1, 8, 8), 10)
    paces = [AnalyticTrainer(SFLConfig(**DIGITS), model, paced, rng=np.random.default_rng(seed)).pace
             for seed in range(200)]
    assert 0.15 < np.log(paces).std() < 0.25 and len(set(paces)) == 200
    trainer = AnalyticTrainer(SFLConfig(**DIGITS), model, paced, rng=np.random.default_rng(0))
    trainer.run_round(2)
    assert trainer.progress == pytest.approx(trainer.pace * 0.5)
    assert AnalyticTrainer(SFLConfig(**DIGITS), model, CURVE).pace == 1.0, "no spread fitted: every run at pace 1"
    assert paced.rounds_to(0.9, 1, seed=1) == paced.rounds_to(0.9, 1, seed=1)


def test_analytic_trainer_follows_the_curve_and_keeps_the_real_cut():
    config = SFLConfig(num_train=200, **DIGITS)
    real = build_trainer(config, seed=0)
    analytic = AnalyticTrainer(config, real.model, CURVE)
    assert isinstance(real, RoundTrainer) and isinstance(analytic, RoundTrainer)
    cuts = (1, 3, 3, 2, 1)
    results = [analytic.run_round(cut) for cut in cuts]
    expected_progress = np.cumsum([CURVE.speed[c - 1] for c in cuts])
    np.testing.assert_allclose([r.test_accuracy for r in results], CURVE.accuracy(expected_progress))
    assert analytic.cut == cuts[-1]  # the pricer reads the previous cut from it, as from the real trainer


def test_every_shipped_calibration_covers_every_scheme_and_cut():
    calibrations = {c.preset: c for c in shipped_calibrations()}
    assert {"shapes", "digits"} <= set(calibrations)
    for preset, calibration in calibrations.items():
        config = SFLConfig.from_kwargs(preset=preset, data_dir="unused")
        model = build_model(config.model, *dataset_shape(config), **config.model_options)
        for scheme in SCHEMES:
            curve = calibration.curves[scheme]
            assert len(curve.speed) == len(model.cuts) and 0 <= curve.acc_0 < curve.acc_inf <= 1.05, (preset, scheme)
        assert not set(calibration.fit_seeds) & set(calibration.held_out_seeds), "fitted seeds are never held out"
    shapes = calibrations["shapes"]
    for scheme in ("sfl-ga", "sfl-v1", "sfl-v2", "fl"):  # PSL's averaged client models stay below 80 % here
        assert shapes.curves[scheme].rounds_to(0.8, 1, horizon=300) < 300, scheme
    ga = shapes.curves["sfl-ga"]
    assert ga.speed[0] > ga.speed[1] > ga.speed[2], "sfl-ga: a smaller client-side model converges faster"


def test_the_twin_covers_the_default_of_every_scheme_and_refuses_what_it_was_not_fitted_on():
    for scheme in SCHEMES:
        assert calibration_for(SFLConfig(scheme=scheme)).curve.scheme == scheme
        assert calibration_for(SFLConfig(scheme=scheme, eval_every=5, device="cpu")).curve.scheme == scheme
    for option, value in [("lr", 1e-6), ("partition", "iid"), ("local_iters", 1), ("gradient_aggregation", 0.0),
                          ("num_clients", 5), ("batch_size", 8), ("dirichlet_alpha", 0.1), ("momentum", 0.0),
                          ("aggregation_weights", "uniform"), ("model_width", 0.5), ("num_train", 1000)]:
        with pytest.raises(ConfigError, match=rf"not calibrated for {option}=.*\(calibrated"):
            calibration_for(SFLConfig(**{option: value}))
    with pytest.raises(ConfigError, match="no calibration for dataset='synthetic', model='mlp'; calibrated: "):
        calibration_for(SFLConfig(dataset="synthetic", model="mlp"))
