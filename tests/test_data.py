"""Tests for the sfl_env.data package: dataset loaders and file formats, client partitions, the client sampler."""

import gzip
import math
import os
import pickle
import shlex
import struct

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import sfl_env.data.datasets as datasets_module
from sfl_env.data import (
    DATASETS,
    PARTITIONS,
    ClientSampler,
    ConfigError,
    Dataset,
    DatasetError,
    load_dataset,
    partition,
)

IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
CIFAR_TRAIN_SIZES = (3, 2, 4, 1, 2)
CIFAR_TEST_SIZE = 5


# --------------------------------------------------------------------------------------------------
# Helpers: writing the standard file formats
# --------------------------------------------------------------------------------------------------


def write_file(path, payload: bytes, gz: bool = False):
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        payload = gzip.compress(payload, compresslevel=1)
    path.write_bytes(payload)
    return path


def idx_images(images: np.ndarray, magic: int = 2051, header: tuple[int, int, int] | None = None) -> bytes:
    n, rows, cols = header or images.shape
    return struct.pack(">4i", magic, n, rows, cols) + images.astype(np.uint8).tobytes()


def idx_labels(labels: np.ndarray, magic: int = 2049, count: int | None = None) -> bytes:
    return struct.pack(">2i", magic, len(labels) if count is None else count) + labels.astype(np.uint8).tobytes()


def write_mnist(folder, x_train, y_train, x_test, y_test, gz: bool = False) -> dict:
    """Writes the four IDX files; returns their paths by base name."""
    payloads = (idx_images(x_train), idx_labels(y_train), idx_images(x_test), idx_labels(y_test))
    return {name: write_file(folder / name, payload, gz) for name, payload in zip(IDX_NAMES, payloads)}


def random_mnist(rng, num_train=20, num_test=7, size=28):
    return (
        rng.integers(0, 256, (num_train, size, size), dtype=np.uint8),
        rng.integers(0, 10, num_train),
        rng.integers(0, 256, (num_test, size, size), dtype=np.uint8),
        rng.integers(0, 10, num_test),
    )


def expected_normalised(raw_train: np.ndarray, raw: np.ndarray, scale: float) -> np.ndarray:
    """(N, C, H, W) pixels standardised per channel with the population statistics of raw_train."""
    train = raw_train.astype(np.float64) / scale
    mean = train.mean(axis=(0, 2, 3), keepdims=True)
    std = train.std(axis=(0, 2, 3), keepdims=True)
    return (raw.astype(np.float64) / scale - mean) / std


def random_cifar(rng, sizes):
    return [(rng.integers(0, 256, (n, 3072), dtype=np.uint8), rng.integers(0, 10, n)) for n in sizes]


def write_cifar_binary(folder, batches):
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    for name, (pixels, labels) in zip(names, batches):
        records = np.concatenate([labels.astype(np.uint8)[:, None], pixels], axis=1)
        write_file(folder / name, records.tobytes())


def write_cifar_python(folder, batches, protocol=4, data_as_list=False, str_keys=False):
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name, (pixels, labels) in zip(names, batches):
        data = pixels.tolist() if data_as_list else pixels
        keys = ("data", "labels") if str_keys else (b"data", b"labels")
        batch = {keys[0]: data, keys[1]: [int(v) for v in labels], b"batch_label": b"batch"}
        write_file(folder / name, pickle.dumps(batch, protocol=protocol))


def label_entropy(labels: np.ndarray) -> float:
    p = np.bincount(labels) / len(labels)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


# --------------------------------------------------------------------------------------------------
# digits (the bundled tiny preset) and synthetic
# --------------------------------------------------------------------------------------------------


def test_digits_shapes_dtypes_and_normalisation():
    data = load_dataset("digits")
    assert isinstance(data, Dataset)
    assert data.name == "digits" and data.num_classes == 10 and data.input_shape == (1, 8, 8)
    assert data.x_train.dtype == torch.float32 and data.x_test.dtype == torch.float32
    assert data.y_train.dtype == torch.int64 and data.y_test.dtype == torch.int64
    assert data.x_train.shape[1:] == (1, 8, 8) and data.x_test.shape[1:] == (1, 8, 8)
    assert len(data.x_train) == len(data.y_train) and len(data.x_test) == len(data.y_test)
    assert len(data.y_train) + len(data.y_test) == 1797
    assert abs(data.x_train.mean().item()) < 1e-4
    assert abs(data.x_train.std(unbiased=False).item() - 1.0) < 1e-4
    assert abs(data.x_test.mean().item()) < 0.1  # same constants on the test split
    assert set(data.y_train.unique().tolist()) == set(range(10))


