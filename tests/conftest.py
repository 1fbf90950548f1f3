"""Shared test fixtures."""

from pathlib import Path

import pytest

# The real MNIST test set (t10k-*.gz) lives next to the repository, in ../shared/data/mnist.
REAL_MNIST_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"
REAL_MNIST_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


@pytest.fixture(scope="session")
def real_mnist_dir() -> Path:
    """Folder with the real MNIST test files; the test is skipped when they are absent."""
    if not all((REAL_MNIST_DIR / name).is_file() for name in REAL_MNIST_FILES):
        pytest.skip(f"real MNIST files {', '.join(REAL_MNIST_FILES)} not found in {REAL_MNIST_DIR}")
    return REAL_MNIST_DIR
