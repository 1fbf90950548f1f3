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
from solvers.row_runs import over_rows

from .config import ComputeConfig, WirelessConfig
from .errors import ConfigError
from .ledger import RoundCost
from . import latency_kernels as kernels
from .schemes import Server
from .schemes.base import ITERATION_PHASES

# The phases a round's seconds are reported in: the iteration phases, then the model's aggregation and
# migration (each round phase of a schedule is reported as one of these).
PHASES: tuple[str, ...] = kernels.REPORTED_PHASES


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
    """The ledgers of N rounds of one scheme: line ``index[i]`` of ``table`` holds round i's numeric
    fields of :class:`~sfl_env.ledger.RoundCost` (:data:`COST_FIELDS`, also readable by name as (N,)
    arrays). The scheme, the number of clients, the local iterations and whether the gradient is
    broadcast are the same in every round. A batch of some rounds of another shares its table."""

    scheme: Scheme
    num_clients: int
    local_iters: int
    gradient_broadcast: bool
    table: np.ndarray  # (M, len(COST_FIELDS)) float64, C-contiguous
    index: np.ndarray  # (N,) int64
    schedule: np.ndarray  # the scheme's stages for the kernels (latency_kernels.schedule_table)

    @classmethod
    def of(cls, costs: Sequence[RoundCost]) -> CostBatch:
        """The batch of ``costs`` (one scheme, one number of clients and of local iterations)."""
        first = costs[0]
        if any((c.scheme, c.num_clients, c.local_iters, c.gradient_broadcast)
               != (first.scheme, first.num_clients, first.local_iters, first.gradient_broadcast) for c in costs):
            raise ValueError("a CostBatch holds rounds of one scheme, client count, local iterations and downlink")
        table = np.array([[getattr(c, name) for name in COST_FIELDS] for c in costs], dtype=np.float64)
        return cls(first.scheme, first.num_clients, first.local_iters, first.gradient_broadcast, table,
                   np.arange(len(costs), dtype=np.int64), kernels.schedule_table(first.scheme))

    def take(self, index: np.ndarray) -> CostBatch:
        """The rounds at ``index`` (an integer array), in its order."""
        return dataclasses.replace(self, index=self.index[index])

    def __len__(self) -> int:
        return len(self.index)

    def __getattr__(self, name: str) -> np.ndarray:
        if name in COST_FIELDS:
            return self.table[self.index, COST_FIELDS.index(name)]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


# The numeric fields of a RoundCost that pricing reads, in the order of CostBatch.table's columns.
COST_FIELDS = ("client_forward_flops", "client_backward_flops", "server_flops", "smashed_bits", "client_model_bits",
               "bits_up", "migrated_bits_up", "migrated_bits_down")


@dataclass(frozen=True)
class LatencyBatch:
    """Seconds of N rounds: ``total_s`` (N,), ``phases`` (name -> (N,)) as in :class:`LatencyBreakdown`,
    and each client's per-iteration seconds of the iteration phases (name -> (N, K))."""

    total_s: np.ndarray
    phases: dict[str, np.ndarray]
    per_client_s: dict[str, np.ndarray]

    @classmethod
    def of_arrays(cls, total: np.ndarray, phases: np.ndarray, per_client: np.ndarray) -> LatencyBatch:
        """From ``total`` (N,), ``phases`` (N, len(PHASES)) and ``per_client`` (N, len(ITERATION_PHASES), K)."""
        return cls(total, {name: phases[:, p] for p, name in enumerate(PHASES)},
                   {name: per_client[:, p] for p, name in enumerate(ITERATION_PHASES)})

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
    rounds, clients = gain.shape
    phases, total = np.empty((rounds, len(PHASES))), np.empty(rounds)
    per_client = np.empty((rounds, len(ITERATION_PHASES), clients))
    constants, sequential = system_constants(wireless, compute), costs.scheme.server is Server.SEQUENTIAL

    def run(start: int, stop: int) -> None:
        rows = slice(start, stop)
        kernels.phase_seconds(costs.table, costs.index[rows], beta[rows], phi[rows], gain[rows], cpu_hz[rows],
                              cycles_per_flop[rows], constants, costs.schedule, costs.local_iters, sequential,
                              costs.gradient_broadcast, phases[rows], total[rows], per_client[rows])  # fmt: skip

    over_rows(rounds, run)
    return LatencyBatch.of_arrays(total, phases, per_client)


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
    block = np.empty((5, *gain.shape))
    constants = system_constants(wireless, compute)

    def run(start: int, stop: int) -> None:
        rows = slice(start, stop)
        kernels.allocation_problems(costs.table, costs.index[rows], gain[rows], cpu_hz[rows], cycles_per_flop[rows],
                                    constants, costs.schedule, costs.local_iters, costs.gradient_broadcast,
                                    block[:, rows])  # fmt: skip

    over_rows(len(gain), run)
    return ProblemBatch.from_block(block, wireless.noise_psd_w_per_hz, wireless.bandwidth_hz, compute.server_cpu_hz)


def system_constants(wireless: WirelessConfig, compute: ComputeConfig) -> np.ndarray:
    """The constants the kernels read (:mod:`sfl_env.latency_kernels`' ``P_*`` entries)."""
    return np.array([wireless.client_power_w, wireless.bandwidth_hz, wireless.noise_psd_w_per_hz,
                     wireless.server_power_w, wireless.downlink_bandwidth_hz, compute.server_cycles_per_flop,
                     compute.server_cpu_hz, compute.effective_capacitance])


def _cycles_per_flop(value: ArrayLike | None, compute: ComputeConfig, num_clients: int) -> np.ndarray:
    """Each client's cycles per FLOP: its own, or ``compute``'s for every client."""
    if value is None:
        return np.full(num_clients, compute.client_cycles_per_flop)
    return np.asarray(value, dtype=np.float64)


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
