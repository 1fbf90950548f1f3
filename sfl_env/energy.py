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

from .config import ComputeConfig, WirelessConfig
from .latency import CostBatch, transfer_s
from .ledger import RoundCost
from .wireless import uplink_rate_bps


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
    cycles = cycles_per_flop * costs.local_iters * (costs.client_forward_flops + costs.client_backward_flops)[:, None]
    compute_j = compute.effective_capacitance * cycles * cpu_hz**2
    rate = uplink_rate_bps(beta, gain, wireless.client_power_w, wireless.bandwidth_hz, wireless.noise_psd_w_per_hz)
    return compute_j + wireless.client_power_w * transfer_s((costs.bits_up / costs.num_clients)[:, None], rate)
