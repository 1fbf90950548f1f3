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

from dataclasses import dataclass

import numpy as np

from solvers import Allocation, equal_split, solve

from .config import EnvConfig
from .energy import round_energy_j
from .latency import LatencyBreakdown, allocation_problem, round_latency
from .ledger import RoundCost, round_cost
from .profiling import ModelProfile
from .schemes import Scheme


@dataclass(frozen=True)
class RoundState:
    """The exogenous state one round is priced on: each client's uplink gain, CPU clock (Hz) and
    cycles per FLOP, arrays of shape (K,)."""

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


class RoundPricer:
    """Prices rounds of one env configuration (see the module docstring).

    ``convergence``: Gamma per cut index; ``leakage``: the distance correlation per cut index (None
    without a table). ``reference_s`` (``T_ref``, the reward's unit) is one round at ``reference_cut``
    (after itself) under an equal split in ``reference_state``: the env passes its shallowest cut and
    the nominal cell, so that T_ref is a constant of the configuration."""

    def __init__(self, config: EnvConfig, scheme: Scheme, profile: ModelProfile, *, convergence: np.ndarray,
                 leakage: np.ndarray | None, reference_cut: int, reference_state: RoundState) -> None:
        self.config, self.scheme, self.profile = config, scheme, profile
        self.convergence, self.leakage = convergence, leakage
        reference = self.round_cost(reference_cut, reference_cut)
        problem = allocation_problem(reference, reference_state.uplink_gain, reference_state.client_cpu_hz,
                                     config.wireless, config.compute,
                                     client_cycles_per_flop=reference_state.client_cycles_per_flop)
        self.reference_s = self.latency(reference, equal_split(problem), reference_state).total_s

    def round_cost(self, cut: int, previous_cut: int | None) -> RoundCost:
        """The ledger of a round at ``cut`` after ``previous_cut`` (None: the first round). A scheme that
        does not split the model trains all of it whatever the cut, so it never migrates blocks."""
        system, blocks = self.config.system, self.profile.num_blocks
        cut = self.scheme.client_cut(cut, blocks)
        if previous_cut is not None:
            previous_cut = self.scheme.client_cut(previous_cut, blocks)
        return round_cost(self.profile, self.scheme, cut, previous_cut, num_clients=system.num_clients,
                          local_iters=system.local_iters, batch_size=system.batch_size,
                          gradient_aggregation=system.gradient_aggregation)

    def allocate(self, cost: RoundCost, state: RoundState) -> Allocation:
        """The configured allocation of ``cost``'s round in ``state``: the solver's, or the equal split."""
        # The env's own arrays are valid by construction; skipping their checks saves ~5 % of a step.
        problem = allocation_problem(cost, state.uplink_gain, state.client_cpu_hz, self.config.wireless,
                                     self.config.compute, client_cycles_per_flop=state.client_cycles_per_flop,
                                     check_inputs=False)
        if self.config.allocation == "equal":
            return equal_split(problem)
        return solve(problem, method=self.config.solver)

    def latency(self, cost: RoundCost, allocation: Allocation, state: RoundState) -> LatencyBreakdown:
        """Seconds of ``cost``'s round by phase under ``allocation`` in ``state``."""
        return round_latency(
            cost, bandwidth_share=allocation.bandwidth_share, server_cpu_share=allocation.server_cpu_share,
            uplink_gain=state.uplink_gain, client_cpu_hz=state.client_cpu_hz, wireless=self.config.wireless,
            compute=self.config.compute, client_cycles_per_flop=state.client_cycles_per_flop, check_inputs=False,
        )

    def energy_j(self, cost: RoundCost, allocation: Allocation, state: RoundState) -> np.ndarray:
        """Joules each client spends in ``cost``'s round under ``allocation`` in ``state``, shape (K,)."""
        return round_energy_j(cost, bandwidth_share=allocation.bandwidth_share, uplink_gain=state.uplink_gain,
                              client_cpu_hz=state.client_cpu_hz, wireless=self.config.wireless,
                              compute=self.config.compute, client_cycles_per_flop=state.client_cycles_per_flop)

    def round_leakage(self, cut_index: int) -> float | None:
        """The leakage a round at ``cut_index`` spends: its cut's distance correlation (0 for a scheme
        that sends no smashed data; None without a leakage table for this model)."""
        if not self.scheme.splits_model:
            return 0.0
        return float(self.leakage[cut_index]) if self.leakage is not None else None

    def price(self, cost: RoundCost, state: RoundState, cut_index: int, violated: bool, *,
              energy: bool = True, allocation: Allocation | None = None) -> PricedRound:
        """``cost``'s round at ``cut_index`` in ``state``: allocated, timed, charged and rewarded.
        ``violated``: the action broke the privacy constraint (its penalty is subtracted). ``energy``:
        also charge each client's joules (previews that only rank cuts skip it). ``allocation``: the
        round's allocation when the caller has already solved it (:meth:`allocate`)."""
        if allocation is None:
            allocation = self.allocate(cost, state)
        latency = self.latency(cost, allocation, state)
        config, reference = self.config, self.reference_s
        latency_term = latency.total_s / reference if reference > 0 else 0.0
        gamma = float(self.convergence[cut_index])
        terms = {"convergence": gamma, "latency": latency_term,
                 "privacy_penalty": config.privacy_penalty if violated else 0.0}
        if config.reward == "paper":
            reward = -(config.rho * gamma + (1.0 - config.rho) * latency_term)
        else:
            reward = -latency_term
        return PricedRound(allocation, latency, terms, reward - terms["privacy_penalty"],
                           self.energy_j(cost, allocation, state) if energy else None,
                           self.round_leakage(cut_index))
