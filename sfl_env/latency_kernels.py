"""The latency ledger's arithmetic, compiled: N rounds' phase seconds, allocation problems and client
energy, one round (row) at a time, and the pricer's one pass over them with the exact solver.

:mod:`sfl_env.latency` and :mod:`sfl_env.energy` are the API and say what is computed; this module is
how. Each kernel reads a round's ledger (a line of :class:`~sfl_env.latency.CostBatch`'s table), its
(K,) state rows and the system's constants, and writes that round's row of the output. A round is
computed by the same scalar code whatever the other rows, so it is bitwise the same priced alone or
in a batch of any size; that is what makes a single env and the native vector env agree exactly.

A scheme's schedule reaches the kernels as a table of integers (:func:`schedule_table`): one line per
stage, with its flags and the codes of its phases (:data:`ROUND_PHASE_CODES`).

Sums over clients are numpy's (:func:`solvers.batch.numpy_sum`), chains add left to right, and
``log1p`` is the C library's, so figures agree with numpy's vectorised arithmetic to round-off.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from numba import njit

from solvers import batch, model_root, newton, problem, row_runs
from solvers.batch import finish_row, numpy_sum
from solvers.kernel_cache import drop_stale_kernels
from solvers.newton import solve_row
from solvers.problem import shannon_rate
from solvers.row_runs import claim_rows

from .schemes import Scheme
from .schemes.base import BANDWIDTH_PHASES, ITERATION_PHASES, ROUND_PHASES, SERVER_PHASE

__all__ = ["REPORTED_PHASES", "ROUND_PHASE_CODES", "allocation_problems", "client_energy", "phase_seconds",
           "priced_rows", "schedule_table"]

drop_stale_kernels(__file__, newton.__file__, model_root.__file__, batch.__file__, problem.__file__,
                   row_runs.__file__)  # the solver and the row claims are compiled in
_COMPILE = {"cache": True, "error_model": "numpy", "nogil": True}  # numpy's error model: 1/0 is inf
_ROWS_PER_CLAIM = 8  # rows a run of priced_rows takes at a time (~60 us): threads end within that of each other

# Every phase a stage can hold, by code: the iteration phases, then the round phases.
ROUND_PHASE_CODES: dict[str, int] = {name: code for code, name in enumerate(ITERATION_PHASES + ROUND_PHASES)}
FORWARD, UPLINK, SERVER, DOWNLINK, BACKWARD, MODEL_UP, MODEL_DOWN, MIGRATION_DOWN, MIGRATION_UP = range(9)
# The phases a round's seconds are reported in (latency.PHASES), and the one each phase is charged to.
REPORTED_PHASES: tuple[str, ...] = (*ITERATION_PHASES, "model_aggregation", "migration")
_REPORTED_AS = {"model_upload": "model_aggregation", "model_broadcast": "model_aggregation",
                "migration_down": "migration", "migration_up": "migration"}
REPORTED = np.array([REPORTED_PHASES.index(_REPORTED_AS.get(name, name)) for name in ROUND_PHASE_CODES])
# The cost table's columns (latency.COST_FIELDS).
C_FORWARD, C_BACKWARD, C_SERVER, C_SMASHED, C_MODEL, C_BITS_UP, C_MIGRATED_UP, C_MIGRATED_DOWN = range(8)
# The system constants' entries.
(P_CLIENT_W, P_BANDWIDTH_HZ, P_NOISE, P_SERVER_W, P_DOWNLINK_HZ, P_SERVER_PER_FLOP, P_SERVER_HZ,
 P_CAPACITANCE) = range(8)  # fmt: skip
# A schedule line: phase count, per iteration, sequential, allocated, then the phase codes (-1 pads).
N_PHASES, PER_ITERATION, SEQUENTIAL, ALLOCATED, FIRST_PHASE = range(5)
_MAX_STAGE_PHASES = len(ITERATION_PHASES + ROUND_PHASES)


@lru_cache(maxsize=None)
def schedule_table(scheme: Scheme) -> np.ndarray:
    """``scheme``'s stages as a read-only int64 table, one line per stage (see the module docstring)."""
    allocated = scheme.allocated_stage
    fixed = [name for name in allocated.phases if name not in BANDWIDTH_PHASES and name != SERVER_PHASE]
    if any(name not in ITERATION_PHASES for name in fixed):
        raise ValueError(f"scheme {scheme.name!r}: its allocated stage {allocated.phases} holds a round phase other "
                         f"than an uplink transfer; allowed there: {ITERATION_PHASES + BANDWIDTH_PHASES}")
    table = np.full((len(scheme.stages), FIRST_PHASE + _MAX_STAGE_PHASES), -1, dtype=np.int64)
    for line, stage in zip(table, scheme.stages):
        line[:FIRST_PHASE] = (len(stage.phases), stage.per_iteration, stage.sequential, stage.allocated)
        line[FIRST_PHASE:FIRST_PHASE + len(stage.phases)] = [ROUND_PHASE_CODES[name] for name in stage.phases]
    table.setflags(write=False)
    return table


