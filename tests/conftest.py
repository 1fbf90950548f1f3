"""Shared test fixtures, and the settings for running the suite on several workers (pytest-xdist).

``make test`` runs the suite on one worker per core (``-n auto``). Each worker then trains with one
torch thread, as does every process it starts, so that two workers on two cores do not fight over
them; every test that starts a Ray cluster runs on the same worker (the ``ray`` group, scheduled by
``--dist loadgroup``), one cluster at a time; and the long tests start first.
"""

import os
from pathlib import Path

import pytest
import torch

# The real MNIST test set (t10k-*.gz) lives next to the repository, in ../shared/data/mnist.
REAL_MNIST_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"
REAL_MNIST_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # and one in every process a test starts


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Ray tests share one worker; the long ones (``ray``, ``slow``) go first, so that the workers finish
    together instead of one of them starting a 40-second test at the end. Otherwise the order is kept."""
    for item in items:
        if item.get_closest_marker("ray"):
            item.add_marker(pytest.mark.xdist_group("ray"))
    items.sort(key=_start_rank)  # stable: the collection order within each rank


def _start_rank(item: pytest.Item) -> int:
    return 0 if item.get_closest_marker("ray") else 1 if item.get_closest_marker("slow") else 2


@pytest.fixture(scope="session")
def real_mnist_dir() -> Path:
    """Folder with the real MNIST test files; the test is skipped when they are absent."""
    if not all((REAL_MNIST_DIR / name).is_file() for name in REAL_MNIST_FILES):
        pytest.skip(f"real MNIST files {', '.join(REAL_MNIST_FILES)} not found in {REAL_MNIST_DIR}")
    return REAL_MNIST_DIR
