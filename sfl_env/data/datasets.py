"""Datasets for split federated learning, loaded offline as normalised train/test tensors.

The default dataset, ``shapes``, is rendered offline (:mod:`sfl_env.data.shapes`); ``digits`` is the
8x8 handwritten digits set bundled with scikit-learn; MNIST, Fashion-MNIST and CIFAR-10 are read from
their standard files in a local folder (nothing is ever downloaded; :mod:`sfl_env.data.formats` reads
the files); ``synthetic`` is generated from a seed. The text datasets (``python-stdlib``, ``text``) are
byte windows for next-token prediction (:mod:`sfl_env.data.text`).

``load_dataset`` checks its arguments, takes the raw arrays from an in-process cache (the digits split
and the shapes images are built once; a file dataset is parsed again only when one of its files changed) and returns a
:class:`Dataset` of freshly allocated tensors, standardised per channel with the statistics of the
full training split, optionally a seeded subset of it.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..config import DATASETS, DEFAULT_CONTEXT_LENGTH, FILE_DATASETS, TEXT_DATASETS, SFLConfig, check_image_shape
from ..errors import ConfigError, DatasetError, unknown_name
from .formats import (
    locate_cifar_files,
    locate_idx_files,
    read_cifar_split,
    read_idx_split,
)
from .shapes import render_shapes
from .text import VOCABULARY, Corpus, load_corpus

_DIGITS_TEST_FRACTION = 0.2
_DIGITS_SPLIT_SEED = 1797  # fixed: the digits test set never depends on the caller's seed
_SYNTHETIC_NUM_TRAIN = 2000
_SYNTHETIC_NUM_TEST = 500
_SYNTHETIC_MAX_SAMPLES = 1_000_000  # per split: 256 MB of 8x8 float32 images
_SYNTHETIC_NOISE_STD = 2.0  # prototypes are N(0, 1) per pixel
_SHAPES_NUM_TRAIN = 20_000
_SHAPES_NUM_TEST = 2_000
_SHAPES_SEED = 2501  # fixed: the rendered set never depends on the caller's seed
DEFAULT_IMAGE_SHAPES: dict[str, tuple[int, int, int]] = {"synthetic": (1, 8, 8), "shapes": (3, 16, 16)}


@dataclass(frozen=True, eq=False)
class Dataset:
    """A normalised train/test split.

    Images are float32 (N, C, H, W), standardised per channel with the statistics of the full
    training split; labels are int64 (N,). Text is int64 (N, T) byte windows with int64 (N, T) next-byte
    targets and ``num_classes`` the vocabulary. Every ``load_dataset`` call returns freshly allocated
    tensors, so the caller owns them and may modify them without affecting later loads.
    """

    name: str
    x_train: torch.Tensor = field(repr=False)
    y_train: torch.Tensor = field(repr=False)
    x_test: torch.Tensor = field(repr=False)
    y_test: torch.Tensor = field(repr=False)
    num_classes: int
    # What a partition splits by, per training sample: the label (None), or a text window's source file.
    train_groups: np.ndarray | None = field(default=None, repr=False)
    metadata: dict = field(default_factory=dict)  # where the data came from (a corpus: version, hash)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(v) for v in self.x_train.shape[1:])

    @property
    def partition_labels(self) -> np.ndarray:
        """The per-sample labels :func:`~sfl_env.data.partition` splits by."""
        return self.y_train.numpy() if self.train_groups is None else self.train_groups


@dataclass(frozen=True)
class _Arrays:
    """An un-normalised split as kept in the in-process cache. Its arrays are read-only."""

    x_train: np.ndarray  # (N, C, H, W), uint8 or float
    y_train: np.ndarray  # int64
    x_test: np.ndarray
    y_test: np.ndarray
    scale: float  # pixels / scale lie in [0, 1] (1.0 for synthetic data)
    mean: np.ndarray  # per channel, of x_train / scale
    std: np.ndarray


# --------------------------------------------------------------------------------------------------
# Public loaders
# --------------------------------------------------------------------------------------------------


_KNOWN_SHAPES = {"digits": (1, 8, 8), "mnist": (1, 28, 28), "fashion-mnist": (1, 28, 28), "cifar10": (3, 32, 32)}


def dataset_shape(config: SFLConfig) -> tuple[tuple[int, ...], int]:
    """(input shape, classes) of ``config``'s dataset, without loading, rendering or reading files."""
    if config.dataset in TEXT_DATASETS:
        return (config.context_length or DEFAULT_CONTEXT_LENGTH,), VOCABULARY
    if config.dataset in DEFAULT_IMAGE_SHAPES:
        return tuple(config.image_shape or DEFAULT_IMAGE_SHAPES[config.dataset]), 10
    return _KNOWN_SHAPES[config.dataset], 10


