"""Configuration: defaults, presets, and errors that name the option and what is allowed."""

import json

import numpy as np
import pytest

from sfl_env.config import DEFAULT_PRESET, PRESETS, ConfigError, EnvConfig, SFLConfig, default_lr


def test_defaults_are_the_shapes_preset():
    config = SFLConfig()
    assert (config.dataset, config.model, config.model_width) == ("shapes", "vgg11", 0.25)
    assert (config.num_clients, config.partition, config.dirichlet_alpha, config.scheme) == (10, "dirichlet", 0.5, "sfl-ga")
    assert DEFAULT_PRESET == "shapes" and PRESETS["shapes"] == {}
    assert EnvConfig.from_kwargs() == EnvConfig.from_kwargs(preset="shapes") == EnvConfig()


def test_presets_set_any_env_option_and_keywords_override_them():
    digits = EnvConfig.from_kwargs(preset="digits")
    assert (digits.system.dataset, digits.system.model, digits.target_accuracy) == ("digits", "cnn", 0.9)
    assert EnvConfig.from_kwargs(preset="digits", target_accuracy=0.5).target_accuracy == 0.5
    assert SFLConfig.from_kwargs(preset="digits").dataset == "digits"  # system options only


def test_lr_none_is_each_schemes_tuned_rate():
    for scheme in ("sfl-ga", "fl"):
        config = SFLConfig(scheme=scheme)
        assert config.lr == default_lr(config.dataset, config.model, scheme)
    assert SFLConfig(lr=0.2).lr == 0.2


def test_a_scheme_missing_from_a_tuned_pair_is_refused_not_given_the_default_rate(monkeypatch):
    import sfl_env.config as config_module

    tuned = {("shapes", "vgg11"): {"sfl-ga": 0.1}}
    monkeypatch.setattr(config_module, "tuned_learning_rates", lambda: tuned)
    assert default_lr("shapes", "vgg11", "sfl-ga") == 0.1
    with pytest.raises(ConfigError, match=r"scheme='fl' has no tuned learning rate for shapes/vgg11 \(tuned: sfl-ga\); "
                                          r"run python benchmarks/tune_lr.py --write"):
        default_lr("shapes", "vgg11", "fl")
    assert default_lr("synthetic", "mlp", "fl") == config_module.DEFAULT_LR  # a pair never tuned
    assert SFLConfig(scheme="fl", lr=0.3).lr == 0.3  # an explicit rate needs no table


def test_every_shipped_pair_has_a_rate_for_every_scheme():
    from sfl_env.config import tuned_learning_rates
    from sfl_env.schemes import SCHEMES

    for pair, rates in tuned_learning_rates().items():
        assert set(rates) == set(SCHEMES), pair