def test_digits_test_split_is_stratified_fixed_and_independent_of_seed():
    a = load_dataset("digits", seed=0)
    datasets_module._digits_arrays.cache_clear()  # build the split again rather than reuse the cached one
    b = load_dataset("digits", seed=123)
    assert torch.equal(a.x_test, b.x_test) and torch.equal(a.y_test, b.y_test)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_train, b.y_train)
    test_counts = np.bincount(a.y_test.numpy(), minlength=10)
    total_counts = test_counts + np.bincount(a.y_train.numpy(), minlength=10)
    assert np.all(np.abs(test_counts - 0.2 * total_counts) <= 0.5)  # round(0.2 * n_c) of every class


def test_digits_num_train_subset_is_seeded_and_drawn_from_the_train_split():
    full = load_dataset("digits")
    sub = load_dataset("digits", seed=1, num_train=100, num_test=50)
    again = load_dataset("digits", seed=1, num_train=100, num_test=50)
    other = load_dataset("digits", seed=2, num_train=100, num_test=50)
    assert sub.x_train.shape == (100, 1, 8, 8) and sub.y_train.shape == (100,) and len(sub.y_test) == 50
    assert torch.equal(sub.x_train, again.x_train) and torch.equal(sub.y_test, again.y_test)
    assert not torch.equal(sub.y_train, other.y_train)
    # every subset row is a row of the full train split, with the same label
    flat_full, flat_sub = full.x_train.flatten(1), sub.x_train.flatten(1)
    matches = (flat_sub[:, None, :] == flat_full[None, :, :]).all(dim=2)
    assert matches.any(dim=1).all()
    first_match = matches.int().argmax(dim=1)
    assert torch.equal(full.y_train[first_match], sub.y_train)


@pytest.mark.parametrize("kwargs, match", [
    ({"num_train": 5000}, "num_train=5000 is larger than the 1438"),
    ({"num_test": 360}, "num_test=360 is larger than the 359"),
    ({"num_train": 0}, "num_train must be a positive int"),
    ({"num_test": -3}, "num_test must be a positive int"),
    ({"seed": -1}, "seed must be a non-negative int"),
])
def test_digits_rejects_bad_sizes(kwargs, match):
    with pytest.raises(DatasetError, match=match):
        load_dataset("digits", **kwargs)


def test_returned_tensors_are_owned_by_the_caller():
    first = load_dataset("digits")
    original = first.x_train.clone()
    first.x_train.add_(100.0)
    first.y_train.zero_()
    second = load_dataset("digits")
    assert torch.equal(second.x_train, original)
    assert second.y_train.max().item() == 9


def test_synthetic_shapes_balance_and_determinism():
    kwargs = dict(num_train=40, num_test=12, image_shape=(3, 4, 5), num_classes=4)
    a = load_dataset("synthetic", seed=5, **kwargs)
    b = load_dataset("synthetic", seed=5, **kwargs)
    c = load_dataset("synthetic", seed=6, **kwargs)
    assert a.x_train.shape == (40, 3, 4, 5) and a.x_test.shape == (12, 3, 4, 5)
    assert a.input_shape == (3, 4, 5) and a.num_classes == 4
    assert a.x_train.dtype == torch.float32 and a.y_train.dtype == torch.int64
    assert np.bincount(a.y_train.numpy()).tolist() == [10, 10, 10, 10]
    assert np.bincount(a.y_test.numpy()).tolist() == [3, 3, 3, 3]
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.x_train, c.x_train)
    assert a.x_train.mean(dim=(0, 2, 3)).abs().max() < 1e-5


def test_synthetic_defaults_are_learnable_by_a_nearest_centroid_classifier():
    data = load_dataset("synthetic", seed=0)
    assert len(data.y_train) == 2000 and len(data.y_test) == 500 and data.input_shape == (1, 8, 8)
    centroids = torch.stack([data.x_train[data.y_train == k].mean(0) for k in range(10)]).flatten(1)
    predicted = torch.cdist(data.x_test.flatten(1), centroids).argmin(dim=1)
    accuracy = (predicted == data.y_test).float().mean().item()
    assert 0.9 < accuracy


@pytest.mark.parametrize("kwargs, match", [
    ({"image_shape": (8, 8)}, r"image_shape=\(8, 8\) is invalid; allowed: \(channels, height, width\)"),
    ({"image_shape": (1, 0, 8)}, r"image_shape\[1\]=0 is out of range"),
    # the loader once accepted any size the configuration refuses (one check now serves both)
    ({"image_shape": (3, 1024, 1024)}, r"image_shape\[1\]=1024 is out of range; allowed: \[1, 64\]"),
    ({"num_classes": 1}, "num_classes must be an int >= 2"),
    ({"num_train": 0}, "num_train must be a positive int"),
])
def test_synthetic_rejects_bad_options(kwargs, match):
    with pytest.raises(DatasetError, match=match):
        load_dataset("synthetic", **kwargs)