def check_fits_data(config: SFLConfig, files: Dataset | None = None) -> None:
    """Refuses, before any data is rendered, subsets larger than the dataset, more clients than training
    samples (a client without data) and a per-client batch larger than the training set (a batch of
    10**7 images would be allocated at the first step). ``files``: the loaded file dataset, if any (it
    is loaded here when ``config`` names a file dataset and ``files`` is None)."""
    if files is None and config.dataset in FILE_DATASETS:
        files = load_config_dataset(config)
    if files is not None:  # loading it already checked num_train and num_test
        available = {"num_train": len(files.y_train), "num_test": len(files.y_test)}
    elif config.dataset == "synthetic":  # drawn to size: bounded by memory only
        available = {"num_train": _SYNTHETIC_MAX_SAMPLES, "num_test": _SYNTHETIC_MAX_SAMPLES}
    elif config.dataset == "shapes":
        available = {"num_train": _SHAPES_NUM_TRAIN, "num_test": _SHAPES_NUM_TEST}
    elif config.dataset in TEXT_DATASETS:
        windows = dataset_metadata(config)["windows"]
        available = {"num_train": windows[0], "num_test": windows[1]}
    elif config.dataset == "digits":
        digits = _digits_arrays()
        available = {"num_train": len(digits.y_train), "num_test": len(digits.y_test)}
    else:  # a name added to DATASETS without its sizes here
        raise DatasetError(f"dataset {config.dataset!r} is listed in DATASETS but check_fits_data knows no "
                           "sizes for it")
    for name in ("num_train", "num_test"):
        value = getattr(config, name)
        if value is not None and value > available[name]:
            raise ConfigError(f"{name}={value} is larger than the {available[name]} samples of {config.dataset!r}; "
                              f"allowed: 1 to {available[name]}")
    num_train = config.num_train or {"synthetic": _SYNTHETIC_NUM_TRAIN}.get(config.dataset, available["num_train"])
    for name, value in (("num_clients", config.num_clients), ("batch_size", config.batch_size)):
        if value > num_train:
            raise ConfigError(f"{name}={value} is larger than the {num_train} training samples of "
                              f"{config.dataset!r}; allowed: 1 to {num_train}")


def dataset_metadata(config: SFLConfig) -> dict:
    """Where ``config``'s data comes from, for run records: a text corpus's Python version, files, bytes and
    the SHA-256 of its text (which differs between Python versions); empty for the image datasets."""
    if config.dataset not in TEXT_DATASETS:
        return {}
    folder = None if config.data_dir is None else Path(config.data_dir)
    return dict(load_corpus(config.dataset, folder, config.context_length or DEFAULT_CONTEXT_LENGTH).metadata)


def load_config_dataset(config: SFLConfig) -> Dataset:
    """The dataset an :class:`~sfl_env.config.SFLConfig` names, with its sizes and image shape."""
    return load_dataset(config.dataset, config.data_dir, num_train=config.num_train, num_test=config.num_test,
                        image_shape=config.image_shape, context_length=config.context_length)


def load_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    seed: int = 0,
    num_train: int | None = None,
    num_test: int | None = None,
    image_shape: tuple[int, int, int] | None = None,
    num_classes: int = 10,
    context_length: int | None = None,
) -> Dataset:
    """Load a dataset by name (one of ``DATASETS``); never downloads anything.

    ``mnist`` and ``fashion-mnist`` read the four IDX files (raw or ``.gz``) from ``data_dir`` or
    ``data_dir/<name>``; ``cifar10`` reads the binary or python batch files from ``data_dir``,
    ``data_dir/cifar10`` or a ``cifar-10-batches-bin`` / ``cifar-10-batches-py`` folder in either.

    ``shapes`` renders 20,000 / 2,000 images of ``image_shape`` (default 3x16x16) from a fixed seed.

    For file datasets, ``digits`` and ``shapes``, ``num_train`` / ``num_test`` take a random subset
    (seeded by ``seed``) of the train / test split. For ``synthetic`` they are the sizes to generate
    (default 2000 / 500), and ``num_classes`` its classes. ``image_shape`` (C, H, W) shapes the
    generated datasets (``synthetic`` 1x8x8 and ``shapes`` 3x16x16 by default); the others refuse it.

    The text datasets take windows of ``context_length`` bytes (default 32): ``python-stdlib`` from this
    Python's own standard library, ``text`` from the text files under ``data_dir``.
    """
    if name not in DATASETS:
        raise unknown_name("dataset", name, DATASETS, DatasetError)
    _check_seed(seed)
    if name in TEXT_DATASETS:
        if image_shape is not None:
            raise DatasetError(f"image_shape={image_shape!r} applies to image datasets; {name!r} is text")
        if name == "text" and data_dir is None:
            raise DatasetError("dataset 'text' reads the text files under data_dir, so data_dir is required")
        corpus = load_corpus(name, None if data_dir is None else Path(data_dir),
                             DEFAULT_CONTEXT_LENGTH if context_length is None else _check_count("context_length",
                                                                                               context_length))
        return _text_dataset(name, corpus, seed, num_train, num_test)
    shape = DEFAULT_IMAGE_SHAPES.get(name)
    if image_shape is not None:
        try:
            shape = check_image_shape(image_shape, name)
        except ConfigError as error:
            raise DatasetError(str(error)) from None
    if name == "synthetic":
        arrays = _synthetic_arrays(
            seed,
            _SYNTHETIC_NUM_TRAIN if num_train is None else _check_count("num_train", num_train),
            _SYNTHETIC_NUM_TEST if num_test is None else _check_count("num_test", num_test),
            shape,
            _check_num_classes(num_classes),
        )
        return _to_dataset(name, arrays, num_classes, seed, None, None)
    if name == "shapes":
        return _to_dataset(name, _shapes_arrays(shape), 10, seed, num_train, num_test)

    if name in FILE_DATASETS:
        if data_dir is None:
            raise DatasetError(
                f"dataset {name!r} is read from local files, so data_dir is required "
                "(no downloads are done); pass the folder holding its files"
            )
        arrays = _file_arrays(name, Path(data_dir).expanduser())
    elif name == "digits":
        arrays = _digits_arrays()
    else:  # a name added to DATASETS without a loader here
        raise DatasetError(f"dataset {name!r} is listed in DATASETS but has no loader in sfl_env.data.datasets")
    return _to_dataset(name, arrays, 10, seed, num_train, num_test)