@pytest.mark.parametrize("kwargs, message", [
    ({"dataset": "digits", "image_shape": (1, 16, 16)}, "image_shape=.* applies to the generated datasets"),
    ({"image_shape": (3, 16)}, r"image_shape=\(3, 16\) is invalid; allowed: \(channels, height, width\)"),
    ({"image_shape": (3, 0, 16)}, r"image_shape\[1\]=0 is out of range"),
    # a rendered set of 20,000 images of 3x1024x1024 (250 GB) used to be accepted
    ({"image_shape": (3, 1024, 1024)}, r"image_shape\[1\]=1024 is out of range; allowed: \[1, 64\]"),
])
def test_image_shape_is_checked(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        SFLConfig.from_kwargs(**kwargs)


def test_unknown_option_is_named_with_a_suggestion():
    with pytest.raises(ConfigError, match=r"unknown option 'num_client' \(did you mean 'num_clients'\?\)"):
        SFLConfig.from_kwargs(num_client=5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"scheme": "sl"}, "scheme='sl' is unknown; allowed: 'sfl-ga', 'sfl-v1', 'sfl-v2', 'psl', 'fl'"),
        ({"num_clients": 0}, r"num_clients=0 is out of range; allowed: \[1, 10000\]"),
        ({"num_clients": 2.5}, "num_clients=2.5 is invalid; allowed: an integer"),
        ({"dirichlet_alpha": 0}, r"dirichlet_alpha=0 is out of range; allowed: \(0.0, 1000000.0\]"),
        ({"lr": float("nan")}, "lr=nan is invalid; allowed: a finite number"),
        ({"momentum": 1.0}, r"momentum=1.0 is out of range; allowed: \[0.0, 1.0\)"),
        ({"batch_size": True}, "batch_size=True is invalid; allowed: an integer"),
        ({"dataset": "mnist"}, "dataset='mnist' needs data_dir"),
        ({"device": "tpu"}, "device='tpu' is invalid"),
        ({"model": "gpt2"}, "model='gpt2' is unknown"),
    ],
)
def test_bad_values_name_the_option_and_what_is_allowed(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        SFLConfig.from_kwargs(**kwargs)


def test_presets_are_overridable_data():
    config = SFLConfig.from_kwargs(preset="cifar10", data_dir="somewhere", model_width=0.5)
    assert config.model == "vgg11" and config.model_width == 0.5 and config.momentum == 0.9
    assert set(PRESETS) == {"shapes", "digits", "mnist", "fashion-mnist", "cifar10", "lm"}
    with pytest.raises(ConfigError, match="preset='imagenet' is unknown"):
        SFLConfig.from_kwargs(preset="imagenet")


def test_config_round_trips_through_a_dict():
    config = SFLConfig.from_kwargs(num_clients=3, lr=0.1)
    assert SFLConfig.from_kwargs(**config.to_dict()) == config


@pytest.mark.parametrize("kwargs, message", [
    # infinite values used to pass the range checks and fail at reset or give NaN rewards
    ({"lr": float("inf")}, "lr=inf is invalid; allowed: a finite number"),
    ({"weight_decay": float("inf")}, "weight_decay=inf is invalid; allowed: a finite number"),
    ({"dirichlet_alpha": float("inf")}, "dirichlet_alpha=inf is invalid; allowed: a finite number"),
    ({"privacy_penalty": float("inf")}, "privacy_penalty=inf is invalid; allowed: a finite number"),
    # denormal or physically meaningless radio and CPU values used to give NaN or a ZeroDivisionError
    ({"server_cpu_ghz": 5e-324}, r"server_cpu_ghz=5e-324 is out of range; allowed: \[0.001, 1000000000.0\]"),
    ({"bandwidth_mhz": 1e-310}, r"bandwidth_mhz=1e-310 is out of range; allowed: \[0.001, 1000000.0\]"),
    ({"downlink_bandwidth_mhz": 5e-324}, "downlink_bandwidth_mhz=5e-324 is out of range"),
    ({"distance_km": (1e-300, 1e-300)}, r"distance_km\[0\]=1e-300 is out of range; allowed: \[0.001, 1000.0\]"),
    ({"time_budget_s": 5e-324}, "time_budget_s=5e-324 is a denormal number"),
    # the device must be a string
    ({"device": 0}, "device=0 is invalid; allowed: 'cpu', 'cuda' or 'cuda:N'"),
    ({"device": None}, "device=None is invalid; allowed: 'cpu', 'cuda' or 'cuda:N'"),
])
def test_non_finite_denormal_and_mistyped_values_are_refused_naming_the_option(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        EnvConfig.from_kwargs(**kwargs)


def test_numpy_integers_are_integers_and_numpy_scalars_become_python_numbers():
    config = EnvConfig.from_kwargs(num_clients=np.int64(4), local_iters=np.int32(2), lr=np.float32(0.5),
                                   distance_km=(np.float64(0.1), np.float64(0.2)))
    assert config.system.num_clients == 4 and type(config.system.num_clients) is int
    assert type(config.system.lr) is float and type(config.wireless.distance_km[0]) is float
    json.dumps(config.to_kwargs())  # a run's config.json must serialise
    with pytest.raises(ConfigError, match="num_clients=True is invalid; allowed: an integer"):
        EnvConfig.from_kwargs(num_clients=True)
    with pytest.raises(ConfigError, match="num_clients=np.True_ is invalid|num_clients=True is invalid"):
        EnvConfig.from_kwargs(num_clients=np.bool_(True))