def test_unknown_dataset_lists_the_allowed_names():
    with pytest.raises(DatasetError) as info:
        load_dataset("imagenet")
    message = str(info.value)
    assert "'imagenet'" in message
    assert all(name in message for name in DATASETS)


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "cifar10"])
def test_file_datasets_require_data_dir(name):
    with pytest.raises(DatasetError, match="data_dir is required.*no downloads"):
        load_dataset(name)


# --------------------------------------------------------------------------------------------------
# MNIST / Fashion-MNIST IDX files
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize("name, subdir", [("mnist", ""), ("mnist", "mnist"), ("fashion-mnist", "fashion-mnist")])
def test_idx_round_trip(tmp_path, name, subdir, gz):
    x_train, y_train, x_test, y_test = random_mnist(np.random.default_rng(0))
    write_mnist(tmp_path / subdir, x_train, y_train, x_test, y_test, gz=gz)
    data = load_dataset(name, tmp_path)
    assert data.name == name and data.input_shape == (1, 28, 28) and data.num_classes == 10
    assert data.y_train.tolist() == y_train.tolist() and data.y_test.tolist() == y_test.tolist()
    raw_train, raw_test = x_train[:, None], x_test[:, None]
    np.testing.assert_allclose(data.x_train.numpy(), expected_normalised(raw_train, raw_train, 255.0), atol=1e-5)
    np.testing.assert_allclose(data.x_test.numpy(), expected_normalised(raw_train, raw_test, 255.0), atol=1e-5)


def test_idx_accepts_other_image_sizes_and_subsets(tmp_path):
    x_train, y_train, x_test, y_test = random_mnist(np.random.default_rng(1), num_train=30, num_test=9, size=5)
    write_mnist(tmp_path, x_train, y_train, x_test, y_test, gz=True)
    data = load_dataset("mnist", tmp_path, seed=3, num_train=10, num_test=4)
    assert data.input_shape == (1, 5, 5) and len(data.y_train) == 10 and len(data.y_test) == 4
    with pytest.raises(DatasetError, match="num_train=31 is larger than the 30"):
        load_dataset("mnist", tmp_path, num_train=31)


