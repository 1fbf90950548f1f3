"""Seconds of one training round, phase by phase, from its cost, its scheme's schedule and its resources.

Per client ``k`` and per local iteration (``kappa_c``, ``kappa_s``: cycles per FLOP, the client's own
device's and the server's; ``f_k``: client Hz;
``F``: server Hz; ``r_k``: uplink rate at share ``beta_k``; ``r_D``: broadcast rate; ``r_k^D``: unicast
rate over ``1/K`` of the downlink band; ``S``: smashed bits):

    t_F,k = kappa_c * forward FLOPs / f_k        t_U,k = S / r_k
    t_S,k = kappa_s * server FLOPs / (phi_k F)   t_B,k = kappa_c * backward FLOPs / f_k
    t_D,k = S / r_D (broadcast) or S / r_k^D (unicast)

and per round ``q / r_k`` (model upload), ``q / r_D`` (model broadcast) and the migrated blocks. A
scheme's schedule (:class:`~sfl_env.schemes.base.Stage` by stage) says how these combine: a stage is a
chain of phases each client runs back to back and ends at a barrier, so it lasts its slowest client's
chain (or, for a sequential server, the sum over clients); per-iteration stages count ``I`` times. E.g.

    sfl-ga, psl   max_k [t_F + t_U + t_S] + max_k [t_D + t_B]      (the shared server is a barrier)
    sfl-v1        max_k [t_F + t_U + t_S + t_D + t_B]              (independent per-client chains)
    sfl-v2        max_k [t_F + t_U] + sum_k kappa_s FLOPs / F + max_k [t_D + t_B]
    fl            max_k [I (t_F + t_B) + Q / r_k] + Q / r_D        (per round)

The allocation problem of a scheme (:func:`allocation_problem`) is its ``allocated`` stage: the chain
``a_k + D_k / r_k(beta_k) + C_k / (phi_k F)`` with everything that does not depend on the shares in
``a_k``, so ``allocation="optimal"`` minimises that scheme's own critical path.

Downlink rates use the uplink gains (reciprocal channel). A client that must send bits with a zero
bandwidth share, or needs server work with a zero CPU share, makes the round infinitely long.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from solvers import ProblemBatch, ResourceProblem

from .config import ComputeConfig, WirelessConfig
from .errors import ConfigError
from .ledger import RoundCost
from .schemes import Server
from .schemes.base import BANDWIDTH_PHASES, ITERATION_PHASES, SERVER_PHASE, Stage
from .wireless import broadcast_rate_bps, unicast_rate_bps, uplink_rate_bps

PHASES: tuple[str, ...] = (
    "client_forward",
    "uplink",
    "server",
    "gradient_downlink",
    "client_backward",
    "model_aggregation",
    "migration",
)
# The reported phase each round phase is charged to.
_REPORTED_AS = {"model_upload": "model_aggregation", "model_broadcast": "model_aggregation",
                "migration_down": "migration", "migration_up": "migration"}


@dataclass(frozen=True)
class LatencyBreakdown:
    """Seconds of one round, split into phases on the critical path so that they sum to ``total_s``.

    Each stage is charged to its straggler: e.g. for sfl-ga the client ``k*`` with the longest
    ``t_F + t_U + t_S`` contributes ``I t_F,k*``, ``I t_U,k*`` and ``I t_S,k*``. The arrays are
    per client and per iteration (what each client would spend, straggler or not), for rendering.
    """

    total_s: float
    phases: dict[str, float]
    client_forward_s: np.ndarray
    uplink_s: np.ndarray
    server_s: np.ndarray
    gradient_downlink_s: np.ndarray
    client_backward_s: np.ndarray


@dataclass(frozen=True)
class CostBatch:
    """The ledgers of N rounds of one scheme, field by field: each numeric field of
    :class:`~sfl_env.ledger.RoundCost` as an array of shape (N,). The scheme, the number of clients, the
    local iterations and whether the gradient is broadcast are the same in every round."""

    scheme: Scheme
    num_clients: int
    local_iters: int
    gradient_broadcast: bool
    client_forward_flops: np.ndarray
    client_backward_flops: np.ndarray
    server_flops: np.ndarray
    smashed_bits: np.ndarray
    client_model_bits: np.ndarray
    bits_up: np.ndarray
    migrated_bits_up: np.ndarray
    migrated_bits_down: np.ndarray

    @classmethod
    def of(cls, costs: Sequence[RoundCost]) -> CostBatch:
        """The batch of ``costs`` (one scheme, one number of clients and of local iterations)."""
        first = costs[0]
        if any((c.scheme, c.num_clients, c.local_iters, c.gradient_broadcast)
               != (first.scheme, first.num_clients, first.local_iters, first.gradient_broadcast) for c in costs):
            raise ValueError("a CostBatch holds rounds of one scheme, client count, local iterations and downlink")
        fields = {name: np.array([getattr(c, name) for c in costs], dtype=np.float64) for name in _COST_FIELDS}
        return cls(first.scheme, first.num_clients, first.local_iters, first.gradient_broadcast, **fields)

    def take(self, index: np.ndarray) -> CostBatch:
        """The rounds at ``index`` (an integer array), in its order."""
        return dataclasses.replace(self, **{name: getattr(self, name)[index] for name in _COST_FIELDS})


_COST_FIELDS = ("client_forward_flops", "client_backward_flops", "server_flops", "smashed_bits", "client_model_bits",
                "bits_up", "migrated_bits_up", "migrated_bits_down")


@dataclass(frozen=True)
class LatencyBatch:
    """Seconds of N rounds: ``total_s`` (N,), ``phases`` (name -> (N,)) as in :class:`LatencyBreakdown`,
    and each client's per-iteration seconds of the iteration phases (name -> (N, K))."""

    total_s: np.ndarray
    phases: dict[str, np.ndarray]
    per_client_s: dict[str, np.ndarray]

    def row(self, i: int) -> LatencyBreakdown:
        """Round ``i`` as a :class:`LatencyBreakdown`."""
        return LatencyBreakdown(
            total_s=float(self.total_s[i]),
            phases={name: float(value[i]) for name, value in self.phases.items()},
            **{f"{name}_s": _read_only(self.per_client_s[name][i]) for name in ITERATION_PHASES},
        )


