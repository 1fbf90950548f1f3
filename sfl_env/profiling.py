"""Per-block cost profile of a split model: FLOPs, parameter bits and smashed-data size.

Measured once per architecture (model name, input shape, classes, width) with torch's FLOP counter and
cached. These are the quantities the paper's latency model is written in (SFL-GA, arXiv 2501.01078):
psi(l) (smashed elements per sample), q(l) (client-side model bits), Phi_c^F/B(l) and Phi_s^F/B(l)
(client and server FLOPs per sample).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from .models import SplitModel

_PROBE_BATCH = 2  # BatchNorm in training mode needs more than one sample per channel


@dataclass(frozen=True)
class ModelProfile:
    """Per-sample costs of each block of one architecture.

    ``smashed_elements[l]`` is the size of the activation that crosses cut ``l`` (the output of block
    ``l - 1``); index 0 is the raw input. The backward FLOPs of block 0 exclude the gradient with
    respect to the raw input (nobody needs it); every other block includes it.
    """

    arch_key: tuple
    forward_flops: np.ndarray
    backward_flops: np.ndarray
    param_bits: np.ndarray
    smashed_elements: np.ndarray
    bits_per_value: int

    @property
    def num_blocks(self) -> int:
        return len(self.forward_flops)

    @property
    def model_bits(self) -> float:
        """Q: bits of the whole model."""
        return float(self.param_bits.sum())

    def client_model_bits(self, cut: int) -> float:
        """q(l): bits of blocks ``[0, cut)``."""
        return float(self.param_bits[:cut].sum())

    def blocks_bits(self, start: int, stop: int) -> float:
        return float(self.param_bits[start:stop].sum())

    def smashed_bits(self, cut: int, batch_size: int) -> float:
        """S(l) = b * psi(l) * delta: one client's smashed batch (or its gradient) at ``cut``."""
        return float(batch_size * self.smashed_elements[cut] * self.bits_per_value)

    def client_forward_flops(self, cut: int) -> float:
        return float(self.forward_flops[:cut].sum())

    def client_backward_flops(self, cut: int) -> float:
        return float(self.backward_flops[:cut].sum())

    def server_flops(self, cut: int) -> float:
        """Forward plus backward FLOPs per sample of blocks ``[cut, L)``."""
        return float(self.forward_flops[cut:].sum() + self.backward_flops[cut:].sum())


_CACHE: dict[tuple, ModelProfile] = {}


def profile_model(model: SplitModel, bits_per_value: int = 32) -> ModelProfile:
    """Measures (or returns the cached) profile of ``model``'s architecture."""
    key = (model.arch_key, bits_per_value)
    if key not in _CACHE:
        _CACHE[key] = _measure(model, bits_per_value)
    return _CACHE[key]


def _measure(model: SplitModel, bits_per_value: int) -> ModelProfile:
    # A float32 copy: BatchNorm statistics of the real model stay untouched, and FLOPs are the architecture's
    probe = copy.deepcopy(model).cpu().float().train()
    x = model.example_input(_PROBE_BATCH)
    forward, backward, bits, elements = [], [], [], [x[0].numel()]
    for i, block in enumerate(probe.blocks):
        inp = x.detach().requires_grad_(i > 0)  # block 0's input is data (tokens are not differentiable)
        with FlopCounterMode(display=False) as counter:
            out = block(inp)
        forward.append(counter.get_total_flops() / _PROBE_BATCH)
        with FlopCounterMode(display=False) as counter:
            out.sum().backward()
        backward.append(counter.get_total_flops() / _PROBE_BATCH)
        values = sum(p.numel() for p in block.parameters())
        values += sum(b.numel() for b in block.buffers() if b.is_floating_point())
        bits.append(values * bits_per_value)
        elements.append(out[0].numel())
        x = out.detach()
    return ModelProfile(
        arch_key=model.arch_key,
        forward_flops=_read_only(forward),
        backward_flops=_read_only(backward),
        param_bits=_read_only(bits),
        smashed_elements=_read_only(elements[:-1]),
        bits_per_value=bits_per_value,
    )


def _read_only(values: list[float]) -> np.ndarray:
    """A float64 array nobody can write to: profiles are cached and shared by every model of an architecture."""
    array = np.asarray(values, dtype=np.float64)
    array.setflags(write=False)
    return array
