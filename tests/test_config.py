"""Configuration: defaults, presets, and errors that name the option and what is allowed."""

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


@pytest.mark.parametrize("kwargs, message", [
    ({"dataset": "digits", "image_shape": (1, 16, 16)}, "image_shape=.* applies to the generated datasets"),
    ({"image_shape": (3, 16)}, r"image_shape=\(3, 16\) is invalid; allowed: \(channels, height, width\)"),
    ({"image_shape": (3, 0, 16)}, r"image_shape\[1\]=0 is out of range"),
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
        ({"dirichlet_alpha": 0}, r"dirichlet_alpha=0 is out of range; allowed: \(0.0, inf\]"),
        ({"lr": float("nan")}, "lr=nan is invalid; allowed: a number"),
        ({"momentum": 1.0}, r"momentum=1.0 is out of range; allowed: \[0.0, 1.0\)"),
        ({"batch_size": True}, "batch_size=True is invalid; allowed: an integer"),
        ({"dataset": "mnist"}, "dataset='mnist' needs data_dir"),
        ({"device": "tpu"}, "device='tpu' is invalid"),
        ({"model": "gpt"}, "model='gpt' is unknown"),
    ],
)
def test_bad_values_name_the_option_and_what_is_allowed(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        SFLConfig.from_kwargs(**kwargs)


def test_presets_are_overridable_data():
    config = SFLConfig.from_kwargs(preset="cifar10", data_dir="somewhere", model_width=0.5)
    assert config.model == "vgg11" and config.model_width == 0.5 and config.momentum == 0.9
    assert set(PRESETS) == {"shapes", "digits", "mnist", "fashion-mnist", "cifar10"}
    with pytest.raises(ConfigError, match="preset='imagenet' is unknown"):
        SFLConfig.from_kwargs(preset="imagenet")


def test_config_round_trips_through_a_dict():
    config = SFLConfig.from_kwargs(num_clients=3, lr=0.1)
    assert SFLConfig.from_kwargs(**config.to_dict()) == config
