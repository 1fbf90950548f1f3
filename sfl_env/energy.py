"""The energy a round costs each client: computing its blocks and transmitting its bits.

The standard model of federated learning over wireless links (Yang et al., "Energy efficient federated
learning over wireless communication networks", IEEE TWC 20(3), 2021, eqs. 3 and 6; Mao et al., IEEE
JSAC 2016): ``C`` CPU cycles at ``f`` Hz draw ``kappa C f^2`` joules (dynamic CMOS power, ``kappa`` the
effective switched capacitance), and transmitting for ``t`` seconds at power ``p`` draws ``p t``. A
client's cycles are its forward and backward passes over every local iteration; its transmit time is
its share of the round's uplink bits (smashed data, client model, migrated blocks) over its allocated
rate. Receiving is not charged (the model's convention).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from solvers.row_runs import over_rows

from .config import ComputeConfig, WirelessConfig
from . import latency_kernels as kernels
from .latency import CostBatch, system_constants
from .ledger import RoundCost


def round_energy_j(
    cost: RoundCost,
    *,
    bandwidth_share: ArrayLike,
    uplink_gain: ArrayLike,
    client_cpu_hz: ArrayLike,
    wireless: WirelessConfig,
    compute: ComputeConfig,
    client_cycles_per_flop: ArrayLike | None = None,
) -> np.ndarray:
    """Joules each client spends in the round ``cost`` describes, shape (K,); ``client_cycles_per_flop``
    is each client's (None: ``compute``'s for every client). This is :func:`round_energy_j_batch` for one
    round."""
    arrays = (bandwidth_share, uplink_gain, client_cpu_hz)
    beta, gain, cpu_hz = (np.asarray(array, dtype=np.float64) for array in arrays)
    per_flop = np.full(cost.num_clients, compute.client_cycles_per_flop) if client_cycles_per_flop is None \
        else np.asarray(client_cycles_per_flop, dtype=np.float64)
    return round_energy_j_batch(CostBatch.of([cost]), beta[None], gain[None], cpu_hz[None], per_flop[None],
                                wireless, compute)[0]


def round_energy_j_batch(
    costs: CostBatch,
    beta: np.ndarray,
    gain: np.ndarray,
    cpu_hz: np.ndarray,
    cycles_per_flop: np.ndarray,
    wireless: WirelessConfig,
    compute: ComputeConfig,
) -> np.ndarray:
    """Joules each client spends in each of N rounds, (N, K), from (N, K) shares, gains, clocks and
    cycles per FLOP, each round from its own row only."""
    energy = np.empty(gain.shape)
    constants = system_constants(wireless, compute)

    def run(start: int, stop: int) -> None:
        rows = slice(start, stop)
        kernels.client_energy(costs.table, costs.index[rows], beta[rows], gain[rows], cpu_hz[rows],
                              cycles_per_flop[rows], constants, costs.local_iters, energy[rows])

    over_rows(len(gain), run)
    return energy
