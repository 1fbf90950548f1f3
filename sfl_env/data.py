"""Datasets and client partitions for split federated learning.

Everything here works offline. The default dataset, ``digits``, is the 8x8 handwritten digits set
bundled with scikit-learn; MNIST, Fashion-MNIST and CIFAR-10 are read from their standard files in a
local folder (nothing is ever downloaded); ``synthetic`` is generated from a seed.

``load_dataset`` returns a normalised train/test split as tensors, ``partition`` splits a training set
across K clients (IID, Dirichlet label skew, or label-sorted shards), and ``ClientSampler`` draws one
equal-size batch per client per local iteration, stacked as a (K, b) index tensor.
"""

from __future__ import annotations

import functools
import gzip
import math
import os
import pickle
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

DATASETS: tuple[str, ...] = ("digits", "mnist", "fashion-mnist", "cifar10", "synthetic")
PARTITIONS: tuple[str, ...] = ("iid", "dirichlet", "shards")

_DIGITS_TEST_FRACTION = 0.2
_DIGITS_SPLIT_SEED = 1797  # fixed: the digits test set never depends on the caller's seed
_SYNTHETIC_NUM_TRAIN = 2000
_SYNTHETIC_NUM_TEST = 500
_SYNTHETIC_NOISE_STD = 2.0  # prototypes are N(0, 1) per pixel
_DIRICHLET_MAX_TRIES = 1000
_SAMPLER_BLOCK_SAMPLES = 1024  # per client, drawn ahead by ClientSampler

_IDX_IMAGES_MAGIC = 2051
_IDX_LABELS_MAGIC = 2049
_IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_CIFAR_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)
_CIFAR_PIXELS = 3 * 32 * 32
_CIFAR_RECORD = 1 + _CIFAR_PIXELS


