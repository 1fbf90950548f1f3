"""How much memory a configuration's real training needs, estimated before any work starts.

A round of real training holds, at its peak, the activations every client's batch saves for the
backward pass (the clients run side by side under ``vmap``, so K x batch samples at once) and the
weights, gradients and optimizer state of the server and of the K client copies. The activations are
measured, not guessed: one block at a time, the tensors autograd saves are counted
(``torch.autograd.graph.saved_tensors_hooks``) at two batch sizes, whose difference is the cost of one
sample. A language model's cost grows with the context as ``a T + b T^2`` (attention scores are T x T per
head), so it is measured at three short contexts and extrapolated exactly, never at the long one.

:func:`check_training_memory` refuses, at the env's construction, a configuration whose round cannot fit
the memory this machine has available, naming the estimate. Evaluation runs without autograd and in
chunks; :func:`eval_batch_size` sizes the chunks so that one chunk's activations stay under
:data:`EVAL_ACTIVATION_BYTES` whatever the context.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from .errors import ConfigError

if TYPE_CHECKING:
    from .config import SFLConfig

EVAL_ACTIVATION_BYTES = 1 << 30  # one evaluation chunk's activations: 1 GiB (a fixed size, the same on any machine)
MAX_EVAL_BATCH = 2048
_PROBE_CONTEXTS = (8, 16, 32)  # a language model is measured at these contexts, then extrapolated
_OPTIMIZER_STATES = {"sgd": 1, "adam": 2}  # momentum; Adam's two moments
# The peak of a pass is above what it saves: the backward pass's gradients of the activations and the
# forward's transients (attention scores before the softmax) coexist with them. Measured on the lm preset
# (one real round, num_test=16; benchmarks/memory_estimate.py): the peak resident memory grew by 1.46-1.75x
# of (saved activations + parameters) at contexts 128-512; the activations are counted twice.
AUTOGRAD_FACTOR = 2.0


@dataclass(frozen=True)
class MemoryEstimate:
    """One round's memory, in bytes."""

    activations: float  # what K x batch samples save for the backward pass
    parameters: float  # weights, gradients and optimizer state of the server and the K client copies
    per_sample: float  # activations one sample saves, over the whole model
    eval_per_sample: float  # the largest block's activations of one sample, what an evaluation chunk holds

    @property
    def total(self) -> float:
        return AUTOGRAD_FACTOR * self.activations + self.parameters


def estimate_training_memory(model_name: str, input_shape: tuple[int, ...], num_classes: int,
                             model_options: dict, num_clients: int, batch_size: int,
                             optimizer: str = "sgd") -> MemoryEstimate:
    """The memory of one round of real training of ``model_name`` by ``num_clients`` clients."""
    blocks = _per_sample_bytes(model_name, tuple(input_shape), num_classes, tuple(sorted(model_options.items())))
    parameters = _parameter_bytes(model_name, tuple(input_shape), num_classes, tuple(sorted(model_options.items())))
    copies = (num_clients + 1) * (2 + _OPTIMIZER_STATES.get(optimizer, 2))  # weights, gradients, state
    return MemoryEstimate(activations=float(num_clients * batch_size * blocks.sum()),
                          parameters=float(copies * parameters),
                          per_sample=float(blocks.sum()), eval_per_sample=float(blocks.max()))


def training_memory(system: SFLConfig, input_shape: tuple[int, ...], num_classes: int) -> MemoryEstimate:
    """:func:`estimate_training_memory` of an SFL system's model, data shape, clients and optimizer."""
    return estimate_training_memory(system.model, tuple(input_shape), num_classes, system.model_options,
                                    system.num_clients, system.batch_size, system.optimizer)