def round_latency(
    cost: RoundCost,
    *,
    bandwidth_share: ArrayLike,
    server_cpu_share: ArrayLike,
    uplink_gain: ArrayLike,
    client_cpu_hz: ArrayLike,
    wireless: WirelessConfig,
    compute: ComputeConfig,
    client_cycles_per_flop: ArrayLike | None = None,
    check_inputs: bool = True,
) -> LatencyBreakdown:
    """Seconds of the round that ``cost`` describes, with shares ``beta`` (uplink band) and ``phi``
    (server CPU), timed by its scheme's schedule.

    ``beta`` and ``phi`` each sum to at most 1; a sequential server ignores ``phi`` (one client at a time
    gets the whole server) and so does a scheme without a server. ``client_cycles_per_flop`` is each
    client's (its device's, :class:`~sfl_env.availability.ClientDevices`); None: ``compute``'s for
    every client. ``check_inputs=False`` skips the shape
    and range checks of the four arrays, for callers whose arrays are valid by construction (a solver's
    shares, the env's own channel); invalid arrays then give wrong seconds instead of a ConfigError.
    This is :func:`round_latency_batch` for one round.
    """
    num_clients = cost.num_clients
    if check_inputs:
        beta = _shares("bandwidth_share", bandwidth_share, num_clients)
        phi = _shares("server_cpu_share", server_cpu_share, num_clients)
        gain = _per_client("uplink_gain", uplink_gain, num_clients)
        cpu_hz = _per_client("client_cpu_hz", client_cpu_hz, num_clients, positive=True)
    else:
        arrays = (bandwidth_share, server_cpu_share, uplink_gain, client_cpu_hz)
        beta, phi, gain, cpu_hz = (np.asarray(array, dtype=np.float64) for array in arrays)
    per_flop = _cycles_per_flop(client_cycles_per_flop, compute, num_clients)
    batch = round_latency_batch(CostBatch.of([cost]), beta[None], phi[None], gain[None], cpu_hz[None],
                                per_flop[None], wireless, compute)
    return batch.row(0)


