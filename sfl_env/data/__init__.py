"""Datasets and client partitions for split federated learning; everything here works offline.

- :mod:`~sfl_env.data.datasets`: ``load_dataset`` returns a normalised train/test split as tensors
  (:class:`Dataset`): the rendered ``shapes`` set (the default), the bundled ``digits`` set, MNIST,
  Fashion-MNIST and CIFAR-10 from local files, or a seeded ``synthetic`` set.
- :mod:`~sfl_env.data.shapes`: renders the ``shapes`` images from a seed.
- :mod:`~sfl_env.data.text`: the text corpora (``python-stdlib``, a ``text`` folder) as byte windows for
  next-token prediction, with the Python version and a SHA-256 of the text they were built from.
- :mod:`~sfl_env.data.formats`: the file readers (IDX, raw or gzipped; CIFAR-10 binary and python
  batches, unpickled without running code) and the errors for missing or malformed files.
- :mod:`~sfl_env.data.partitions`: ``partition`` splits a training set across K clients (IID, Dirichlet
  label skew, or label-sorted shards).
- :mod:`~sfl_env.data.sampler`: ``ClientSampler`` draws one equal-size batch per client per local
  iteration, stacked as a (K, b) index tensor.

The allowed names (``DATASETS``, ``FILE_DATASETS``, ``PARTITIONS``) come from :mod:`sfl_env.config`;
a user's mistake raises a :class:`~sfl_env.errors.DatasetError` (data, files, sizes) or a
:class:`~sfl_env.errors.ConfigError` (options), both ``ValueError`` subclasses.
"""

from ..config import DATASETS, FILE_DATASETS, PARTITIONS
from ..errors import ConfigError, DatasetError
from .datasets import Dataset, check_fits_data, dataset_metadata, dataset_shape, load_config_dataset, load_dataset
from .partitions import partition
from .sampler import ClientSampler

__all__ = [
    "DATASETS",
    "FILE_DATASETS",
    "PARTITIONS",
    "ClientSampler",
    "ConfigError",
    "Dataset",
    "DatasetError",
    "check_fits_data",
    "dataset_metadata",
    "dataset_shape",
    "load_config_dataset",
    "load_dataset",
    "partition",
]