class DatasetError(ValueError):
    """A dataset name/option is unknown, or a data file is missing or malformed."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """A normalised train/test split.

    Images are float32 (N, C, H, W), standardised per channel with the statistics of the full
    training split; labels are int64 (N,). Every ``load_dataset`` call returns freshly allocated
    tensors, so the caller owns them and may modify them without affecting later loads.
    """

    name: str
    x_train: torch.Tensor = field(repr=False)
    y_train: torch.Tensor = field(repr=False)
    x_test: torch.Tensor = field(repr=False)
    y_test: torch.Tensor = field(repr=False)
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, int, int]:
        c, h, w = self.x_train.shape[1:]
        return (int(c), int(h), int(w))


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
# Public loader
# --------------------------------------------------------------------------------------------------


def load_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    seed: int = 0,
    num_train: int | None = None,
    num_test: int | None = None,
    image_shape: tuple[int, int, int] = (1, 8, 8),
    num_classes: int = 10,
) -> Dataset:
    """Load a dataset by name (one of ``DATASETS``); never downloads anything.

    ``mnist`` and ``fashion-mnist`` read the four IDX files (raw or ``.gz``) from ``data_dir`` or
    ``data_dir/<name>``; ``cifar10`` reads the binary or python batch files from ``data_dir``,
    ``data_dir/cifar10`` or a ``cifar-10-batches-bin`` / ``cifar-10-batches-py`` folder in either.

    For file datasets, ``num_train`` / ``num_test`` take a random subset (seeded by ``seed``) of the
    train / test split. For ``synthetic`` they are the sizes to generate (default 2000 / 500), and
    ``image_shape`` and ``num_classes`` shape the data; those two are ignored by the other datasets.
    """
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    _check_seed(seed)
    if name == "synthetic":
        arrays = _synthetic_arrays(
            seed,
            _SYNTHETIC_NUM_TRAIN if num_train is None else _check_count("num_train", num_train),
            _SYNTHETIC_NUM_TEST if num_test is None else _check_count("num_test", num_test),
            _check_image_shape(image_shape),
            _check_num_classes(num_classes),
        )
        return _to_dataset(name, arrays, num_classes, seed, None, None)

    if name == "digits":
        arrays = _digits_arrays()
    else:
        if data_dir is None:
            raise DatasetError(
                f"dataset {name!r} is read from local files, so data_dir is required "
                "(no downloads are done); pass the folder holding its files"
            )
        root = Path(data_dir).expanduser()
        arrays = _cifar_arrays(root) if name == "cifar10" else _idx_arrays(name, root)
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


def _check_image_shape(image_shape: tuple[int, int, int]) -> tuple[int, int, int]:
    shape = tuple(image_shape)
    if len(shape) != 3 or not all(_is_int(d) and d >= 1 for d in shape):
        raise DatasetError(f"image_shape must be three positive ints (C, H, W), got {image_shape!r}")
    return (int(shape[0]), int(shape[1]), int(shape[2]))


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


# --------------------------------------------------------------------------------------------------
# Locating files and caching what was parsed
# --------------------------------------------------------------------------------------------------


def _locate(
    names: Sequence[str], dirs: Sequence[Path], suffixes: Sequence[str] = ("",)
) -> tuple[list[Path], list[str]]:
    """For each name, the first existing ``dir/name+suffix``; also the names found nowhere."""
    found, missing = [], []
    for name in names:
        candidates = (d / (name + suffix) for d in dirs for suffix in suffixes)
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            missing.append(name + "".join(f"[{s}]" for s in suffixes if s))
        else:
            found.append(path)
    return found, missing


def _missing_files_error(dataset: str, missing: Sequence[str], dirs: Sequence[Path]) -> DatasetError:
    looked_in = ", ".join(str(d) for d in dirs)
    note = "" if dirs[0].is_dir() else f" (data_dir {dirs[0]} does not exist)"
    return DatasetError(f"{dataset}: missing file(s) {', '.join(missing)}; looked in: {looked_in}{note}")


def _cache_key(paths: Sequence[Path]) -> tuple[tuple[str, int, int], ...]:
    """Resolved path, mtime and size of each file, so an edited file is parsed again."""
    key = []
    for path in paths:
        stat = path.stat()
        key.append((str(path.resolve()), stat.st_mtime_ns, stat.st_size))
    return tuple(key)


def _read_bytes(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DatasetError(f"{path}: could not be read ({error})") from error
    if path.suffix != ".gz":
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as error:
        raise DatasetError(f"{path}: not a valid gzip file ({error})") from error


# --------------------------------------------------------------------------------------------------
# MNIST / Fashion-MNIST (IDX files)
# --------------------------------------------------------------------------------------------------


def _idx_arrays(name: str, root: Path) -> _Arrays:
    dirs = [root, root / name]
    paths, missing = _locate(_IDX_FILES, dirs, suffixes=("", ".gz"))
    if missing:
        raise _missing_files_error(name, missing, dirs)
    return _parse_idx_split(name, _cache_key(paths))


@functools.lru_cache(maxsize=4)
def _parse_idx_split(name: str, files: tuple[tuple[str, int, int], ...]) -> _Arrays:
    train_images, train_labels, test_images, test_labels = (Path(f[0]) for f in files)
    x_train, y_train = _read_idx_pair(train_images, train_labels)
    x_test, y_test = _read_idx_pair(test_images, test_labels)
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DatasetError(
            f"{name}: train images are {x_train.shape[2]}x{x_train.shape[3]} ({train_images}) but "
            f"test images are {x_test.shape[2]}x{x_test.shape[3]} ({test_images})"
        )
    return _make_arrays(x_train, y_train, x_test, y_test, scale=255.0)


def _read_idx_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    images = _read_idx_images(images_path)
    labels = _read_idx_labels(labels_path)
    if len(images) != len(labels):
        raise DatasetError(
            f"image and label counts disagree: {images_path} holds {len(images)} images, "
            f"{labels_path} holds {len(labels)} labels"
        )
    return images, labels


def _read_idx_images(path: Path) -> np.ndarray:
    data = _read_bytes(path)
    if len(data) < 16:
        raise DatasetError(f"{path}: expected a 16-byte IDX image header, found {len(data)} bytes")
    magic, n, rows, cols = struct.unpack(">4i", data[:16])
    if magic != _IDX_IMAGES_MAGIC:
        raise DatasetError(f"{path}: expected IDX magic number {_IDX_IMAGES_MAGIC} (images), found {magic}")
    if n < 1 or rows < 1 or cols < 1:
        raise DatasetError(f"{path}: expected positive dimensions in the header, found {n}x{rows}x{cols}")
    expected, found = n * rows * cols, len(data) - 16
    if found != expected:
        raise DatasetError(f"{path}: expected {expected} bytes of pixels from header {n}x{rows}x{cols}, found {found}")
    return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(n, 1, rows, cols)


def _read_idx_labels(path: Path) -> np.ndarray:
    data = _read_bytes(path)
    if len(data) < 8:
        raise DatasetError(f"{path}: expected an 8-byte IDX label header, found {len(data)} bytes")
    magic, n = struct.unpack(">2i", data[:8])
    if magic != _IDX_LABELS_MAGIC:
        raise DatasetError(f"{path}: expected IDX magic number {_IDX_LABELS_MAGIC} (labels), found {magic}")
    if n < 1:
        raise DatasetError(f"{path}: expected a positive label count in the header, found {n}")
    found = len(data) - 8
    if found != n:
        raise DatasetError(f"{path}: expected {n} bytes of labels from header {n}, found {found}")
    labels = np.frombuffer(data, dtype=np.uint8, offset=8).astype(np.int64)
    _check_labels(path, labels)
    return labels


def _check_labels(path: Path, labels: np.ndarray, num_classes: int = 10) -> None:
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DatasetError(
            f"{path}: expected labels in 0..{num_classes - 1}, found values from {labels.min()} to {labels.max()}"
        )


# --------------------------------------------------------------------------------------------------
# CIFAR-10 (binary or python batches)
# --------------------------------------------------------------------------------------------------


def _cifar_arrays(root: Path) -> _Arrays:
    bases = (root, root / "cifar10")
    dirs = [d for base in bases for d in (base, base / "cifar-10-batches-bin", base / "cifar-10-batches-py")]
    binary, missing_binary = _locate([f"{b}.bin" for b in _CIFAR_BATCHES], dirs)
    if not missing_binary:
        return _parse_cifar_split("binary", _cache_key(binary))
    python, missing_python = _locate(_CIFAR_BATCHES, dirs)
    if not missing_python:
        return _parse_cifar_split("python", _cache_key(python))
    missing = [f"{', '.join(missing_binary)} (binary version)", f"{', '.join(missing_python)} (python version)"]
    raise _missing_files_error("cifar10", missing, dirs)


@functools.lru_cache(maxsize=2)
def _parse_cifar_split(version: str, files: tuple[tuple[str, int, int], ...]) -> _Arrays:
    read = _read_cifar_binary if version == "binary" else _read_cifar_python
    batches = [read(Path(f[0])) for f in files]
    x_train = np.concatenate([x for x, _ in batches[:-1]])
    y_train = np.concatenate([y for _, y in batches[:-1]])
    x_test, y_test = batches[-1]
    return _make_arrays(x_train, y_train, x_test, y_test, scale=255.0)


def _read_cifar_binary(path: Path) -> tuple[np.ndarray, np.ndarray]:
    data = _read_bytes(path)
    if not data or len(data) % _CIFAR_RECORD:
        raise DatasetError(
            f"{path}: expected a non-empty multiple of {_CIFAR_RECORD} bytes "
            f"(1 label byte + 3x32x32 pixel bytes per record), found {len(data)} bytes"
        )
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, _CIFAR_RECORD)
    labels = records[:, 0].astype(np.int64)
    _check_labels(path, labels)
    return records[:, 1:].reshape(-1, 3, 32, 32), labels


def _numpy_pickle_globals() -> dict[tuple[str, str], object]:
    """The only globals a CIFAR-10 python batch may reference: what rebuilds numpy arrays."""
    reconstruct = np.zeros(1).__reduce__()[0]
    frombuffer = np.zeros(1).__reduce_ex__(5)[0]  # protocol 5 arrays
    scalar = np.int64(0).__reduce__()[0]
    allowed: dict[tuple[str, str], object] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{package}.multiarray", "scalar")] = scalar
        allowed[(f"{package}.numeric", "_frombuffer")] = frombuffer
    allowed[("_codecs", "encode")] = _latin1_encode  # protocol <= 2 pickles made by Python 3 store bytes this way
    return allowed


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    if encoding != "latin1" or not isinstance(text, str):
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays; refuses every other global, so no code runs."""

    _allowed = _numpy_pickle_globals()

    def __init__(self, file, path: Path):
        super().__init__(file, encoding="bytes")
        self._path = path

    def find_class(self, module: str, name: str) -> object:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise DatasetError(
                f"{self._path}: refusing to unpickle global {module}.{name} "
                "(a CIFAR-10 python batch may only hold numpy arrays, lists and bytes)"
            ) from None