def _to_dataset(
    name: str,
    arrays: _Arrays,
    num_classes: int,
    seed: int,
    num_train: int | None,
    num_test: int | None,
) -> Dataset:
    train_idx = _subset("num_train", num_train, len(arrays.y_train), np.random.default_rng((seed, 0)))
    test_idx = _subset("num_test", num_test, len(arrays.y_test), np.random.default_rng((seed, 1)))
    return Dataset(
        name=name,
        x_train=_normalised(arrays, arrays.x_train, train_idx),
        y_train=torch.from_numpy(_take(arrays.y_train, train_idx).astype(np.int64)),
        x_test=_normalised(arrays, arrays.x_test, test_idx),
        y_test=torch.from_numpy(_take(arrays.y_test, test_idx).astype(np.int64)),
        num_classes=num_classes,
    )


def _text_dataset(name: str, corpus: Corpus, seed: int, num_train: int | None, num_test: int | None) -> Dataset:
    train_idx = _subset("num_train", num_train, len(corpus.x_train), np.random.default_rng((seed, 0)))
    test_idx = _subset("num_test", num_test, len(corpus.x_test), np.random.default_rng((seed, 1)))

    def tensor(array: np.ndarray, idx: np.ndarray | None) -> torch.Tensor:
        return torch.from_numpy(np.array(_take(array, idx), dtype=np.int64))  # always a fresh copy

    return Dataset(
        name=name, x_train=tensor(corpus.x_train, train_idx), y_train=tensor(corpus.y_train, train_idx),
        x_test=tensor(corpus.x_test, test_idx), y_test=tensor(corpus.y_test, test_idx), num_classes=VOCABULARY,
        train_groups=np.array(_take(corpus.train_sources, train_idx)), metadata=dict(corpus.metadata),
    )


def _subset(arg: str, wanted: int | None, available: int, rng: np.random.Generator) -> np.ndarray | None:
    if wanted is None:
        return None
    wanted = _check_count(arg, wanted)
    if wanted > available:
        raise DatasetError(f"{arg}={wanted} is larger than the {available} samples available")
    return np.sort(rng.choice(available, size=wanted, replace=False))


def _take(array: np.ndarray, idx: np.ndarray | None) -> np.ndarray:
    return array if idx is None else array[idx]


def _normalised(arrays: _Arrays, x: np.ndarray, idx: np.ndarray | None) -> torch.Tensor:
    out = _take(x, idx).astype(np.float32)  # always a fresh copy
    out /= np.float32(arrays.scale)
    out -= arrays.mean.astype(np.float32).reshape(1, -1, 1, 1)
    out /= arrays.std.astype(np.float32).reshape(1, -1, 1, 1)
    return torch.from_numpy(out)


def _make_arrays(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    scale: float,
) -> _Arrays:
    mean, std = _channel_stats(x_train)
    arrays = _Arrays(
        x_train, y_train.astype(np.int64), x_test, y_test.astype(np.int64), scale, mean / scale, std / scale
    )
    for value in (arrays.x_train, arrays.y_train, arrays.x_test, arrays.y_test, arrays.mean, arrays.std):
        value.flags.writeable = False
    return arrays


