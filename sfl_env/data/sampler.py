"""Equal-size, aligned per-client batches for the local iterations of a training round.

``ClientSampler`` turns the index sets from :func:`sfl_env.data.partition` into one (K, b) int64 index
tensor per local iteration: row k holds b indices of client k's own samples, drawn epoch by reshuffled
epoch from a ``torch.Generator``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..errors import ConfigError, DatasetError
from .datasets import _is_int

_SAMPLER_BLOCK_SAMPLES = 1024  # per client, drawn ahead by ClientSampler


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
            raise ConfigError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        if not _is_int(batch_size) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive int, got {batch_size!r}")
        if len(client_indices) == 0:
            raise DatasetError("client_indices must hold at least one client")
        self._indices: list[torch.Tensor] = []
        for k, indices in enumerate(client_indices):
            array = np.asarray(indices)
            if array.ndim != 1 or array.size == 0 or array.dtype.kind not in "iu":
                raise DatasetError(
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