@njit(**_COMPILE)
def transfer(bits: float, rate: float) -> float:
    """``bits / rate``: 0 for nothing to send, inf for bits over a rate that is not positive."""
    if bits > 0:
        return bits / rate if rate > 0 else math.inf
    return 0.0


@njit(**_COMPILE)
def _broadcast_rate(gain, constants) -> float:
    """The rate every client decodes: the downlink at the worst gain (NaN-propagating minimum)."""
    worst = gain[0]
    for k in range(1, gain.size):
        if not gain[k] >= worst:
            worst = gain[k]
    snr = constants[P_SERVER_W] * worst / (constants[P_DOWNLINK_HZ] * constants[P_NOISE])
    return shannon_rate(1.0, snr, constants[P_DOWNLINK_HZ])


@njit(**_COMPILE)
def _iteration_seconds(cost, gain, cpu_hz, cycles_per_flop, constants, broadcast, broadcast_bps, k):
    """Client k's seconds of the phases that do not depend on the shares: forward, gradient downlink,
    backward."""
    per_flop = cycles_per_flop[k] / cpu_hz[k]
    if broadcast:
        downlink = transfer(cost[C_SMASHED], broadcast_bps)
    else:
        clients = gain.size
        snr = constants[P_SERVER_W] / clients * gain[k] / (constants[P_DOWNLINK_HZ] * constants[P_NOISE])
        downlink = transfer(cost[C_SMASHED], shannon_rate(1.0 / clients, snr, constants[P_DOWNLINK_HZ]))
    return cost[C_FORWARD] * per_flop, downlink, cost[C_BACKWARD] * per_flop


@njit(**_COMPILE)
def _uplink_rates(beta, gain, constants, rates) -> None:
    """Each client's uplink rate (bit/s) on its share ``beta[k]`` of the band, into ``rates`` (K,)."""
    uplink_snr_scale = constants[P_BANDWIDTH_HZ] * constants[P_NOISE]
    for k in range(gain.size):
        rates[k] = shannon_rate(beta[k], constants[P_CLIENT_W] * gain[k] / uplink_snr_scale, constants[P_BANDWIDTH_HZ])


@njit(**_COMPILE)
def _phase_row(cost, rates, phi, gain, cpu_hz, cycles_per_flop, constants, sequential, broadcast, seconds):
    """One round's (9, K) seconds of every phase (a round-wide phase repeated over the clients), the clients
    sending at ``rates`` (:func:`_uplink_rates`)."""
    clients = gain.size
    broadcast_bps = _broadcast_rate(gain, constants)
    server_cycles = constants[P_SERVER_PER_FLOP] * cost[C_SERVER]
    for k in range(clients):
        forward, downlink, backward = _iteration_seconds(cost, gain, cpu_hz, cycles_per_flop, constants, broadcast,
                                                         broadcast_bps, k)  # fmt: skip
        rate = rates[k]
        seconds[FORWARD, k], seconds[DOWNLINK, k], seconds[BACKWARD, k] = forward, downlink, backward
        seconds[UPLINK, k] = transfer(cost[C_SMASHED], rate)
        if sequential:
            seconds[SERVER, k] = server_cycles / constants[P_SERVER_HZ]
        else:
            seconds[SERVER, k] = transfer(server_cycles, phi[k] * constants[P_SERVER_HZ])
        seconds[MODEL_UP, k] = transfer(cost[C_MODEL], rate)
        seconds[MODEL_DOWN, k] = transfer(cost[C_MODEL], broadcast_bps)
        seconds[MIGRATION_DOWN, k] = transfer(cost[C_MIGRATED_DOWN], broadcast_bps)
        seconds[MIGRATION_UP, k] = transfer(cost[C_MIGRATED_UP] / clients, rate)