def _channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and (population) std of (N, C, H, W) data, in float64."""
    means, stds = [], []
    for c in range(x.shape[1]):
        channel = x[:, c]
        if x.dtype == np.uint8:  # exact and memory-light: a histogram of the 256 possible values
            counts = np.bincount(channel.ravel(), minlength=256)
            values = np.arange(256, dtype=np.float64)
            mean = counts @ values / counts.sum()
            var = counts @ (values - mean) ** 2 / counts.sum()
        else:
            mean = channel.mean(dtype=np.float64)
            var = channel.var(dtype=np.float64)
        means.append(mean)
        stds.append(math.sqrt(var) if var > 0 else 1.0)
    return np.array(means), np.array(stds)


# --------------------------------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _check_seed(seed: int) -> None:
    if not _is_int(seed) or seed < 0:
        raise DatasetError(f"seed must be a non-negative int, got {seed!r}")


def _check_count(arg: str, value: int) -> int:
    if not _is_int(value) or value < 1:
        raise DatasetError(f"{arg} must be a positive int or None, got {value!r}")
    return int(value)


def _check_num_classes(num_classes: int) -> int:
    if not _is_int(num_classes) or num_classes < 2:
        raise DatasetError(f"num_classes must be an int >= 2, got {num_classes!r}")
    return int(num_classes)


# --------------------------------------------------------------------------------------------------
# digits (bundled with scikit-learn) and synthetic
# --------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> _Arrays:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.images.astype(np.uint8)[:, None]  # (1797, 1, 8, 8), values 0..16
    y = bunch.target.astype(np.int64)
    is_test = np.zeros(len(y), dtype=bool)
    is_test[_stratified_sample(y, _DIGITS_TEST_FRACTION, np.random.default_rng(_DIGITS_SPLIT_SEED))] = True
    return _make_arrays(x[~is_test], y[~is_test], x[is_test], y[is_test], scale=16.0)


def _stratified_sample(labels: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of round(fraction * n_c) random samples of every class c."""
    chosen = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        chosen.append(rng.permutation(members)[: round(fraction * len(members))])
    return np.sort(np.concatenate(chosen))


def _synthetic_arrays(
    seed: int,
    num_train: int,
    num_test: int,
    image_shape: tuple[int, int, int],
    num_classes: int,
) -> _Arrays:
    """One N(0, 1) prototype image per class; samples are a prototype plus Gaussian noise."""
    rng = np.random.default_rng(seed)
    prototypes = rng.normal(size=(num_classes, *image_shape))

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.permutation(np.arange(n) % num_classes)  # balanced labels
        x = prototypes[y] + _SYNTHETIC_NOISE_STD * rng.normal(size=(n, *image_shape))
        return x.astype(np.float32), y

    x_train, y_train = draw(num_train)
    x_test, y_test = draw(num_test)
    return _make_arrays(x_train, y_train, x_test, y_test, scale=1.0)


@functools.lru_cache(maxsize=2)
def _shapes_arrays(image_shape: tuple[int, int, int]) -> _Arrays:
    rng = np.random.default_rng(_SHAPES_SEED)
    x_train, y_train = render_shapes(_SHAPES_NUM_TRAIN, image_shape, rng)
    x_test, y_test = render_shapes(_SHAPES_NUM_TEST, image_shape, rng)
    return _make_arrays(x_train, y_train, x_test, y_test, scale=255.0)


# --------------------------------------------------------------------------------------------------
# File datasets, parsed once per version of their files
# --------------------------------------------------------------------------------------------------


def _file_arrays(name: str, root: Path) -> _Arrays:
    """The arrays of one of ``FILE_DATASETS``, read from ``root`` unless the same files were read before."""
    if name == "cifar10":
        version, paths = locate_cifar_files(root)
        return _parse_cifar_split(version, _cache_key(paths))
    return _parse_idx_split(name, _cache_key(locate_idx_files(name, root)))


def _cache_key(paths: Sequence[Path]) -> tuple[tuple[str, int, int], ...]:
    """Resolved path, mtime and size of each file, so an edited file is parsed again."""
    key = []
    for path in paths:
        stat = path.stat()
        key.append((str(path.resolve()), stat.st_mtime_ns, stat.st_size))
    return tuple(key)


@functools.lru_cache(maxsize=4)
def _parse_idx_split(name: str, files: tuple[tuple[str, int, int], ...]) -> _Arrays:
    paths = [Path(f[0]) for f in files]
    return _make_arrays(*read_idx_split(name, paths), scale=255.0)


@functools.lru_cache(maxsize=2)
def _parse_cifar_split(version: str, files: tuple[tuple[str, int, int], ...]) -> _Arrays:
    paths = [Path(f[0]) for f in files]
    return _make_arrays(*read_cifar_split(version, paths), scale=255.0)
