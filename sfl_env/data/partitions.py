"""Splitting a training set's sample indices across clients.

``partition`` gives each of K clients a disjoint, non-empty, sorted set of sample indices: ``iid`` (a
random near-equal split), ``dirichlet`` (label skew: each class spread over the clients with
Dirichlet(alpha) proportions) or ``shards`` (label-sorted shards dealt out at random, a few per client).
All randomness comes from the caller's ``numpy.random.Generator``, so a seed fixes the split.
"""

from __future__ import annotations

import math

import numpy as np

from ..config import PARTITIONS
from ..errors import ConfigError, DatasetError, unknown_name
from .datasets import _is_int

_DIRICHLET_MAX_TRIES = 1000


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
        raise DatasetError(
            f"labels must be a non-empty 1-D integer array, got {labels.dtype} array of shape {labels.shape}"
        )
    if method not in PARTITIONS:
        raise unknown_name("partition method", method, PARTITIONS)
    n = labels.size
    if not _is_int(num_clients) or not 1 <= num_clients <= n:
        raise ConfigError(f"num_clients must be an int in 1..{n} (the number of samples), got {num_clients!r}")
    if not isinstance(rng, np.random.Generator):
        raise ConfigError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")

    if method == "iid":
        parts = np.array_split(rng.permutation(n), num_clients)
    elif method == "dirichlet":
        if not isinstance(alpha, (int, float, np.floating, np.integer)) or not 0 < alpha < math.inf:
            raise ConfigError(f"alpha must be a finite number > 0, got {alpha!r}")
        if not _is_int(min_size) or not 1 <= min_size <= n // num_clients:
            raise ConfigError(
                f"min_size must be an int in 1..{n // num_clients} "
                f"(samples per client if split evenly), got {min_size!r}"
            )
        parts = _dirichlet_parts(labels, num_clients, float(alpha), int(min_size), rng)
    else:
        if not _is_int(shards_per_client) or not 1 <= shards_per_client * num_clients <= n:
            raise ConfigError(
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
        raise ConfigError(
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