def available_memory_bytes(device: str = "cpu") -> float | None:
    """Memory the process can still take: the GPU's free memory for a CUDA device, else the system's
    ``MemAvailable`` (Linux), else its free physical pages; None where none of these can be read."""
    if device.startswith("cuda") and torch.cuda.is_available():
        return float(torch.cuda.mem_get_info(torch.device(device))[0])
    try:
        with open("/proc/meminfo") as file:
            for line in file:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def check_training_memory(estimate: MemoryEstimate, setting: str, device: str = "cpu",
                          available: float | None = None) -> None:
    """Raises :class:`ConfigError` naming the estimate when one round would not fit the memory available."""
    available = available_memory_bytes(device) if available is None else available
    if available is None or estimate.total <= available:
        return
    raise ConfigError(
        f"{setting}: one round of real training needs about {_gb(estimate.total)} ({AUTOGRAD_FACTOR:g} x the "
        f"activations saved for the backward pass, {_gb(estimate.activations)}, {_gb(estimate.per_sample)} per sample; weights, gradients and optimizer "
        f"state {_gb(estimate.parameters)}), and {device} has {_gb(available)} available; allowed: a "
        "configuration that fits (fewer num_clients, a smaller batch_size, context_length or model_width)")


def eval_batch_size(estimate: MemoryEstimate) -> int:
    """Samples per evaluation chunk: up to :data:`MAX_EVAL_BATCH`, fewer when a sample's activations are
    large, so that a chunk holds at most :data:`EVAL_ACTIVATION_BYTES`."""
    per_sample = AUTOGRAD_FACTOR * max(estimate.eval_per_sample, 1.0)
    return int(max(1, min(MAX_EVAL_BATCH, EVAL_ACTIVATION_BYTES // per_sample)))


def _gb(value: float) -> str:
    return f"{value / 1e9:.2f} GB"


@functools.lru_cache(maxsize=64)
def _per_sample_bytes(model_name: str, input_shape: tuple[int, ...], num_classes: int,
                      options: tuple) -> np.ndarray:
    """Bytes each block saves for the backward pass per sample (the last block's logits included)."""
    from .models import build_model

    def measure(shape: tuple[int, ...]) -> np.ndarray:
        model = build_model(model_name, shape, num_classes, **dict(options)).train()
        return _saved_bytes(model, 4) - _saved_bytes(model, 2)

    is_text = model_name == "gpt"
    if not is_text or input_shape[0] <= _PROBE_CONTEXTS[-1]:
        return measure(input_shape) / 2
    contexts = np.array(_PROBE_CONTEXTS, dtype=np.float64)
    measured = np.stack([measure((int(t),)) / 2 for t in contexts])  # (3, blocks)
    # exact for a T + b T^2 + c: three contexts, three coefficients per block
    coefficients = np.linalg.solve(np.vander(contexts, 3), measured)
    return np.maximum(np.vander(np.array([float(input_shape[0])]), 3) @ coefficients, 0.0)[0]


def _saved_bytes(model: nn.Module, batch: int) -> np.ndarray:
    """What each block of ``model`` (a SplitModel) saves for backward on a batch of ``batch`` samples."""
    x = model.example_input(batch)
    sizes = []
    for i, block in enumerate(model.blocks):
        parameters = {p.untyped_storage().data_ptr() for p in block.parameters()}
        saved: dict[int, int] = {}

        def pack(tensor: torch.Tensor) -> torch.Tensor:
            storage = tensor.untyped_storage()
            if storage.data_ptr() not in parameters:
                saved[storage.data_ptr()] = storage.nbytes()
            return tensor

        inp = x.detach().requires_grad_(i > 0)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            x = block(inp)
        sizes.append(sum(saved.values()) + (x.numel() * x.element_size() if i == len(model.blocks) - 1 else 0))
    return np.array(sizes, dtype=np.float64)


@functools.lru_cache(maxsize=64)
def _parameter_bytes(model_name: str, input_shape: tuple[int, ...], num_classes: int, options: tuple) -> float:
    from .models import build_model

    model = build_model(model_name, input_shape, num_classes, **dict(options))
    return float(sum(p.numel() * p.element_size() for p in model.parameters()))
