"""Readers for the standard dataset files; nothing here downloads anything.

MNIST and Fashion-MNIST come as four IDX files, raw or gzipped; CIFAR-10 as six batch files, either the
binary version or the python (pickled) version, which is read with an unpickler that only rebuilds
numpy arrays, so a crafted file cannot run code. ``locate_*_files`` find a dataset's files in a folder
(raising a :class:`DatasetError` that names every missing file and every folder searched) and
``read_*_split`` parse them into raw uint8 images and int64 labels, checking every header, size and
label on the way. Normalising and caching what was read is :mod:`sfl_env.data.datasets`' job.
"""

from __future__ import annotations

import gzip
import pickle
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import DatasetError

# A split as read from files: (x_train, y_train, x_test, y_test), images (N, C, H, W) uint8, labels int64.
Split = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]

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


# --------------------------------------------------------------------------------------------------
# Locating files
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


def locate_idx_files(name: str, root: Path) -> list[Path]:
    """The four IDX files of ``name`` (train images, train labels, test images, test labels), each raw or
    ``.gz``, from ``root`` or ``root/<name>``; raises a DatasetError naming every file not found."""
    dirs = [root, root / name]
    paths, missing = _locate(_IDX_FILES, dirs, suffixes=("", ".gz"))
    if missing:
        raise _missing_files_error(name, missing, dirs)
    return paths


def read_idx_split(name: str, paths: Sequence[Path]) -> Split:
    """Reads the four files from :func:`locate_idx_files`: uint8 (N, 1, H, W) images, int64 labels."""
    train_images, train_labels, test_images, test_labels = paths
    x_train, y_train = _read_idx_pair(train_images, train_labels)
    x_test, y_test = _read_idx_pair(test_images, test_labels)
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DatasetError(
            f"{name}: train images are {x_train.shape[2]}x{x_train.shape[3]} ({train_images}) but "
            f"test images are {x_test.shape[2]}x{x_test.shape[3]} ({test_images})"
        )
    return x_train, y_train, x_test, y_test


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


def locate_cifar_files(root: Path) -> tuple[str, list[Path]]:
    """The six CIFAR-10 batch files (five train, then test) and their version, ``"binary"`` or
    ``"python"``, from ``root``, ``root/cifar10`` or a ``cifar-10-batches-bin`` / ``cifar-10-batches-py``
    folder in either. The binary version wins when both are complete; raises a DatasetError naming the
    files missing from each version when neither is."""
    bases = (root, root / "cifar10")
    dirs = [d for base in bases for d in (base, base / "cifar-10-batches-bin", base / "cifar-10-batches-py")]
    binary, missing_binary = _locate([f"{b}.bin" for b in _CIFAR_BATCHES], dirs)
    if not missing_binary:
        return "binary", binary
    python, missing_python = _locate(_CIFAR_BATCHES, dirs)
    if not missing_python:
        return "python", python
    missing = [f"{', '.join(missing_binary)} (binary version)", f"{', '.join(missing_python)} (python version)"]
    raise _missing_files_error("cifar10", missing, dirs)


def read_cifar_split(version: str, paths: Sequence[Path]) -> Split:
    """Reads the files from :func:`locate_cifar_files`: uint8 (N, 3, 32, 32) images, int64 labels."""
    read = _read_cifar_binary if version == "binary" else _read_cifar_python
    batches = [read(path) for path in paths]
    x_train = np.concatenate([x for x, _ in batches[:-1]])
    y_train = np.concatenate([y for _, y in batches[:-1]])
    x_test, y_test = batches[-1]
    return x_train, y_train, x_test, y_test


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
