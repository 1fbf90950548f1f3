"""The round pricer: what a round at a cut costs in one state of the system, in one place.

:class:`RoundPricer` holds what every round of an env is priced with (the configuration, the scheme, the
model's profile, the convergence term, the leakage per cut and ``T_ref``) and nothing that moves. Given
a round's ledger (:meth:`RoundPricer.round_cost`) and a snapshot of the exogenous state
(:class:`RoundState`: channel gains, client clocks and cycles per FLOP), :meth:`RoundPricer.price`
returns the allocation, the latency by phase, each client's energy, the leakage and the reward terms.
It is a pure function of its arguments: ``step``, ``cut_preview``, ``sample_round_costs`` and the
planner all price through it, so a previewed round and the round taken are priced by the same code.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from solvers import ROUND_OFF, Allocation, AllocationBatch, equal_split, equal_split_batch, newton, solve_batch
from solvers.row_runs import sharing_rows

from .config import EnvConfig
from .energy import round_energy_j_batch
from .latency import (PHASES, CostBatch, LatencyBatch, LatencyBreakdown, allocation_problem,
                      allocation_problem_batch, round_latency_batch, system_constants)
from .latency_kernels import priced_rows
from .ledger import RoundCost, round_cost
from .profiling import ModelProfile
from .schemes import Scheme, Server
from .schemes.base import ITERATION_PHASES


@dataclass(frozen=True)
class RoundState:
    """The exogenous state one round is priced on: each client's uplink gain, CPU clock (Hz) and
    cycles per FLOP, arrays of shape (K,)."""

    uplink_gain: np.ndarray
    client_cpu_hz: np.ndarray
    client_cycles_per_flop: np.ndarray

    def batch(self) -> StateBatch:
        """This state as a batch of one."""
        return StateBatch(self.uplink_gain[None], self.client_cpu_hz[None], self.client_cycles_per_flop[None])


@dataclass(frozen=True)
class StateBatch:
    """The exogenous states of N rounds, each field of :class:`RoundState` of shape (N, K)."""

    uplink_gain: np.ndarray
    client_cpu_hz: np.ndarray
    client_cycles_per_flop: np.ndarray


@dataclass(frozen=True)
class PricedRound:
    """A round priced: the solver's ``allocation``, the ``latency`` by phase, the reward ``terms``
    (``convergence``, ``latency``, ``privacy_penalty``), the ``reward`` (before any terminal cost),
    each client's ``energy_j`` (None when not asked for) and the round's ``leakage`` (None without a
    leakage table)."""

    allocation: Allocation
    latency: LatencyBreakdown
    terms: dict[str, float]
    reward: float
    energy_j: np.ndarray | None
    leakage: float | None


@dataclass(frozen=True)
class PricedBatch:
    """N rounds priced, as :class:`PricedRound` field by field: ``terms`` and ``reward`` (N,),
    ``energy_j`` (N, K) or None, ``leakage`` (N,) or None."""

    allocation: AllocationBatch
    latency: LatencyBatch
    terms: dict[str, np.ndarray]
    reward: np.ndarray
    energy_j: np.ndarray | None
    leakage: np.ndarray | None

    def row(self, i: int) -> PricedRound:
        """Round ``i`` as a :class:`PricedRound`."""
        return PricedRound(self.allocation.row(i), self.latency.row(i),
                           {name: float(value[i]) for name, value in self.terms.items()}, float(self.reward[i]),
                           None if self.energy_j is None else self.energy_j[i],
                           None if self.leakage is None else float(self.leakage[i]))


class RoundPricer:
    """Prices rounds of one env configuration (see the module docstring).

    ``cuts``: the model's candidate cuts (cut index i is ``cuts[i]``); ``convergence``: Gamma per cut
    index; ``leakage``: the distance correlation per cut index (None without a table).
    ``reference_s`` (``T_ref``, the reward's unit) is one round at ``cuts[0]`` (after itself) under an
    equal split in ``reference_state``: the env passes the nominal cell, so that T_ref is a constant of
    the configuration.

    Every method prices a batch of rounds as arrays (``*_batch``), each round from its own row only;
    the one-round methods are the batch of one, so a round priced alone equals the same round priced
    in a batch, bit for bit."""

    def __init__(self, config: EnvConfig, scheme: Scheme, profile: ModelProfile, *, cuts: tuple[int, ...],
                 convergence: np.ndarray, leakage: np.ndarray | None, reference_state: RoundState) -> None:
        self.config, self.scheme, self.profile, self.cuts = config, scheme, profile, tuple(cuts)
        self.convergence, self.leakage = np.asarray(convergence, dtype=np.float64), leakage
        # Each ledger this pricer made, by (cut, previous cut), and as a batch of one by the ledger's id (a ledger
        # stays in the first dict, so its id is not reused): a step prices its round without rebuilding either.
        self._round_costs: dict[tuple[int, int | None], RoundCost] = {}
        self._batches_of_one: dict[int, CostBatch] = {}
        # Every (cut, previous cut) pair's ledger, so that a batch gathers its rounds' costs by index.
        previous = (None, *self.cuts)
        self._costs = CostBatch.of([self.round_cost(cut, before) for cut in self.cuts for before in previous])
        leakage_per_cut = np.full(len(self.cuts), np.nan) if leakage is None else np.asarray(leakage, np.float64)
        self._leakage = np.zeros(len(self.cuts)) if not scheme.splits_model else leakage_per_cut
        reference = self.round_cost(self.cuts[0], self.cuts[0])
        problem = allocation_problem(reference, reference_state.uplink_gain, reference_state.client_cpu_hz,
                                     config.wireless, config.compute,
                                     client_cycles_per_flop=reference_state.client_cycles_per_flop)
        self._constants = system_constants(config.wireless, config.compute)
        self.reference_s = self.latency(reference, equal_split(problem), reference_state).total_s

    # ------------------------------------------------------------------ one round

    def round_cost(self, cut: int, previous_cut: int | None) -> RoundCost:
        """The ledger of a round at ``cut`` after ``previous_cut`` (None: the first round). A scheme that
        does not split the model trains all of it whatever the cut, so it never migrates blocks."""
        cost = self._round_costs.get((cut, previous_cut))
        if cost is None:
            system, blocks = self.config.system, self.profile.num_blocks
            client_cut = self.scheme.client_cut(cut, blocks)
            client_previous = None if previous_cut is None else self.scheme.client_cut(previous_cut, blocks)
            cost = round_cost(self.profile, self.scheme, client_cut, client_previous, num_clients=system.num_clients,
                              local_iters=system.local_iters, batch_size=system.batch_size,
                              gradient_aggregation=system.gradient_aggregation)
            self._round_costs[(cut, previous_cut)] = cost
            self._batches_of_one[id(cost)] = CostBatch.of([cost])
        return cost

    def _batch_of_one(self, cost: RoundCost) -> CostBatch:
        """``cost`` as a batch of one: kept for a ledger of :meth:`round_cost`, built for another."""
        batch = self._batches_of_one.get(id(cost))
        return batch if batch is not None else CostBatch.of([cost])

    def allocate(self, cost: RoundCost, state: RoundState) -> Allocation:
        """The configured allocation of ``cost``'s round in ``state``: the solver's, or the equal split."""
        return self.allocate_batch(self._batch_of_one(cost), state.batch()).row(0)

    def latency(self, cost: RoundCost, allocation: Allocation, state: RoundState) -> LatencyBreakdown:
        """Seconds of ``cost``'s round by phase under ``allocation`` in ``state``."""
        return self.latency_batch(self._batch_of_one(cost), allocation.bandwidth_share[None],
                                  allocation.server_cpu_share[None], state.batch()).row(0)

    def energy_j(self, cost: RoundCost, allocation: Allocation, state: RoundState) -> np.ndarray:
        """Joules each client spends in ``cost``'s round under ``allocation`` in ``state``, shape (K,)."""
        return self.energy_batch(self._batch_of_one(cost), allocation.bandwidth_share[None], state.batch())[0]

    def round_leakage(self, cut_index: int) -> float | None:
        """The leakage a round at ``cut_index`` spends: its cut's distance correlation (0 for a scheme
        that sends no smashed data; None without a leakage table for this model)."""
        spent = self._leakage[cut_index]
        return None if np.isnan(spent) else float(spent)

    def price(self, cost: RoundCost, state: RoundState, cut_index: int, violated: bool, *,
              energy: bool = True, allocation: Allocation | None = None) -> PricedRound:
        """``cost``'s round at ``cut_index`` in ``state``: allocated, timed, charged and rewarded.
        ``violated``: the action broke the privacy constraint (its penalty is subtracted). ``energy``:
        also charge each client's joules (previews that only rank cuts skip it). ``allocation``: the
        round's allocation when the caller has already solved it (:meth:`allocate`)."""
        solved = None
        if allocation is not None:
            solved = AllocationBatch(allocation.bandwidth_share[None], allocation.server_cpu_share[None],
                                     np.array([allocation.latency_s]), (allocation.status,),
                                     np.array([allocation.fallback]), allocation.method, allocation.solve_time_s)
        priced = self.price_batch(self._batch_of_one(cost), state.batch(), np.array([cut_index]), np.array([violated]),
                                  energy=energy, allocation=solved)
        return priced.row(0)

    # ------------------------------------------------------------------ a batch of rounds

    def cost_batch(self, cut_index: np.ndarray, previous_index: np.ndarray) -> CostBatch:
        """The ledgers of N rounds at cut indices ``cut_index`` after ``previous_index`` (-1: the first
        round of its episode), both integer arrays of shape (N,)."""
        return self._costs.take(cut_index * (len(self.cuts) + 1) + previous_index + 1)

    def allocate_batch(self, costs: CostBatch, states: StateBatch) -> AllocationBatch:
        """The configured allocation of each of N rounds (see :meth:`allocate`)."""
        config = self.config
        problems = allocation_problem_batch(costs, states.uplink_gain, states.client_cpu_hz,
                                            states.client_cycles_per_flop, config.wireless, config.compute)
        if config.allocation == "equal":
            return equal_split_batch(problems)
        return solve_batch(problems, method=config.solver)

    def latency_batch(self, costs: CostBatch, bandwidth_share: np.ndarray, server_cpu_share: np.ndarray,
                      states: StateBatch) -> LatencyBatch:
        """Seconds of N rounds by phase under (N, K) shares (see :meth:`latency`)."""
        return round_latency_batch(costs, bandwidth_share, server_cpu_share, states.uplink_gain,
                                   states.client_cpu_hz, states.client_cycles_per_flop, self.config.wireless,
                                   self.config.compute)

    def energy_batch(self, costs: CostBatch, bandwidth_share: np.ndarray, states: StateBatch) -> np.ndarray:
        """Joules each client spends in each of N rounds, (N, K) (see :meth:`energy_j`)."""
        return round_energy_j_batch(costs, bandwidth_share, states.uplink_gain, states.client_cpu_hz,
                                    states.client_cycles_per_flop, self.config.wireless, self.config.compute)

    def price_batch(self, costs: CostBatch, states: StateBatch, cut_index: np.ndarray, violated: np.ndarray, *,
                    energy: bool = True, allocation: AllocationBatch | None = None) -> PricedBatch:
        """N rounds at cut indices ``cut_index`` (N,) priced at once (see :meth:`price`)."""
        config = self.config
        energy_j = None
        if allocation is None and config.allocation == "optimal" and config.solver == "exact":
            allocation, latency, energy_j = self._price_exact(costs, states)
        else:
            if allocation is None:
                allocation = self.allocate_batch(costs, states)
            latency = self.latency_batch(costs, allocation.bandwidth_share, allocation.server_cpu_share, states)
        if energy and energy_j is None:
            energy_j = self.energy_batch(costs, allocation.bandwidth_share, states)
        reference = self.reference_s
        latency_term = latency.total_s / reference if reference > 0 else np.zeros_like(latency.total_s)
        gamma = self.convergence[cut_index]
        penalty = np.where(violated, config.privacy_penalty, 0.0)
        terms = {"convergence": gamma, "latency": latency_term, "privacy_penalty": penalty}
        if config.reward == "paper":
            reward = -(config.rho * gamma + (1.0 - config.rho) * latency_term)
        else:
            reward = -latency_term
        leakage = self._leakage[cut_index]
        return PricedBatch(allocation, latency, terms, reward - penalty, energy_j if energy else None,
                           None if np.isnan(leakage).any() else leakage)

    def _price_exact(self, costs: CostBatch, states: StateBatch) -> tuple[AllocationBatch, LatencyBatch, np.ndarray]:
        """The exact allocation, the latency and the energy of N rounds in one compiled pass
        (:func:`~sfl_env.latency_kernels.priced_rows`: the kernels of allocate_batch, latency_batch and
        energy_batch, row by row, so the same values); the rows it leaves unsolved take that general path."""
        gain, cpu_hz, per_flop = states.uplink_gain, states.client_cpu_hz, states.client_cycles_per_flop
        n, k = gain.shape
        # The pass fills every row it solves, the general path every other row.
        solved, problems, snr = np.zeros(n, dtype=bool), np.empty((5, n, k)), np.empty((n, k))
        beta, phi, energy_j = np.empty((n, k)), np.empty((n, k)), np.empty((n, k))
        allocation_latency, total = np.empty(n), np.empty(n)
        phases, per_client = np.empty((n, len(PHASES))), np.empty((n, len(ITERATION_PHASES), k))
        sequential = costs.scheme.server is Server.SEQUENTIAL

        def run(claims: np.ndarray) -> None:
            priced_rows(claims, costs.table, costs.index, gain, cpu_hz, per_flop, self._constants, costs.schedule,
                        costs.local_iters, sequential, costs.gradient_broadcast, newton.SETTINGS, ROUND_OFF, problems,
                        snr, solved, beta, phi, allocation_latency, phases, total, per_client, energy_j)  # fmt: skip

        start = time.perf_counter()
        sharing_rows(n, run)
        solve_time_s = time.perf_counter() - start  # the whole pass's, which its solves dominate
        status, fallback = ["optimal"] * n, np.zeros(n, dtype=bool)
        if np.count_nonzero(solved) < n:
            rest = np.flatnonzero(~solved)
            part, part_states = costs.take(rest), StateBatch(gain[rest], cpu_hz[rest], per_flop[rest])
            allocation = self.allocate_batch(part, part_states)
            latency = self.latency_batch(part, allocation.bandwidth_share, allocation.server_cpu_share, part_states)
            beta[rest], phi[rest] = allocation.bandwidth_share, allocation.server_cpu_share
            allocation_latency[rest], fallback[rest] = allocation.latency_s, allocation.fallback
            for row, row_status in zip(rest, allocation.status):
                status[row] = row_status
            total[rest] = latency.total_s
            phases[rest] = np.stack([latency.phases[name] for name in PHASES], axis=-1)
            per_client[rest] = np.stack([latency.per_client_s[name] for name in ITERATION_PHASES], axis=1)
            energy_j[rest] = self.energy_batch(part, allocation.bandwidth_share, part_states)
            solve_time_s += allocation.solve_time_s
        allocation = AllocationBatch(beta, phi, allocation_latency, tuple(status), fallback, "exact", solve_time_s)
        return allocation, LatencyBatch.of_arrays(total, phases, per_client), energy_j