def round_latency_batch(
    costs: CostBatch,
    beta: np.ndarray,
    phi: np.ndarray,
    gain: np.ndarray,
    cpu_hz: np.ndarray,
    cycles_per_flop: np.ndarray,
    wireless: WirelessConfig,
    compute: ComputeConfig,
) -> LatencyBatch:
    """Seconds of N rounds at once: ``costs`` (N rounds), shares ``beta`` and ``phi``, gains, client
    clocks and cycles per FLOP, each of shape (N, K) and valid (unchecked). Each round's seconds are
    computed from its own row only, so that a round priced in a batch equals the same round priced alone."""
    scheme, num_clients = costs.scheme, costs.num_clients
    uplink = (wireless.client_power_w, wireless.bandwidth_hz, wireless.noise_psd_w_per_hz)
    uplink_bps = uplink_rate_bps(beta, gain, *uplink)
    broadcast_bps = broadcast_rate_bps(gain, *_downlink(wireless))
    seconds = _iteration_seconds(costs, gain, cycles_per_flop / cpu_hz, wireless, broadcast_bps)
    seconds["uplink"] = transfer_s(costs.smashed_bits[:, None], uplink_bps)
    server_cycles = compute.server_cycles_per_flop * costs.server_flops
    if scheme.server is Server.SEQUENTIAL:
        seconds["server"] = np.repeat((server_cycles / compute.server_cpu_hz)[:, None], num_clients, axis=1)
    else:
        seconds["server"] = transfer_s(server_cycles[:, None], phi * compute.server_cpu_hz)
    seconds["model_upload"] = transfer_s(costs.client_model_bits[:, None], uplink_bps)
    seconds["model_broadcast"] = transfer_s(costs.client_model_bits, broadcast_bps)
    seconds["migration_down"] = transfer_s(costs.migrated_bits_down, broadcast_bps)
    seconds["migration_up"] = transfer_s((costs.migrated_bits_up / num_clients)[:, None], uplink_bps)

    zeros = np.zeros(len(costs.smashed_bits))
    phases = dict.fromkeys(PHASES, zeros)
    for stage in scheme.stages:
        _charge_stage(stage, seconds, costs.local_iters, phases)
    total = zeros
    for value in phases.values():
        total = total + value
    return LatencyBatch(total, phases, {name: seconds[name] for name in ITERATION_PHASES})


def allocation_problem(
    cost: RoundCost,
    uplink_gain: ArrayLike,
    client_cpu_hz: ArrayLike,
    wireless: WirelessConfig,
    compute: ComputeConfig,
    *,
    client_cycles_per_flop: ArrayLike | None = None,
    check_inputs: bool = True,
) -> ResourceProblem:
    """The resource problem of ``cost``'s round: its scheme's allocated stage as
    ``max_k [a_k + D_k / r_k(beta_k) + C_k / (phi_k F)]``.

    ``D_k`` is the bits of the stage's uplink transfer, ``C_k`` the server cycles when the stage holds a
    server step on a shared CPU, and ``a_k`` the seconds of every other phase of the chain (they do not
    depend on the shares: forward and backward passes, downlinks). Its latency at any shares is exactly
    that stage's seconds in :func:`round_latency` (per iteration for a per-iteration stage).
    ``check_inputs=False`` skips the checks of the two arrays, as in :func:`round_latency`.
    This is :func:`allocation_problem_batch` for one round.
    """
    num_clients = cost.num_clients
    if check_inputs:
        gain = _per_client("uplink_gain", uplink_gain, num_clients)
        cpu_hz = _per_client("client_cpu_hz", client_cpu_hz, num_clients, positive=True)
    else:
        gain, cpu_hz = np.asarray(uplink_gain, dtype=np.float64), np.asarray(client_cpu_hz, dtype=np.float64)
    per_flop = _cycles_per_flop(client_cycles_per_flop, compute, num_clients)
    return allocation_problem_batch(CostBatch.of([cost]), gain[None], cpu_hz[None], per_flop[None], wireless,
                                    compute).problem(0)


def allocation_problem_batch(
    costs: CostBatch,
    gain: np.ndarray,
    cpu_hz: np.ndarray,
    cycles_per_flop: np.ndarray,
    wireless: WirelessConfig,
    compute: ComputeConfig,
) -> ProblemBatch:
    """The resource problems of N rounds (see :func:`allocation_problem`), from (N, K) gains, clocks and
    cycles per FLOP that are valid by construction (unchecked), each row from its own round only."""
    scheme = costs.scheme
    num_rounds, num_clients = gain.shape
    stage = scheme.allocated_stage
    repeats = 1 if stage.per_iteration else costs.local_iters  # of an iteration phase inside the chain
    fixed = [name for name in stage.phases if name not in BANDWIDTH_PHASES and name != SERVER_PHASE]
    seconds = _iteration_seconds(costs, gain, cycles_per_flop / cpu_hz, wireless, None, only=fixed)
    fixed_s = sum((repeats * seconds[name] for name in fixed), np.zeros((num_rounds, num_clients))) \
        if len(fixed) != 1 else repeats * seconds[fixed[0]]
    upload = next(name for name in stage.phases if name in BANDWIDTH_PHASES)
    upload_bits = costs.smashed_bits if upload == "uplink" else costs.client_model_bits
    server_cycles = np.zeros(num_rounds)
    if SERVER_PHASE in stage.phases:
        server_cycles = repeats * compute.server_cycles_per_flop * costs.server_flops
    shape = (num_rounds, num_clients)
    return ProblemBatch.trusted(
        fixed_time_s=fixed_s,
        upload_bits=np.broadcast_to(upload_bits[:, None], shape),
        server_cycles=np.broadcast_to(server_cycles[:, None], shape),
        channel_gain=gain,
        tx_power_w=np.full(shape, wireless.client_power_w),
        noise_psd_w_per_hz=wireless.noise_psd_w_per_hz,
        bandwidth_hz=wireless.bandwidth_hz,
        server_cpu_hz=compute.server_cpu_hz,
    )