@njit(**_COMPILE)
def _charge(schedule, seconds, local_iters, phases, row) -> None:
    """Adds each stage's seconds to ``phases[row]``, each phase charged to the stage's straggler (the
    client whose chain is longest; the first of equals; a NaN chain is the straggler)."""
    clients = seconds.shape[1]
    for line in schedule:
        count = line[N_PHASES]
        repeat = local_iters if line[PER_ITERATION] else 1
        first = line[FIRST_PHASE]
        if line[SEQUENTIAL]:  # one client after another: the stage lasts the sum
            phases[row, REPORTED[first]] += repeat * (0.0 + numpy_sum(seconds[first], 0, clients))
            continue
        straggler, longest = 0, -math.inf
        for k in range(clients):
            chain = 0.0
            for j in range(count):
                code = line[FIRST_PHASE + j]
                chain += _in_chain(seconds[code, k], code, line[PER_ITERATION], local_iters)
            if chain > longest or (math.isnan(chain) and not math.isnan(longest)):
                straggler, longest = k, chain
        for j in range(count):
            code = line[FIRST_PHASE + j]
            phases[row, REPORTED[code]] += repeat * _in_chain(seconds[code, straggler], code, line[PER_ITERATION],
                                                              local_iters)  # fmt: skip


@njit(**_COMPILE)
def _in_chain(value, code, per_iteration, local_iters) -> float:
    """A phase's seconds in a chain: an iteration phase runs I times inside a once-per-round chain."""
    if not per_iteration and code <= BACKWARD:  # the iteration phases have the first codes
        return local_iters * value
    return value


@njit(**_COMPILE)
def _latency_row(cost, rates, phi, gain, cpu_hz, cycles_per_flop, constants, schedule, local_iters, sequential,
                 broadcast, seconds, phases, row, per_client) -> float:  # fmt: skip
    """One round's phases into ``phases[row]`` and iteration phases into ``per_client`` (5, K), the clients
    sending at ``rates``; returns its seconds. ``seconds``: (9, K) scratch."""
    _phase_row(cost, rates, phi, gain, cpu_hz, cycles_per_flop, constants, sequential, broadcast, seconds)
    phases[row] = 0.0
    _charge(schedule, seconds, local_iters, phases, row)
    total = 0.0
    for p in range(phases.shape[1]):
        total += phases[row, p]
    per_client[:] = seconds[:BACKWARD + 1]
    return total


@njit(**_COMPILE)
def phase_seconds(costs, index, beta, phi, gain, cpu_hz, cycles_per_flop, constants, schedule, local_iters,
                  sequential, broadcast, phases, total, per_client) -> None:  # fmt: skip
    """Row i: round ``costs[index[i]]`` under shares ``beta[i]``, ``phi[i]`` in state row i, into
    ``phases[i]`` (latency.PHASES), ``total[i]`` and ``per_client[i]`` (the iteration phases, (5, K))."""
    seconds, rates = np.empty((REPORTED.size, gain.shape[1])), np.empty(gain.shape[1])
    for i in range(gain.shape[0]):
        _uplink_rates(beta[i], gain[i], constants, rates)
        total[i] = _latency_row(costs[index[i]], rates, phi[i], gain[i], cpu_hz[i], cycles_per_flop[i], constants,
                                schedule, local_iters, sequential, broadcast, seconds, phases, i,
                                per_client[i])  # fmt: skip


@njit(**_COMPILE)
def _allocated_line(schedule):
    """The allocated stage's line of ``schedule``."""
    line = schedule[0]
    for candidate in schedule:
        if candidate[ALLOCATED]:
            line = candidate
    return line


@njit(**_COMPILE)
def _problem_row(cost, gain, cpu_hz, cycles_per_flop, constants, line, local_iters, broadcast, problems, i) -> None:
    """One round's allocation problem (the stage ``line``) into ``problems[:, i]``."""
    repeats = 1 if line[PER_ITERATION] else local_iters
    has_server, upload_code = False, UPLINK
    for j in range(line[N_PHASES]):
        code = line[FIRST_PHASE + j]
        has_server = has_server or code == SERVER
        if code == UPLINK or code == MODEL_UP:
            upload_code = code
    broadcast_bps = _broadcast_rate(gain, constants)
    bits = cost[C_SMASHED] if upload_code == UPLINK else cost[C_MODEL]
    cycles = repeats * constants[P_SERVER_PER_FLOP] * cost[C_SERVER] if has_server else 0.0
    for k in range(gain.size):
        forward, downlink, backward = _iteration_seconds(cost, gain, cpu_hz, cycles_per_flop, constants, broadcast,
                                                         broadcast_bps, k)  # fmt: skip
        fixed = 0.0
        for j in range(line[N_PHASES]):
            code = line[FIRST_PHASE + j]
            if code == FORWARD:
                fixed += repeats * forward
            elif code == DOWNLINK:
                fixed += repeats * downlink
            elif code == BACKWARD:
                fixed += repeats * backward
        problems[0, i, k], problems[1, i, k], problems[2, i, k] = fixed, bits, cycles
        problems[3, i, k], problems[4, i, k] = gain[k], constants[P_CLIENT_W]