def _read_cifar_python(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as file:
            batch = _NumpyOnlyUnpickler(file, path).load()
    except DatasetError:
        raise
    except Exception as error:  # unpickling malformed data can fail in many ways
        raise DatasetError(f"{path}: not a readable CIFAR-10 python batch ({type(error).__name__}: {error})") from error
    if not isinstance(batch, dict):
        raise DatasetError(f"{path}: expected a pickled dict, found {type(batch).__name__}")
    data, labels = _batch_entry(batch, "data", path), _batch_entry(batch, "labels", path)
    try:
        data = np.asarray(data)
        labels = np.asarray(labels)
    except (ValueError, TypeError) as error:
        raise DatasetError(f"{path}: data/labels are not rectangular arrays ({error})") from error
    if data.ndim != 2 or data.shape[1] != _CIFAR_PIXELS or data.dtype.kind not in "ui":
        raise DatasetError(
            f"{path}: expected integer data of shape (N, {_CIFAR_PIXELS}), found {data.dtype} {data.shape}"
        )
    if data.size and (data.min() < 0 or data.max() > 255):
        raise DatasetError(f"{path}: expected pixel values in 0..255, found {data.min()}..{data.max()}")
    if labels.shape != (len(data),) or labels.dtype.kind not in "ui":
        raise DatasetError(f"{path}: expected {len(data)} integer labels, found {labels.dtype} {labels.shape}")
    labels = labels.astype(np.int64)
    _check_labels(path, labels)
    return data.astype(np.uint8).reshape(-1, 3, 32, 32), labels


def _batch_entry(batch: dict, key: str, path: Path) -> object:
    for candidate in (key.encode(), key):
        if candidate in batch:
            return batch[candidate]
    found = sorted(map(repr, batch))
    raise DatasetError(f"{path}: expected key {key.encode()!r} in the batch dict, found keys {found}")


# --------------------------------------------------------------------------------------------------
# Partitions across clients
# --------------------------------------------------------------------------------------------------


def partition(
    labels: np.ndarray,
    num_clients: int,
    method: str = "iid",
    *,
    alpha: float = 0.5,
    shards_per_client: int = 2,
    min_size: int = 1,
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """Split sample indices ``0..len(labels)-1`` across ``num_clients`` clients.

    Returns one sorted int64 index array per client; the arrays are disjoint, non-empty, and together
    hold every index. ``iid``: a random permutation cut into near-equal parts. ``dirichlet``: each
    class is spread over the clients with proportions ~ Dir(alpha), redrawn until every client has at
    least ``min_size`` samples. ``shards``: samples sorted by label are cut into
    ``num_clients * shards_per_client`` shards and each client gets ``shards_per_client`` random ones.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0 or labels.dtype.kind not in "iu":
        raise ValueError(
            f"labels must be a non-empty 1-D integer array, got {labels.dtype} array of shape {labels.shape}"
        )
    if method not in PARTITIONS:
        raise ValueError(f"unknown partition method {method!r}; choose one of: {', '.join(PARTITIONS)}")
    n = labels.size
    if not _is_int(num_clients) or not 1 <= num_clients <= n:
        raise ValueError(f"num_clients must be an int in 1..{n} (the number of samples), got {num_clients!r}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")

    if method == "iid":
        parts = np.array_split(rng.permutation(n), num_clients)
    elif method == "dirichlet":
        if not isinstance(alpha, (int, float, np.floating, np.integer)) or not 0 < alpha < math.inf:
            raise ValueError(f"alpha must be a finite number > 0, got {alpha!r}")
        if not _is_int(min_size) or not 1 <= min_size <= n // num_clients:
            raise ValueError(
                f"min_size must be an int in 1..{n // num_clients} "
                f"(samples per client if split evenly), got {min_size!r}"
            )
        parts = _dirichlet_parts(labels, num_clients, float(alpha), int(min_size), rng)
    else:
        if not _is_int(shards_per_client) or not 1 <= shards_per_client * num_clients <= n:
            raise ValueError(
                f"shards_per_client must be an int in 1..{n // num_clients} "
                f"(num_clients * shards_per_client <= {n} samples), got {shards_per_client!r}"
            )
        parts = _shard_parts(labels, num_clients, int(shards_per_client), rng)
    return [np.sort(part).astype(np.int64) for part in parts]


def _dirichlet_parts(
    labels: np.ndarray, num_clients: int, alpha: float, min_size: int, rng: np.random.Generator
) -> list[np.ndarray]:
    by_class = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    for _ in range(_DIRICHLET_MAX_TRIES):
        # counts[c, k]: how many samples of class c go to client k
        counts = np.stack([_split_counts(len(m), rng.dirichlet(np.full(num_clients, alpha))) for m in by_class])
        if counts.sum(axis=0).min() >= min_size:
            break
    else:
        raise ValueError(
            f"dirichlet partition: no draw in {_DIRICHLET_MAX_TRIES} gave each of {num_clients} clients at least "
            f"min_size={min_size} samples with alpha={alpha}; raise alpha or lower num_clients or min_size"
        )
    parts: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
    for members, row in zip(by_class, counts):
        for k, chunk in enumerate(np.split(members, np.cumsum(row)[:-1])):
            parts[k].append(chunk)
    return [np.concatenate(chunks) for chunks in parts]


def _split_counts(n: int, proportions: np.ndarray) -> np.ndarray:
    """Integer counts summing to n that follow the given proportions."""
    cuts = np.minimum((np.cumsum(proportions) * n).astype(np.int64), n)
    cuts[-1] = n
    return np.diff(cuts, prepend=0)


def _shard_parts(
    labels: np.ndarray, num_clients: int, shards_per_client: int, rng: np.random.Generator
) -> list[np.ndarray]:
    shuffled = rng.permutation(labels.size)
    by_label = shuffled[np.argsort(labels[shuffled], kind="stable")]  # random order within each label
    shards = np.array_split(by_label, num_clients * shards_per_client)
    owners = rng.permutation(len(shards)).reshape(num_clients, shards_per_client)
    return [np.concatenate([shards[j] for j in row]) for row in owners]


# --------------------------------------------------------------------------------------------------
# Equal-size aligned client batches
# --------------------------------------------------------------------------------------------------


class ClientSampler:
    """Draws, per local iteration, one batch of exactly `batch_size` indices for every client, as a (K, b) tensor.

    Client k's row only holds indices from its own partition. Each client walks through its own data in
    reshuffled epochs (a client with fewer than b samples simply spans several epochs in one batch), so all
    clients always have equal batch sizes and row n of every client's batch is the n-th sample of that batch
    (aligned order), as gradient aggregation needs. All randomness comes from `generator`, so the same
    generator state gives the same sequence of batches.
    """

    def __init__(self, client_indices: Sequence[np.ndarray], batch_size: int, generator: torch.Generator):
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        if not _is_int(batch_size) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if len(client_indices) == 0:
            raise ValueError("client_indices must hold at least one client")
        self._indices: list[torch.Tensor] = []
        for k, indices in enumerate(client_indices):
            array = np.asarray(indices)
            if array.ndim != 1 or array.size == 0 or array.dtype.kind not in "iu":
                raise ValueError(
                    f"client_indices[{k}] must be a non-empty 1-D integer array, "
                    f"got {array.dtype} array of shape {array.shape}"
                )
            self._indices.append(torch.tensor(array, dtype=torch.int64))
        self._batch_size = int(batch_size)
        self._generator = generator
        # Batches are cut from a (K, blocks * b) block drawn ahead, so most calls are a single slice.
        self._batches_per_block = max(1, _SAMPLER_BLOCK_SAMPLES // self._batch_size)
        self._block = torch.empty((len(self._indices), 0), dtype=torch.int64)
        self._cursor = 0
        # per client: the drawn but not yet used tail of its current shuffled epoch
        self._leftover = [torch.empty(0, dtype=torch.int64) for _ in self._indices]

    @property
    def batch_size(self) -> int:
        return self._batch_size

    @property
    def num_clients(self) -> int:
        return len(self._indices)

    @property
    def client_sizes(self) -> np.ndarray:
        return np.array([len(indices) for indices in self._indices], dtype=np.int64)

    def next_batch(self) -> torch.Tensor:
        """The next batch: a new int64 tensor of shape (num_clients, batch_size)."""
        if self._cursor == self._block.shape[1]:
            width = self._batches_per_block * self._batch_size
            self._block = torch.stack([self._draw(k, width) for k in range(self.num_clients)])
            self._cursor = 0
        batch = self._block[:, self._cursor : self._cursor + self._batch_size].clone()
        self._cursor += self._batch_size
        return batch

    def _draw(self, k: int, count: int) -> torch.Tensor:
        """The next `count` indices of client k's stream of reshuffled epochs."""
        indices = self._indices[k]
        chunks, available = [self._leftover[k]], len(self._leftover[k])
        while available < count:
            chunks.append(indices[torch.randperm(len(indices), generator=self._generator)])
            available += len(indices)
        stream = torch.cat(chunks)
        self._leftover[k] = stream[count:]
        return stream[:count]