def test_idx_cache_returns_fresh_tensors_and_notices_rewritten_files(tmp_path):
    rng = np.random.default_rng(2)
    x_train, y_train, x_test, y_test = random_mnist(rng)
    paths = write_mnist(tmp_path, x_train, y_train, x_test, y_test)
    first = load_dataset("mnist", tmp_path)
    first.x_train.zero_()
    second = load_dataset("mnist", tmp_path)
    assert second.x_train.abs().sum() > 0

    new_labels = (y_test + 1) % 10
    labels_path = paths["t10k-labels-idx1-ubyte"]
    labels_path.write_bytes(idx_labels(new_labels))
    stat = labels_path.stat()
    os.utime(labels_path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    assert load_dataset("mnist", tmp_path).y_test.tolist() == new_labels.tolist()


def test_idx_missing_file_names_the_file_and_every_folder_searched(tmp_path):
    x_train, y_train, x_test, y_test = random_mnist(np.random.default_rng(3))
    paths = write_mnist(tmp_path, x_train, y_train, x_test, y_test)
    paths["train-labels-idx1-ubyte"].unlink()
    with pytest.raises(DatasetError) as info:
        load_dataset("mnist", tmp_path)
    message = str(info.value)
    assert "train-labels-idx1-ubyte" in message and "t10k-labels-idx1-ubyte" not in message
    assert f"{tmp_path}," in message and str(tmp_path / "mnist") in message


def test_idx_missing_data_dir_says_so(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetError, match="does not exist") as info:
        load_dataset("fashion-mnist", missing)
    assert str(missing / "fashion-mnist") in str(info.value)


def test_idx_truncated_images_report_expected_and_found_bytes(tmp_path):
    x_train, y_train, x_test, y_test = random_mnist(np.random.default_rng(4))
    paths = write_mnist(tmp_path, x_train, y_train, x_test, y_test)
    images_path = paths["train-images-idx3-ubyte"]
    images_path.write_bytes(struct.pack(">4i", 2051, 60000, 28, 28) + bytes(1000))
    with pytest.raises(DatasetError) as info:
        load_dataset("mnist", tmp_path)
    message = str(info.value)
    assert str(images_path) in message
    assert "expected 47040000 bytes of pixels from header 60000x28x28, found 1000" in message


@pytest.mark.parametrize("target, payload, match", [
    ("train-images-idx3-ubyte", lambda x, y: idx_images(x, magic=2049), "expected IDX magic number 2051 .*found 2049"),
    ("t10k-labels-idx1-ubyte", lambda x, y: idx_labels(y, magic=2051), "expected IDX magic number 2049 .*found 2051"),
    ("train-images-idx3-ubyte", lambda x, y: b"\x00\x00\x08\x03", "expected a 16-byte IDX image header, found 4"),
    ("train-labels-idx1-ubyte", lambda x, y: idx_labels(y, count=len(y) + 3), r"expected 23 bytes of labels.*found 20"),
    ("train-labels-idx1-ubyte", lambda x, y: idx_labels(np.full(len(y), 12)), "expected labels in 0..9, found .* 12"),
])
def test_idx_malformed_files_are_reported(tmp_path, target, payload, match):
    x_train, y_train, x_test, y_test = random_mnist(np.random.default_rng(5))
    paths = write_mnist(tmp_path, x_train, y_train, x_test, y_test)
    data = {"train-images-idx3-ubyte": (x_train, y_train), "train-labels-idx1-ubyte": (x_train, y_train),
            "t10k-labels-idx1-ubyte": (x_test, y_test)}[target]
    paths[target].write_bytes(payload(*data))
    with pytest.raises(DatasetError, match=match) as info:
        load_dataset("mnist", tmp_path)
    assert str(paths[target]) in str(info.value)


def test_idx_image_and_label_count_mismatch(tmp_path):
    x_train, y_train, x_test, y_test = random_mnist(np.random.default_rng(6))
    paths = write_mnist(tmp_path, x_train, y_train[:-1], x_test, y_test)
    with pytest.raises(DatasetError, match="counts disagree") as info:
        load_dataset("mnist", tmp_path)
    message = str(info.value)
    assert str(paths["train-images-idx3-ubyte"]) in message and "20 images" in message
    assert str(paths["train-labels-idx1-ubyte"]) in message and "19 labels" in message


def test_idx_train_and_test_image_sizes_must_agree(tmp_path):
    rng = np.random.default_rng(7)
    x_train, y_train, _, _ = random_mnist(rng, size=28)
    _, _, x_test, y_test = random_mnist(rng, size=14)
    write_mnist(tmp_path, x_train, y_train, x_test, y_test)
    with pytest.raises(DatasetError, match="28x28 .* 14x14"):
        load_dataset("mnist", tmp_path)


@pytest.mark.parametrize("corrupt", [
    lambda good: b"this is not gzip data",
    lambda good: good[: len(good) // 2],
], ids=["garbage", "truncated"])
def test_idx_bad_gzip_names_the_file(tmp_path, corrupt):
    x_train, y_train, x_test, y_test = random_mnist(np.random.default_rng(8))
    paths = write_mnist(tmp_path, x_train, y_train, x_test, y_test, gz=True)
    images_path = paths["t10k-images-idx3-ubyte"]
    images_path.write_bytes(corrupt(images_path.read_bytes()))
    with pytest.raises(DatasetError, match="not a valid gzip file") as info:
        load_dataset("mnist", tmp_path)
    assert str(images_path) in str(info.value)


def test_real_mnist_test_set_round_trip(tmp_path, real_mnist_dir):
    with gzip.open(real_mnist_dir / "t10k-images-idx3-ubyte.gz", "rb") as f:
        raw_images = f.read()
    with gzip.open(real_mnist_dir / "t10k-labels-idx1-ubyte.gz", "rb") as f:
        raw_labels = f.read()
    assert struct.unpack(">4i", raw_images[:16]) == (2051, 10000, 28, 28)
    assert struct.unpack(">2i", raw_labels[:8]) == (2049, 10000)
    images = np.frombuffer(raw_images, np.uint8, offset=16).reshape(10000, 28, 28)
    labels = np.frombuffer(raw_labels, np.uint8, offset=8)
    write_mnist(tmp_path, images[:8000], labels[:8000], images[8000:], labels[8000:], gz=True)

    data = load_dataset("mnist", tmp_path)
    assert len(data.y_train) == 8000 and len(data.y_test) == 2000 and data.input_shape == (1, 28, 28)
    assert data.y_train.tolist() == labels[:8000].tolist() and data.y_test.tolist() == labels[8000:].tolist()
    for part in (data.y_train, data.y_test):
        shares = np.bincount(part.numpy(), minlength=10) / len(part)
        assert shares.min() > 0.07 and shares.max() < 0.14  # roughly balanced digits
    assert 0.10 < images[:8000].mean() / 255 < 0.16  # MNIST's well-known mean intensity (~0.13)
    expected = expected_normalised(images[:8000, None], images[8000:, None], 255.0)
    np.testing.assert_allclose(data.x_test.numpy(), expected, atol=1e-5)


# --------------------------------------------------------------------------------------------------
# CIFAR-10 batches
# --------------------------------------------------------------------------------------------------


def assert_matches_cifar(data, batches):
    train_pixels = np.concatenate([p for p, _ in batches[:-1]]).reshape(-1, 3, 32, 32)
    train_labels = np.concatenate([y for _, y in batches[:-1]])
    test_pixels, test_labels = batches[-1][0].reshape(-1, 3, 32, 32), batches[-1][1]
    assert data.name == "cifar10" and data.input_shape == (3, 32, 32)
    assert data.y_train.tolist() == train_labels.tolist() and data.y_test.tolist() == test_labels.tolist()
    np.testing.assert_allclose(data.x_train.numpy(), expected_normalised(train_pixels, train_pixels, 255.0), atol=1e-5)
    np.testing.assert_allclose(data.x_test.numpy(), expected_normalised(train_pixels, test_pixels, 255.0), atol=1e-5)


@pytest.mark.parametrize("subdir", ["", "cifar10", "cifar-10-batches-bin", "cifar10/cifar-10-batches-bin"])
def test_cifar_binary_round_trip(tmp_path, subdir):
    batches = random_cifar(np.random.default_rng(10), CIFAR_TRAIN_SIZES + (CIFAR_TEST_SIZE,))
    write_cifar_binary(tmp_path / subdir, batches)
    assert_matches_cifar(load_dataset("cifar10", tmp_path), batches)


@pytest.mark.parametrize("protocol, data_as_list, str_keys", [
    (2, False, False), (4, False, False), (5, False, False), (4, True, False), (4, False, True),
])
def test_cifar_python_round_trip(tmp_path, protocol, data_as_list, str_keys):
    batches = random_cifar(np.random.default_rng(11), CIFAR_TRAIN_SIZES + (CIFAR_TEST_SIZE,))
    write_cifar_python(tmp_path / "cifar-10-batches-py", batches, protocol, data_as_list, str_keys)
    assert_matches_cifar(load_dataset("cifar10", tmp_path), batches)


def test_cifar_prefers_the_binary_version(tmp_path):
    rng = np.random.default_rng(12)
    sizes = CIFAR_TRAIN_SIZES + (CIFAR_TEST_SIZE,)
    binary, python = random_cifar(rng, sizes), random_cifar(rng, sizes)
    write_cifar_binary(tmp_path / "cifar-10-batches-bin", binary)
    write_cifar_python(tmp_path / "cifar-10-batches-py", python)
    assert_matches_cifar(load_dataset("cifar10", tmp_path), binary)


def test_cifar_binary_size_must_be_a_multiple_of_a_record(tmp_path):
    batches = random_cifar(np.random.default_rng(13), CIFAR_TRAIN_SIZES + (CIFAR_TEST_SIZE,))
    write_cifar_binary(tmp_path, batches)
    bad = tmp_path / "data_batch_2.bin"
    bad.write_bytes(bad.read_bytes()[:-10])
    with pytest.raises(DatasetError, match=r"multiple of 3073 bytes .*found 6136 bytes") as info:
        load_dataset("cifar10", tmp_path)
    assert str(bad) in str(info.value)


def test_cifar_missing_files_name_both_versions_and_every_folder(tmp_path):
    batches = random_cifar(np.random.default_rng(14), CIFAR_TRAIN_SIZES + (CIFAR_TEST_SIZE,))
    write_cifar_binary(tmp_path, batches)
    (tmp_path / "test_batch.bin").unlink()
    with pytest.raises(DatasetError) as info:
        load_dataset("cifar10", tmp_path)
    message = str(info.value)
    assert "test_batch.bin (binary version)" in message and "data_batch_1" in message
    for folder in ("", "cifar-10-batches-bin", "cifar-10-batches-py", "cifar10", "cifar10/cifar-10-batches-py"):
        assert str(tmp_path / folder) in message


class RunsShellCommand:
    """Unpickles into os.system(command)."""

    def __init__(self, sentinel):
        self.command = f"touch {shlex.quote(str(sentinel))}"

    def __reduce__(self):
        return (os.system, (self.command,))


class RunsPython:
    """Unpickles into exec(source)."""

    def __init__(self, sentinel):
        self.source = f"open({str(sentinel)!r}, 'w').close()"

    def __reduce__(self):
        return (exec, (self.source,))


@pytest.mark.parametrize("payload", [RunsShellCommand, RunsPython], ids=["os.system", "exec"])
def test_cifar_pickle_with_a_foreign_global_is_refused_without_running_it(tmp_path, payload):
    # The payload is live: plain pickle would run it.
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(payload(probe)))
    assert probe.exists()

    folder = tmp_path / "cifar-10-batches-py"
    write_cifar_python(folder, random_cifar(np.random.default_rng(15), CIFAR_TRAIN_SIZES + (CIFAR_TEST_SIZE,)))
    sentinel = tmp_path / "sentinel"
    evil = folder / "data_batch_1"
    evil.write_bytes(pickle.dumps({b"data": payload(sentinel), b"labels": [0]}))
    with pytest.raises(DatasetError, match="refusing to unpickle global") as info:
        load_dataset("cifar10", tmp_path)
    message = str(info.value)
    assert str(evil) in message
    assert ("system" in message) if payload is RunsShellCommand else ("builtins.exec" in message)
    assert not sentinel.exists()


@pytest.mark.parametrize("content, match", [
    (b"definitely not a pickle", "not a readable CIFAR-10 python batch"),
    (pickle.dumps([1, 2, 3]), "expected a pickled dict, found list"),
    (pickle.dumps({b"labels": [0]}), "expected key b'data'"),
    (pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}), r"shape \(N, 3072\)"),
    (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}), "expected 2 integer labels"),
    (pickle.dumps({b"data": np.zeros((1, 3072), np.int64) + 300, b"labels": [0]}), "pixel values in 0..255"),
    (pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": [10]}), "expected labels in 0..9"),
])
def test_cifar_malformed_python_batches_are_reported(tmp_path, content, match):
    write_cifar_python(tmp_path, random_cifar(np.random.default_rng(16), CIFAR_TRAIN_SIZES + (CIFAR_TEST_SIZE,)))
    bad = tmp_path / "test_batch"
    bad.write_bytes(content)
    with pytest.raises(DatasetError, match=match) as info:
        load_dataset("cifar10", tmp_path)
    assert str(bad) in str(info.value)