@njit(**_COMPILE)
def allocation_problems(costs, index, gain, cpu_hz, cycles_per_flop, constants, schedule, local_iters, broadcast,
                        problems) -> None:  # fmt: skip
    """Row i: the allocated stage of round ``costs[index[i]]`` in state row i as the problem
    ``max_k [a_k + D_k / r_k(beta_k) + C_k / (phi_k F)]``, into ``problems[:, i]``: (5, N, K), of
    ProblemBatch's per-client fields (a, D, C, the gains, the transmit powers)."""
    line = _allocated_line(schedule)
    for i in range(gain.shape[0]):
        _problem_row(costs[index[i]], gain[i], cpu_hz[i], cycles_per_flop[i], constants, line, local_iters, broadcast,
                     problems, i)  # fmt: skip


@njit(**_COMPILE)
def _energy_row(cost, rates, cpu_hz, cycles_per_flop, constants, local_iters, energy) -> None:
    """One round's joules per client into ``energy`` (K,), the clients sending at ``rates``."""
    clients = rates.size
    flops = cost[C_FORWARD] + cost[C_BACKWARD]
    bits = cost[C_BITS_UP] / clients
    for k in range(clients):
        cycles = cycles_per_flop[k] * local_iters * flops
        compute_j = constants[P_CAPACITANCE] * cycles * (cpu_hz[k] * cpu_hz[k])
        energy[k] = compute_j + constants[P_CLIENT_W] * transfer(bits, rates[k])


@njit(**_COMPILE)
def client_energy(costs, index, beta, gain, cpu_hz, cycles_per_flop, constants, local_iters, energy) -> None:
    """Row i: joules each client spends in round ``costs[index[i]]`` (its passes' cycles at its clock,
    its share of the uplink bits at its rate), into ``energy[i]``."""
    rates = np.empty(gain.shape[1])
    for i in range(gain.shape[0]):
        _uplink_rates(beta[i], gain[i], constants, rates)
        _energy_row(costs[index[i]], rates, cpu_hz[i], cycles_per_flop[i], constants, local_iters,
                    energy[i])  # fmt: skip


@njit(**_COMPILE)
def priced_rows(claims, costs, index, gain, cpu_hz, cycles_per_flop, constants, schedule, local_iters, sequential,
                broadcast, settings, round_off, problems, snr, solved, beta, phi, allocation_latency, phases, total,
                per_client, energy) -> None:  # fmt: skip
    """Row i, in one pass: :func:`allocation_problems` into ``problems[:, i]`` and its SNRs ``snr[i]``, the exact
    solver's row (:func:`solvers.newton.solve_row`, :func:`solvers.batch.finish_row`) into ``solved[i]``,
    ``beta[i]``, ``phi[i]`` and ``allocation_latency[i]``, then, where solved, :func:`phase_seconds` and
    :func:`client_energy` under those shares. The same row functions as the separate kernels, so the same
    values to the bit; an unsolved row is left for the caller. The rows are those this run takes from
    ``claims`` (:func:`solvers.row_runs.sharing_rows`), a few at a time."""
    line = _allocated_line(schedule)
    seconds, rates = np.empty((REPORTED.size, gain.shape[1])), np.empty(gain.shape[1])
    snr_scale = constants[P_BANDWIDTH_HZ] * constants[P_NOISE]
    while True:
        start, stop = claim_rows(claims, _ROWS_PER_CLAIM)
        if start == stop:
            return
        for i in range(start, stop):
            cost = costs[index[i]]
            _problem_row(cost, gain[i], cpu_hz[i], cycles_per_flop[i], constants, line, local_iters, broadcast,
                         problems, i)  # fmt: skip
            for k in range(gain.shape[1]):
                snr[i, k] = problems[4, i, k] * problems[3, i, k] / snr_scale
            solve_row(i, problems[0], problems[1], problems[2], snr, constants[P_BANDWIDTH_HZ],
                      constants[P_SERVER_HZ], round_off, solved, beta, phi, settings)  # fmt: skip
            finish_row(i, solved, beta, phi, problems[0], problems[1], problems[2], snr, constants[P_BANDWIDTH_HZ],
                       constants[P_SERVER_HZ], allocation_latency)  # fmt: skip
            if solved[i]:
                _uplink_rates(beta[i], gain[i], constants, rates)
                total[i] = _latency_row(cost, rates, phi[i], gain[i], cpu_hz[i], cycles_per_flop[i], constants,
                                        schedule, local_iters, sequential, broadcast, seconds, phases, i,
                                        per_client[i])  # fmt: skip
                _energy_row(cost, rates, cpu_hz[i], cycles_per_flop[i], constants, local_iters, energy[i])
