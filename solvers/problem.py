"""Problem and result types of the per-iteration resource allocation, and its latency model.

One local iteration of split federated learning at a fixed cut: client ``k`` spends a fixed
time ``a_k`` on its own forward pass, uploads ``D_k`` bits over an FDMA share ``beta_k`` of the
uplink band ``B`` at the Shannon rate

    r_k(beta_k) = beta_k * B * log2(1 + p_k g_k / (beta_k * B * N0)),

and the server spends ``C_k`` cycles on the client's batch with a share ``phi_k`` of its CPU
``F``.  The allocation problem is

    minimise T  s.t.  a_k + D_k / r_k(beta_k) + C_k / (phi_k F) <= T,
                      sum(beta) <= 1,  sum(phi) <= 1,  beta, phi >= 0.

A term whose work is zero (``D_k = 0`` or ``C_k = 0``) vanishes and needs no share.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from numba import njit

LN2 = float(np.log(2.0))

_PER_CLIENT_FIELDS = (
    # (field name, lower bound, whether the bound itself is allowed)
    ("fixed_time_s", 0.0, True),
    ("upload_bits", 0.0, True),
    ("server_cycles", 0.0, True),
    ("channel_gain", 0.0, False),
    ("tx_power_w", 0.0, False),
)
_SCALAR_FIELDS = ("noise_psd_w_per_hz", "bandwidth_hz", "server_cpu_hz")


def _allowed(lower: float, inclusive: bool) -> str:
    return f"finite values {'>=' if inclusive else '>'} {lower:g}"


def _check_values(name: str, values: np.ndarray, lower: float, inclusive: bool) -> None:
    """Raises ValueError naming the first value of ``values`` that is out of range, if any."""
    ok = np.isfinite(values) & ((values >= lower) if inclusive else (values > lower))
    if not ok.all():
        index = int(np.flatnonzero(~ok)[0])
        where = f" at index {index}" if values.size > 1 else ""
        raise ValueError(f"{name}: got {float(values[index])!r}{where}; allowed are {_allowed(lower, inclusive)}")


def _as_float_vector(name: str, value: object) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name}: cannot convert {value!r} to a float array ({error})") from None
    if array.ndim > 1:
        raise ValueError(f"{name}: got shape {array.shape}; allowed are a scalar or a 1-D array")
    return array


def _as_positive_scalar(name: str, value: object) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < math.inf:
        return float(value)
    array = _as_float_vector(name, value)
    if array.ndim != 0 and array.shape != (1,):
        raise ValueError(f"{name}: got shape {array.shape}; allowed is a scalar")
    scalar = float(array.reshape(-1)[0])
    _check_values(name, np.array([scalar]), 0.0, False)
    return scalar


@dataclass(frozen=True, eq=False)
class ResourceProblem:
    """One allocation instance (symbols as in the module docstring).

    Per-client fields (``a``, ``D``, ``C`` in s, bit, cycles; channel power gain ``g``;
    transmit power ``p`` in W) take arrays of length K or scalars, which are broadcast to the
    common length (K = 1 when all are scalars) and stored as read-only float64 arrays.  The
    system fields are ``N0`` in W/Hz, ``B`` in Hz and ``F`` in cycles/s.  Invalid values raise
    ValueError naming the field, the value and what is allowed.
    """

    fixed_time_s: np.ndarray
    upload_bits: np.ndarray
    server_cycles: np.ndarray
    channel_gain: np.ndarray
    tx_power_w: np.ndarray
    noise_psd_w_per_hz: float
    bandwidth_hz: float
    server_cpu_hz: float

    def __post_init__(self) -> None:
        arrays = {name: _as_float_vector(name, getattr(self, name)) for name, _, _ in _PER_CLIENT_FIELDS}
        # One fresh read-only (fields, K) block holds them all; each field is a row of it.
        block = np.empty((len(arrays), _common_length(arrays)))
        for row, array in zip(block, arrays.values()):
            row[...] = array  # broadcasts a scalar
        _check_per_client(block)
        block.setflags(write=False)
        for name, row in zip(arrays, block):
            object.__setattr__(self, name, row)
        for name in _SCALAR_FIELDS:
            object.__setattr__(self, name, _as_positive_scalar(name, getattr(self, name)))

    @property
    def num_clients(self) -> int:
        return int(self.fixed_time_s.shape[0])

    @property
    def full_band_snr(self) -> np.ndarray:
        """Per-client SNR ``p g / (B N0)`` when the client holds the whole band."""
        return self.tx_power_w * self.channel_gain / (self.bandwidth_hz * self.noise_psd_w_per_hz)

    @functools.cached_property
    def every_client_has_work(self) -> bool:
        """Whether every client has both upload bits and server cycles (the common case)."""
        return bool(self.upload_bits.min() > 0 and self.server_cycles.min() > 0)


def _check_per_client(block: np.ndarray) -> None:
    """Checks the rows of ``block`` (the per-client fields in their order) against their bounds,
    raising for the first out-of-range value of the first field that has one."""
    lowest = block.min(axis=1).tolist()  # NaN in a row makes its minimum NaN, which fails the test below
    finite = bool(block.max() < math.inf)
    for (name, lower, inclusive), row, low in zip(_PER_CLIENT_FIELDS, block, lowest):
        if not (finite and (low >= lower if inclusive else low > lower)):
            _check_values(name, row, lower, inclusive)


def _common_length(arrays: dict[str, np.ndarray]) -> int:
    lengths = {name: array.shape[0] for name, array in arrays.items() if array.ndim == 1}
    distinct = set(lengths.values())
    if 0 in distinct:
        empty = next(name for name, n in lengths.items() if n == 0)
        raise ValueError(f"{empty}: got an empty array; allowed are K >= 1 clients")
    if len(distinct) > 1:
        raise ValueError(
            "per-client fields must have the same length K >= 1 (or be scalars); got lengths "
            + ", ".join(f"{name}={n}" for name, n in lengths.items())
        )
    return distinct.pop() if distinct else 1


@dataclass(frozen=True, eq=False)
class Allocation:
    """Shares handed to the clients and the iteration latency they achieve.

    ``latency_s`` is recomputed from the shares with :func:`iteration_latency`, never taken
    from a solver's objective.  ``method`` is ``"exact"``, ``"cvxpy"`` or ``"equal"``.
    ``fallback`` is True when the solve failed and the shares are the equal split; ``method``
    then still names the solver that failed and ``status`` says what failed.
    """

    bandwidth_share: np.ndarray
    server_cpu_share: np.ndarray
    latency_s: float
    status: str
    solve_time_s: float
    method: str
    fallback: bool = False


def shannon_rate_bps(share: np.ndarray | float, full_band_snr: np.ndarray | float, bandwidth_hz: float) -> np.ndarray:
    """``beta B log2(1 + snr / beta)``: the Shannon rate in bit/s on a share ``beta`` of a band ``B`` whose
    whole-band SNR is ``snr`` (0 where the share is 0). The one definition of the uplink rate."""
    share = np.asarray(share, dtype=np.float64)
    if share.size and share.min() > 0 and share.max() < math.inf:  # the common case: no special values
        return share * bandwidth_hz * np.log1p(full_band_snr / share) / LN2
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = share * bandwidth_hz * np.log1p(full_band_snr / share) / LN2
    return np.where(share > 0, rate, 0.0)


@njit(cache=True, error_model="numpy", nogil=True)
def shannon_rate(share: float, full_band_snr: float, bandwidth_hz: float) -> float:
    """:func:`shannon_rate_bps` of one client, compiled (the C library's ``log1p``: equal to numpy's to round-off)."""
    if share > 0:
        return share * bandwidth_hz * math.log1p(full_band_snr / share) / LN2
    return 0.0


def uplink_rate(problem: ResourceProblem, bandwidth_share: np.ndarray) -> np.ndarray:
    """Shannon rate in bit/s of each client at its bandwidth share (0 where the share is 0)."""
    return shannon_rate_bps(bandwidth_share, problem.full_band_snr, problem.bandwidth_hz)


def iteration_latency(
    problem: ResourceProblem, bandwidth_share: np.ndarray, server_cpu_share: np.ndarray
) -> np.ndarray:
    """Per-client latency ``a_k + D_k / r_k + C_k / (phi_k F)``; inf where a needed share is 0."""
    beta = np.asarray(bandwidth_share, dtype=np.float64)
    phi = np.asarray(server_cpu_share, dtype=np.float64)
    rate = uplink_rate(problem, beta)
    if problem.every_client_has_work and _positive(rate, phi):  # the common case: every term finite
        upload = problem.upload_bits / rate
        compute = problem.server_cycles / (phi * problem.server_cpu_hz)
        return problem.fixed_time_s + upload + compute
    with np.errstate(divide="ignore", invalid="ignore"):
        upload = np.where(problem.upload_bits > 0, problem.upload_bits / rate, 0.0)
        compute = np.where(
            problem.server_cycles > 0, problem.server_cycles / (phi * problem.server_cpu_hz), 0.0
        )
    upload = np.where((problem.upload_bits > 0) & ~(rate > 0), np.inf, upload)
    compute = np.where((problem.server_cycles > 0) & ~(phi > 0), np.inf, compute)
    return problem.fixed_time_s + upload + compute


def _positive(*arrays: np.ndarray) -> bool:
    """Whether every array is non-empty and all its values are > 0 (False for NaN)."""
    return all(array.size and array.min() > 0 for array in arrays)