# --------------------------------------------------------------------------------------------------
# Partitions
# --------------------------------------------------------------------------------------------------


def balanced_labels(num_classes=10, per_class=100, seed=0):
    return np.random.default_rng(seed).permutation(np.repeat(np.arange(num_classes), per_class))


def assert_is_partition(parts, n, num_clients):
    assert len(parts) == num_clients
    for part in parts:
        assert part.dtype == np.int64 and part.ndim == 1 and len(part) > 0
        assert np.all(np.diff(part) > 0)  # sorted, no repeats
    joined = np.concatenate(parts)
    assert len(joined) == n and np.array_equal(np.sort(joined), np.arange(n))  # disjoint and complete


@pytest.mark.parametrize("method", PARTITIONS)
def test_partition_is_disjoint_complete_and_non_empty(method):
    labels = balanced_labels()
    parts = partition(labels, 7, method, rng=np.random.default_rng(0))
    assert_is_partition(parts, len(labels), 7)


@pytest.mark.parametrize("method", PARTITIONS)
def test_partition_is_reproducible_from_the_rng_seed(method):
    labels = balanced_labels()
    a = partition(labels, 5, method, rng=np.random.default_rng(42))
    b = partition(labels, 5, method, rng=np.random.default_rng(42))
    c = partition(labels, 5, method, rng=np.random.default_rng(43))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_iid_partition_is_near_equal():
    parts = partition(balanced_labels(), 7, "iid", rng=np.random.default_rng(0))
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1


