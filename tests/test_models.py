"""The model zoo and its per-block profile."""

import numpy as np
import pytest
import torch

from sfl_env.config import LANGUAGE_MODELS
from sfl_env.models import MODELS, build_model
from sfl_env.profiling import profile_model

SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32)]
IMAGE_MODELS = [name for name in MODELS if name not in LANGUAGE_MODELS]


def small(name, shape=(1, 8, 8), seed=0):
    if name in LANGUAGE_MODELS:  # 8-token windows of bytes
        return build_model(name, (8,), 256, width=0.125, depth=2, heads=2, seed=seed)
    width = 0.125 if name in ("vgg11", "resnet18") else 1.0
    return build_model(name, shape, 10, width=width, seed=seed)


def example(model, batch):
    if model.is_language_model:
        return torch.randint(0, model.num_classes, (batch, *model.input_shape), generator=torch.Generator().manual_seed(0))
    return torch.randn(batch, *model.input_shape, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_forward_shape_and_cuts(name, shape):
    model = small(name, shape)
    assert model(torch.zeros(3, *shape)).shape == (3, 10)
    assert model.cuts == tuple(range(1, model.num_blocks))
    assert len(model.cut_names) == len(model.cuts)


@pytest.mark.parametrize("name", MODELS)
def test_forward_range_composes_at_every_cut(name):
    model = small(name).eval()
    x = example(model, 4)
    full = model(x)
    for cut in model.cuts:
        split = model.forward_range(model.forward_range(x, 0, cut), cut, model.num_blocks)
        assert torch.equal(split, full)


def test_same_seed_same_weights_different_seed_different():
    a, b, c = small("cnn", seed=1), small("cnn", seed=1), small("cnn", seed=2)
    for pa, pb, pc in zip(a.parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb)
    assert not all(torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))


def test_building_a_model_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    small("vgg11")
    assert torch.equal(torch.rand(3), expected)


def test_resnet_cuts_fall_between_stages_only():
    model = small("resnet18")
    assert model.block_names == ("stem", "stage1", "stage2", "stage3", "stage4", "head")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"name": "alexnet"}, "model='alexnet' is unknown; allowed: cnn, mlp"),
        ({"width": 0}, "width=0 is out of range"),
        ({"input_shape": (8, 8)}, "expected (channels, height, width)"),
        ({"num_classes": 1}, "num_classes=1 is invalid"),
    ],
)
def test_bad_arguments_name_the_option(kwargs, message):
    args = {"name": "cnn", "input_shape": (1, 8, 8), "num_classes": 10} | kwargs
    with pytest.raises(ValueError) as err:
        build_model(args.pop("name"), args.pop("input_shape"), args.pop("num_classes"), **args)
    assert message in str(err.value)


def test_bad_cut_names_the_allowed_range():
    with pytest.raises(ValueError, match=r"cut=4 is not a candidate cut of model 'cnn'; allowed: integers 1\.\.3"):
        small("cnn").check_cut(4)


def test_cnn_profile_matches_the_conv_arithmetic():
    profile = profile_model(small("cnn"))
    # conv1: 16 filters of 1x3x3 on an 8x8 map, 2 FLOPs per multiply-add.
    conv1 = 2 * 16 * 9 * 64
    conv2 = 2 * 32 * 16 * 9 * 64
    conv3 = 2 * 64 * 32 * 9 * 16
    fc = 2 * (256 * 64 + 64 * 10)
    np.testing.assert_array_equal(profile.forward_flops, [conv1, conv2, conv3, fc])
    # Block 0 has no input gradient to compute; the others compute weight and input gradients.
    np.testing.assert_array_equal(profile.backward_flops, [conv1, 2 * conv2, 2 * conv3, 2 * fc])
    np.testing.assert_array_equal(profile.smashed_elements, [64, 16 * 64, 32 * 16, 64 * 4])
    np.testing.assert_array_equal(profile.param_bits / 32, [160, 4640, 18496, 256 * 64 + 64 + 650])


@pytest.mark.parametrize("name", MODELS)
def test_profile_invariants(name):
    model = small(name)
    profile = profile_model(model)
    total = profile.forward_flops.sum() + profile.backward_flops.sum()
    bits = [profile.client_model_bits(cut) for cut in model.cuts]
    assert all(b1 < b2 for b1, b2 in zip(bits, bits[1:])), "q(l) grows with the cut"
    n_params = sum(p.numel() for p in model.parameters())
    n_stats = sum(b.numel() for b in model.buffers() if b.is_floating_point())
    assert profile.model_bits == 32 * (n_params + n_stats)
    for cut in model.cuts:
        client = profile.client_forward_flops(cut) + profile.client_backward_flops(cut)
        assert client + profile.server_flops(cut) == pytest.approx(total)
        assert profile.smashed_bits(cut, 7) == 7 * 32 * profile.smashed_elements[cut]


def test_profiling_does_not_touch_batchnorm_statistics():
    model = small("vgg11")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    profile_model(model, bits_per_value=16)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_a_cached_profile_cannot_be_changed_through_its_arrays():
    profile = profile_model(build_model("cnn", (1, 8, 8), 10, seed=0))
    assert profile_model(build_model("cnn", (1, 8, 8), 10, seed=1)) is profile  # shared by the architecture
    for name in ("forward_flops", "backward_flops", "param_bits", "smashed_elements"):
        with pytest.raises(ValueError, match="read-only"):
            getattr(profile, name)[0] = 0.0
