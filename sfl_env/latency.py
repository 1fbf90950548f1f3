"""Seconds of one training round, phase by phase, from what the round did and the resources it got.

Per client ``k`` and per local iteration (``kappa_c``, ``kappa_s``: cycles per FLOP; ``f_k``: client Hz;
``F``: server Hz; ``r_k``: uplink rate at share ``beta_k``; ``r_D``: broadcast rate; ``r_k^D``: unicast
rate over ``1/K`` of the downlink band; ``S``: smashed bits):

    t_F,k = kappa_c * forward FLOPs / f_k        t_U,k = S / r_k
    t_S,k = kappa_s * server FLOPs / (phi_k F)   t_B,k = kappa_c * backward FLOPs / f_k

One iteration takes

    sfl-ga        max_k [t_F + t_U + t_S] + S / r_D + max_k t_B
                  (aggregating the G_k is a barrier; ``S / r_D`` becomes ``max_k [S / r_k^D + t_B]``
                  when the round reports unicast gradients, i.e. partial aggregation)
    sfl-v1, psl   max_k [t_F + t_U + t_S + S / r_k^D + t_B]  (independent per-client chains)
    sfl-v2        max_k [t_F + t_U] + sum_k kappa_s * server FLOPs / F + max_k [S / r_k^D + t_B]

sfl-v2's formula is an approximation: the server serves the clients one after another with its whole
CPU, and we let it start only once every upload has arrived and let the gradients leave only after the
last client has been served. It is an upper bound of the pipelined schedule.

A round is ``I`` iterations plus the model aggregation ``max_k q / r_k + q / r_D`` (sfl-ga, sfl-v1 and
sfl-v2; uploads reuse the shares ``beta_k``; sfl-v1's server copies are averaged inside the server) plus
the migration of blocks when the cut moved (a broadcast down; each client uploads its own copy up).
FL instead takes ``max_k [I kappa_c (forward + backward FLOPs) / f_k + Q / r_k] + Q / r_D``.

Downlink rates use the uplink gains (reciprocal channel). A client that must send bits with a zero
bandwidth share, or needs server work with a zero CPU share, makes the round infinitely long.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from .schemes import SCHEMES, RoundResult
from .validation import ConfigError, check_choice
from .wireless import ComputeConfig, WirelessConfig, broadcast_rate_bps, unicast_rate_bps, uplink_rate_bps

PHASES: tuple[str, ...] = (
    "client_forward",
    "uplink",
    "server",
    "gradient_downlink",
    "client_backward",
    "model_aggregation",
    "migration",
)
_AGGREGATING_SCHEMES = ("sfl-ga", "sfl-v1", "sfl-v2")


@dataclass(frozen=True)
class LatencyBreakdown:
    """Seconds of one round, split into phases on the critical path so that they sum to ``total_s``.

    Each max over clients is charged to its straggler: e.g. for sfl-ga the client ``k*`` with the
    longest ``t_F + t_U + t_S`` contributes ``I t_F,k*``, ``I t_U,k*`` and ``I t_S,k*``. The arrays are
    per client and per iteration (what each client would spend, straggler or not), for rendering.
    """

    total_s: float
    phases: dict[str, float]
    client_forward_s: np.ndarray
    uplink_s: np.ndarray
    server_s: np.ndarray
    gradient_downlink_s: np.ndarray
    client_backward_s: np.ndarray


def transfer_s(bits: float | np.ndarray, rate_bps: ArrayLike) -> np.ndarray:
    """``bits / rate``: 0 for nothing to send, inf for bits over a zero rate (no warning)."""
    if isinstance(bits, float) and isinstance(rate_bps, float):
        return np.float64(0.0 if bits <= 0 else bits / rate_bps if rate_bps > 0 else math.inf)
    if isinstance(bits, float) and _is_float_vector(rate_bps):  # the common case: one size, a rate per client
        if not bits > 0:
            return 0.0 * rate_bps
        if rate_bps.min() > 0:  # every rate usable (False for NaN): a plain division
            return bits / rate_bps
    bits = np.asarray(bits, dtype=np.float64)
    rate = np.asarray(rate_bps, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        seconds = bits / rate
    return np.where(bits > 0, np.where(rate > 0, seconds, np.inf), 0.0 * rate)


def round_latency(
    result: RoundResult,
    *,
    bandwidth_share: ArrayLike,
    server_cpu_share: ArrayLike,
    uplink_gain: ArrayLike,
    client_cpu_hz: ArrayLike,
    wireless: WirelessConfig,
    compute: ComputeConfig,
    check_inputs: bool = True,
) -> LatencyBreakdown:
    """Seconds of ``result``'s round with shares ``beta`` (uplink band) and ``phi`` (server CPU).

    ``beta`` and ``phi`` each sum to at most 1; sfl-v2 ignores ``phi`` (one client at a time gets the
    whole server) and FL ignores it too (no server work). ``check_inputs=False`` skips the shape and
    range checks of the four arrays, for callers whose arrays are valid by construction (a solver's
    shares, the env's own channel); invalid arrays then give wrong seconds instead of a ConfigError.
    """
    check_choice("scheme", result.scheme, SCHEMES)
    num_clients = result.num_clients
    if check_inputs:
        beta = _shares("bandwidth_share", bandwidth_share, num_clients)
        phi = _shares("server_cpu_share", server_cpu_share, num_clients)
        gain = _per_client("uplink_gain", uplink_gain, num_clients)
        cpu_hz = _per_client("client_cpu_hz", client_cpu_hz, num_clients, positive=True)
    else:
        arrays = (bandwidth_share, server_cpu_share, uplink_gain, client_cpu_hz)
        beta, phi, gain, cpu_hz = (np.asarray(array, dtype=np.float64) for array in arrays)

    uplink = (wireless.client_power_w, wireless.bandwidth_hz, wireless.noise_psd_w_per_hz)
    uplink_bps = uplink_rate_bps(beta, gain, *uplink)
    downlink = (gain, wireless.server_power_w, wireless.downlink_bandwidth_hz, wireless.noise_psd_w_per_hz)
    broadcast_bps = broadcast_rate_bps(*downlink)
    if result.gradient_broadcast:
        gradient_bps = np.full(num_clients, broadcast_bps)
    else:
        gradient_bps = unicast_rate_bps(*downlink, num_clients)
    per_client = _per_client_iteration_s(result, phi, cpu_hz, uplink_bps, gradient_bps, compute)

    if result.scheme == "fl":
        phases = _fl_phases(result, per_client, uplink_bps, broadcast_bps)
    else:
        iteration = _iteration_phases(result, per_client)
        phases = {name: result.local_iters * seconds for name, seconds in iteration.items()}
        phases["model_aggregation"] = _model_aggregation_s(result, uplink_bps, broadcast_bps)
        phases["migration"] = _migration_s(result, uplink_bps, broadcast_bps)
    phases = {name: float(phases[name]) for name in PHASES}
    return LatencyBreakdown(
        total_s=float(sum(phases.values())),
        phases=phases,
        client_forward_s=_read_only(per_client["client_forward"]),
        uplink_s=_read_only(per_client["uplink"]),
        server_s=_read_only(per_client["server"]),
        gradient_downlink_s=_read_only(per_client["gradient_downlink"]),
        client_backward_s=_read_only(per_client["client_backward"]),
    )


def iteration_problem_inputs(
    result: RoundResult,
    uplink_gain: ArrayLike,
    client_cpu_hz: ArrayLike,
    wireless: WirelessConfig,
    compute: ComputeConfig,
    *,
    check_inputs: bool = True,
) -> dict[str, np.ndarray | float]:
    """The fields of the server-phase resource problem of one iteration, for ``ResourceProblem(**inputs)``.

    Its latency ``max_k [a_k + D_k / r_k(beta_k) + C_k / (phi_k F)]`` is exactly ``max_k [t_F + t_U + t_S]``
    of :func:`round_latency` at the same shares: sfl-ga's pre-barrier term. ``check_inputs=False`` skips
    the checks of the two arrays, as in :func:`round_latency`.

    FL has no server phase; its uplink carries the model once per round, so its problem is the
    round's straggler term ``max_k [I (t_F + t_B) + q / r_k(beta_k)]`` (no server CPU to share).
    """
    num_clients = result.num_clients
    if check_inputs:
        gain = _per_client("uplink_gain", uplink_gain, num_clients)
        cpu_hz = _per_client("client_cpu_hz", client_cpu_hz, num_clients, positive=True)
    else:
        gain, cpu_hz = np.asarray(uplink_gain, dtype=np.float64), np.asarray(client_cpu_hz, dtype=np.float64)
    if result.scheme == "fl":
        local_flops = result.local_iters * (result.client_forward_flops + result.client_backward_flops)
        fixed_s, upload_bits, server_cycles = compute.client_cycles_per_flop * local_flops / cpu_hz, \
            float(result.client_model_bits), 0.0
    else:
        fixed_s, upload_bits, server_cycles = compute.client_cycles_per_flop * result.client_forward_flops / cpu_hz, \
            float(result.smashed_bits), compute.server_cycles_per_flop * result.server_flops
    return {
        "fixed_time_s": fixed_s,
        "upload_bits": np.full(num_clients, upload_bits),
        "server_cycles": np.full(num_clients, server_cycles),
        "channel_gain": gain,
        "tx_power_w": np.full(num_clients, wireless.client_power_w),
        "noise_psd_w_per_hz": wireless.noise_psd_w_per_hz,
        "bandwidth_hz": wireless.bandwidth_hz,
        "server_cpu_hz": compute.server_cpu_hz,
    }


def _per_client_iteration_s(
    result: RoundResult,
    server_cpu_share: np.ndarray,
    client_cpu_hz: np.ndarray,
    uplink_bps: np.ndarray,
    gradient_bps: np.ndarray,
    compute: ComputeConfig,
) -> dict[str, np.ndarray]:
    """Seconds each client spends in each phase of one local iteration."""
    server_cycles = compute.server_cycles_per_flop * result.server_flops
    if result.server_sequential:
        server_s = np.full(result.num_clients, server_cycles / compute.server_cpu_hz)
    else:
        server_s = transfer_s(server_cycles, server_cpu_share * compute.server_cpu_hz)
    return {
        "client_forward": compute.client_cycles_per_flop * result.client_forward_flops / client_cpu_hz,
        "uplink": transfer_s(result.smashed_bits, uplink_bps),
        "server": server_s,
        "gradient_downlink": transfer_s(result.smashed_bits, gradient_bps),
        "client_backward": compute.client_cycles_per_flop * result.client_backward_flops / client_cpu_hz,
    }


def _iteration_phases(result: RoundResult, t: dict[str, np.ndarray]) -> dict[str, float]:
    """One iteration's seconds per phase, each max charged to its straggler."""
    if result.scheme in ("sfl-v1", "psl"):
        return _straggler(t, tuple(t))
    if result.scheme == "sfl-v2":
        return (
            _straggler(t, ("client_forward", "uplink"))
            | {"server": float(np.sum(t["server"]))}
            | _straggler(t, ("gradient_downlink", "client_backward"))
        )
    before_barrier = _straggler(t, ("client_forward", "uplink", "server"))
    if result.gradient_broadcast:
        return before_barrier | {
            "gradient_downlink": float(t["gradient_downlink"][0]),
            "client_backward": float(t["client_backward"].max()),
        }
    return before_barrier | _straggler(t, ("gradient_downlink", "client_backward"))


def _straggler(t: dict[str, np.ndarray], names: tuple[str, ...]) -> dict[str, float]:
    """The phases ``names`` of the client whose chain of them is the longest."""
    chain = sum(t[name] for name in names)
    k = int(chain.argmax())
    return {name: float(t[name][k]) for name in names}


def _model_aggregation_s(result: RoundResult, uplink_bps: np.ndarray, broadcast_bps: float) -> float:
    if result.scheme not in _AGGREGATING_SCHEMES:
        return 0.0
    upload = float(transfer_s(result.client_model_bits, uplink_bps).max())
    return upload + float(transfer_s(result.client_model_bits, broadcast_bps))


def _migration_s(result: RoundResult, uplink_bps: np.ndarray, broadcast_bps: float) -> float:
    down = float(transfer_s(result.migrated_bits_down, broadcast_bps))
    up = float(transfer_s(result.migrated_bits_up / result.num_clients, uplink_bps).max())
    return down + up


def _fl_phases(
    result: RoundResult, t: dict[str, np.ndarray], uplink_bps: np.ndarray, broadcast_bps: float
) -> dict[str, float]:
    """FedAvg: the straggler of local training + model upload, then the model broadcast.

    Both model transfers are model aggregation (``uplink`` is reserved for smashed data).
    """
    iters, t_forward, t_backward = result.local_iters, t["client_forward"], t["client_backward"]
    upload = transfer_s(result.client_model_bits, uplink_bps)
    k = int(np.argmax(iters * (t_forward + t_backward) + upload))
    return {
        "client_forward": iters * t_forward[k],
        "uplink": 0.0,
        "server": 0.0,
        "gradient_downlink": 0.0,
        "client_backward": iters * t_backward[k],
        "model_aggregation": upload[k] + float(transfer_s(result.client_model_bits, broadcast_bps)),
        "migration": 0.0,
    }


def _is_float_vector(value: object) -> bool:
    """Whether ``value`` is already a non-empty 1-D float64 array (needs no conversion)."""
    return isinstance(value, np.ndarray) and value.dtype == np.float64 and value.ndim == 1 and value.size > 0


def _per_client(name: str, value: ArrayLike, num_clients: int, *, positive: bool = False) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.shape != (num_clients,):
        raise ConfigError(f"{name} has shape {array.shape}; allowed: one value per client, shape ({num_clients},)")
    lowest, highest = (array.min(), array.max()) if array.size else (1.0, 1.0)  # NaN fails both tests below
    if not ((lowest > 0 if positive else lowest >= 0) and highest < math.inf):
        raise ConfigError(f"{name}={array!r} is out of range; allowed: finite values {'>' if positive else '>='} 0")
    return array


def _shares(name: str, value: ArrayLike, num_clients: int) -> np.ndarray:
    array = _per_client(name, value, num_clients)
    if array.sum() > 1.0 + 1e-9:
        raise ConfigError(f"{name} sums to {array.sum():.12g}; allowed: shares >= 0 summing to at most 1")
    return array


def _read_only(array: np.ndarray) -> np.ndarray:
    """Freezes a freshly computed float array in place (copies only what it does not own)."""
    array = np.asarray(array, dtype=np.float64)
    if array.base is not None or array.flags.writeable is False:
        array = array.copy()
    array.setflags(write=False)
    return array