def test_dirichlet_small_alpha_is_more_skewed_than_large_alpha():
    labels = balanced_labels()

    def mean_entropy(alpha):
        parts = partition(labels, 10, "dirichlet", alpha=alpha, rng=np.random.default_rng(0))
        return np.mean([label_entropy(labels[p]) for p in parts])

    skewed, uniform = mean_entropy(0.1), mean_entropy(100.0)
    assert uniform > 0.95 * math.log(10)
    assert skewed < uniform - 0.8


def test_dirichlet_respects_min_size():
    labels = balanced_labels()
    parts = partition(labels, 10, "dirichlet", alpha=0.3, min_size=40, rng=np.random.default_rng(1))
    assert_is_partition(parts, len(labels), 10)
    assert min(len(p) for p in parts) >= 40


def test_dirichlet_gives_up_with_a_clear_error():
    labels = balanced_labels(per_class=50)
    with pytest.raises(ValueError, match="no draw in 1000 .*50 clients.*raise alpha"):
        partition(labels, 50, "dirichlet", alpha=1e-3, rng=np.random.default_rng(0))


def test_shards_give_each_client_about_shards_per_client_labels():
    labels = balanced_labels()
    parts = partition(labels, 10, "shards", shards_per_client=2, rng=np.random.default_rng(0))
    assert [len(p) for p in parts] == [100] * 10
    assert all(len(np.unique(labels[p])) <= 2 for p in parts)

    uneven = np.random.default_rng(1).integers(0, 10, 997)
    parts = partition(uneven, 10, "shards", shards_per_client=2, rng=np.random.default_rng(0))
    assert_is_partition(parts, 997, 10)
    assert all(len(np.unique(uneven[p])) <= 4 for p in parts)  # a shard spans at most two labels here


