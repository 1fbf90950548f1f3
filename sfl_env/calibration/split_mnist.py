"""Makes the MNIST calibration data set: the 10,000 MNIST test images split 8,000 train / 2,000 test.

The ``mnist`` twin is fitted on real MNIST images, and the only ones at hand offline are the official
test set (``t10k-*-ubyte.gz``). This writes its first 8,000 images as a training split and the last
2,000 as a test split, in IDX format, so ``dataset="mnist", data_dir=DST`` reads them:

    python -m sfl_env.calibration.split_mnist ../shared/data/mnist mnist-8000-2000
"""

from __future__ import annotations

import argparse
import gzip
import struct
from pathlib import Path

import numpy as np

TRAIN_SIZE = 8000


def read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4: 4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="folder holding t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz")
    parser.add_argument("destination")
    args = parser.parse_args()
    source, destination = Path(args.source), Path(args.destination)
    images = read_idx(source / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(source / "t10k-labels-idx1-ubyte.gz")
    destination.mkdir(parents=True, exist_ok=True)
    for split, part in (("train", slice(None, TRAIN_SIZE)), ("t10k", slice(TRAIN_SIZE, None))):
        write_idx(destination / f"{split}-images-idx3-ubyte.gz", images[part])
        write_idx(destination / f"{split}-labels-idx1-ubyte.gz", labels[part])
    print(f"wrote {TRAIN_SIZE} train and {len(labels) - TRAIN_SIZE} test images to {destination}")


if __name__ == "__main__":
    main()