def transfer_s(bits: float | np.ndarray, rate_bps: ArrayLike) -> np.ndarray:
    """``bits / rate``: 0 for nothing to send, inf for bits over a zero rate (no warning)."""
    if isinstance(bits, float) and isinstance(rate_bps, float):
        return np.float64(0.0 if bits <= 0 else bits / rate_bps if rate_bps > 0 else math.inf)
    bits = np.asarray(bits, dtype=np.float64)
    rate = np.asarray(rate_bps, dtype=np.float64)
    if bits.min() > 0 and rate.min() > 0:  # the common case (False for NaN): a plain division, the same values
        return bits / rate
    with np.errstate(divide="ignore", invalid="ignore"):
        seconds = bits / rate
    return np.where(bits > 0, np.where(rate > 0, seconds, np.inf), 0.0)


def _downlink(wireless: WirelessConfig) -> tuple[float, float, float]:
    return wireless.server_power_w, wireless.downlink_bandwidth_hz, wireless.noise_psd_w_per_hz


def _cycles_per_flop(value: ArrayLike | None, compute: ComputeConfig, num_clients: int) -> np.ndarray:
    """Each client's cycles per FLOP: its own, or ``compute``'s for every client."""
    if value is None:
        return np.full(num_clients, compute.client_cycles_per_flop)
    return np.asarray(value, dtype=np.float64)


def _iteration_seconds(
    costs: CostBatch,
    gain: np.ndarray,
    seconds_per_flop: np.ndarray,
    wireless: WirelessConfig,
    broadcast_bps: np.ndarray | None,
    only: list[str] | None = None,
) -> dict[str, np.ndarray]:
    """Per-client seconds (N, K) of the iteration phases that do not depend on the shares: the client's
    forward and backward passes and the gradient's downlink (``only``: just these)."""
    wanted = ("client_forward", "gradient_downlink", "client_backward") if only is None else only
    seconds = {}
    for name in wanted:
        if name == "client_forward":
            seconds[name] = costs.client_forward_flops[:, None] * seconds_per_flop
        elif name == "client_backward":
            seconds[name] = costs.client_backward_flops[:, None] * seconds_per_flop
        elif name == "gradient_downlink":
            smashed = costs.smashed_bits[:, None]
            if costs.gradient_broadcast:
                rate = broadcast_bps if broadcast_bps is not None else broadcast_rate_bps(gain, *_downlink(wireless))
                seconds[name] = np.repeat(transfer_s(smashed, rate[:, None]), costs.num_clients, axis=1)
            else:
                seconds[name] = transfer_s(smashed, unicast_rate_bps(gain, *_downlink(wireless), costs.num_clients))
        else:
            raise ValueError(f"phase {name!r} depends on the allocation or is not an iteration phase")
    return seconds


def _charge_stage(stage: Stage, seconds: dict[str, np.ndarray], local_iters: int,
                  phases: dict[str, np.ndarray]) -> None:
    """Adds the seconds ``stage`` lasts in each of N rounds to ``phases``, each phase charged to the
    stage's straggler. A per-client phase is (N, K), a round-wide one (N,)."""
    names = stage.phases
    repeat = local_iters if stage.per_iteration else 1
    if stage.sequential:  # one client after another: the stage lasts the sum
        charged = [seconds[names[0]].sum(axis=-1)]
    elif len(names) == 1:
        value = seconds[names[0]]
        charged = [value if value.ndim == 1 else value.max(axis=-1)]
    else:
        if stage.per_iteration:
            arrays = [seconds[name] for name in names]
        else:  # once per round: an iteration phase runs I times inside each client's chain
            arrays = [local_iters * seconds[name] if name in ITERATION_PHASES else seconds[name] for name in names]
        straggler = sum(array if array.ndim == 2 else array[:, None] for array in arrays).argmax(axis=-1)
        rows = np.arange(len(straggler))
        charged = [array[rows, straggler] if array.ndim == 2 else array for array in arrays]
    for name, value in zip(names, charged):
        reported = _REPORTED_AS.get(name, name)
        phases[reported] = phases[reported] + repeat * value


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