@pytest.mark.parametrize("labels, kwargs, match", [
    (None, {"method": "random"}, "unknown partition method 'random'; allowed: dirichlet, iid, shards"),
    (None, {"num_clients": 0}, r"num_clients must be an int in 1\.\.1000 .*got 0"),
    (None, {"num_clients": 1001}, r"num_clients must be an int in 1\.\.1000 .*got 1001"),
    (None, {"num_clients": 2.5}, "num_clients must be an int .*got 2.5"),
    (None, {"method": "dirichlet", "alpha": 0}, "alpha must be a finite number > 0, got 0"),
    (None, {"method": "dirichlet", "alpha": -1.0}, r"alpha must be a finite number > 0, got -1\.0"),
    (None, {"method": "dirichlet", "alpha": math.inf}, "alpha must be a finite number > 0, got inf"),
    (None, {"method": "dirichlet", "min_size": 0}, r"min_size must be an int in 1\.\.250 .*got 0"),
    (None, {"method": "dirichlet", "min_size": 251}, r"min_size must be an int in 1\.\.250 .*got 251"),
    (None, {"method": "shards", "shards_per_client": 0}, r"shards_per_client must be an int in 1\.\.250 .*got 0"),
    (None, {"method": "shards", "shards_per_client": 251}, r"shards_per_client must be an int in 1\.\.250 .*got 251"),
    (np.zeros((10, 2), np.int64), {}, "labels must be a non-empty 1-D integer array"),
    (np.zeros(10, np.float32), {}, "labels must be a non-empty 1-D integer array"),
    (np.zeros(0, np.int64), {}, "labels must be a non-empty 1-D integer array"),
])
def test_partition_validation(labels, kwargs, match):
    labels = balanced_labels() if labels is None else labels
    kwargs = {"num_clients": 4, **kwargs}
    with pytest.raises(ValueError, match=match):
        partition(labels, rng=np.random.default_rng(0), **kwargs)


def test_partition_needs_a_numpy_generator():
    with pytest.raises(ConfigError, match="rng must be a numpy.random.Generator"):
        partition(balanced_labels(), 4, rng=0)


@settings(derandomize=True, max_examples=60, deadline=None)
@given(
    data=st.data(),
    n=st.integers(1, 300),
    num_classes=st.integers(1, 6),
    method=st.sampled_from(PARTITIONS),
    seed=st.integers(0, 2**16),
)
def test_partition_invariants_hold_for_any_labels(data, n, num_classes, method, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, n)
    max_clients = max(1, n // 20) if method == "dirichlet" else n
    num_clients = data.draw(st.integers(1, max_clients))
    shards = data.draw(st.integers(1, n // num_clients))
    parts = partition(labels, num_clients, method, alpha=50.0, shards_per_client=shards, rng=rng)
    assert_is_partition(parts, n, num_clients)


# --------------------------------------------------------------------------------------------------
# ClientSampler
# --------------------------------------------------------------------------------------------------


def make_clients(sizes=(5, 12, 30, 3), seed=0):
    parts = np.array_split(np.random.default_rng(seed).permutation(sum(sizes)), np.cumsum(sizes)[:-1])
    return [np.sort(p) for p in parts]


def draw(sampler, num_batches):
    return torch.stack([sampler.next_batch() for _ in range(num_batches)])  # (T, K, b)


def test_sampler_shapes_and_rows_stay_within_each_client():
    clients = make_clients()
    sampler = ClientSampler(clients, 8, torch.Generator().manual_seed(0))
    assert sampler.num_clients == 4 and sampler.batch_size == 8
    assert sampler.client_sizes.tolist() == [5, 12, 30, 3]
    batches = draw(sampler, 20)
    assert batches.shape == (20, 4, 8) and batches.dtype == torch.int64
    for k, indices in enumerate(clients):
        assert set(batches[:, k].flatten().tolist()) == set(indices.tolist())  # only and all of its own


def test_sampler_walks_each_client_through_reshuffled_epochs():
    clients = make_clients()
    batch_size, num_batches = 8, 300  # 2400 draws per client: several internal refills
    batches = draw(ClientSampler(clients, batch_size, torch.Generator().manual_seed(1)), num_batches)
    for k, indices in enumerate(clients):
        stream = batches[:, k].flatten().numpy()
        n = len(indices)
        for start in range(0, len(stream) - n + 1, n):  # every full epoch is a permutation of the client
            assert np.array_equal(np.sort(stream[start : start + n]), indices)
        counts = np.bincount(stream, minlength=sum(len(c) for c in clients))[indices]
        assert counts.max() - counts.min() <= 1


def test_sampler_tiny_client_spans_several_epochs_in_one_batch():
    sampler = ClientSampler([np.array([7, 3, 11]), np.arange(20, 40)], 8, torch.Generator().manual_seed(2))
    batch = sampler.next_batch()
    assert batch.shape == (2, 8)
    counts = np.bincount(batch[0].numpy(), minlength=12)[[3, 7, 11]]
    assert sorted(counts.tolist()) == [2, 3, 3]
    assert np.array_equal(np.sort(batch[0, :3].numpy()), [3, 7, 11])


def test_sampler_batch_larger_than_the_draw_ahead_block():
    clients = make_clients(sizes=(700, 1300))
    batches = draw(ClientSampler(clients, 1500, torch.Generator().manual_seed(3)), 3)
    stream = batches[:, 0].flatten().numpy()
    for start in range(0, len(stream) - 700 + 1, 700):
        assert np.array_equal(np.sort(stream[start : start + 700]), clients[0])


def test_sampler_is_reproducible_from_the_generator_seed():
    clients = make_clients()
    a = draw(ClientSampler(clients, 4, torch.Generator().manual_seed(9)), 50)
    b = draw(ClientSampler(clients, 4, torch.Generator().manual_seed(9)), 50)
    c = draw(ClientSampler(clients, 4, torch.Generator().manual_seed(10)), 50)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("clients, batch_size, generator, error, match", [
    ([np.arange(3)], 0, torch.Generator(), ValueError, "batch_size must be a positive int, got 0"),
    ([np.arange(3)], 2.0, torch.Generator(), ValueError, "batch_size must be a positive int"),
    ([], 2, torch.Generator(), ValueError, "at least one client"),
    ([np.arange(3), np.array([], np.int64)], 2, torch.Generator(), ValueError, r"client_indices\[1\] must be"),
    ([np.array([0.5, 1.5])], 2, torch.Generator(), ValueError, r"client_indices\[0\] must be a non-empty 1-D integer"),
    ([np.arange(3)], 2, np.random.default_rng(0), ConfigError, "generator must be a torch.Generator"),
])
def test_sampler_validation(clients, batch_size, generator, error, match):
    with pytest.raises(error, match=match):
        ClientSampler(clients, batch_size, generator)


# ---------------------------------------------------------------- shapes (the default preset's data)


def test_shapes_is_rendered_the_same_from_the_same_seed_with_balanced_classes():
    from sfl_env.data.shapes import SHAPE_NAMES, render_shapes

    a, labels = render_shapes(50, (3, 16, 16), np.random.default_rng(7))
    b, _ = render_shapes(50, (3, 16, 16), np.random.default_rng(7))
    assert a.dtype == np.uint8 and a.shape == (50, 3, 16, 16) and np.array_equal(a, b)
    assert np.bincount(labels, minlength=len(SHAPE_NAMES)).tolist() == [5] * 10
    grey, _ = render_shapes(10, (1, 24, 20), np.random.default_rng(7))
    assert grey.shape == (10, 1, 24, 20)


def test_shapes_classes_differ_in_outline_not_in_colour():
    """Per-class mean colours are alike (colour is a nuisance), per-class masks are not."""
    from sfl_env.data.shapes import render_shapes

    images, labels = render_shapes(2000, (3, 16, 16), np.random.default_rng(0))
    mean_colour = np.array([images[labels == c].mean((0, 2, 3)) for c in range(10)])
    assert np.ptp(mean_colour, axis=0).max() < 12  # of 255: no class has its own colour


def test_shapes_loader_and_dataset_shape_agree_without_loading():
    from sfl_env.config import SFLConfig
    from sfl_env.data import dataset_shape, load_config_dataset

    config = SFLConfig(num_train=100, num_test=50)
    data = load_config_dataset(config)
    assert (data.input_shape, data.num_classes) == dataset_shape(config) == ((3, 16, 16), 10)
    assert len(data.y_train) == 100 and len(data.y_test) == 50
    assert dataset_shape(SFLConfig(dataset="digits", model="cnn")) == ((1, 8, 8), 10)


def test_image_shape_shapes_the_synthetic_set_and_is_refused_elsewhere():
    from sfl_env.config import SFLConfig
    from sfl_env.data import load_config_dataset

    data = load_config_dataset(SFLConfig(dataset="synthetic", image_shape=(3, 12, 12), model="cnn"))
    assert data.input_shape == (3, 12, 12)
    with pytest.raises(DatasetError, match="image_shape=.* applies to the generated datasets"):
        load_dataset("digits", image_shape=(1, 8, 8))


def test_a_dataset_without_a_loader_is_refused_not_read_as_digits(monkeypatch):
    # Both loaders once ended in "else: digits", so a name added to DATASETS silently became digits.
    import sfl_env.data.datasets as datasets
    from sfl_env.config import SFLConfig

    monkeypatch.setattr(datasets, "DATASETS", (*datasets.DATASETS, "svhn"))
    with pytest.raises(DatasetError, match="dataset 'svhn' is listed in DATASETS but has no loader"):
        datasets.load_dataset("svhn")
    config = SFLConfig(dataset="digits", model="cnn")
    object.__setattr__(config, "dataset", "svhn")
    with pytest.raises(DatasetError, match="dataset 'svhn' is listed in DATASETS but check_fits_data knows no sizes"):
        datasets.check_fits_data(config)


def test_shapes_refuses_a_shape_it_cannot_render_in_the_config_too():
    from sfl_env.config import SFLConfig
    from sfl_env.errors import ConfigError

    with pytest.raises(ConfigError, match=r"image_shape=\(3, 4, 4\) is invalid for shapes"):
        SFLConfig(image_shape=(3, 4, 4))
    with pytest.raises(DatasetError, match=r"image_shape=\(2, 16, 16\) is invalid for shapes"):
        load_dataset("shapes", image_shape=(2, 16, 16))
