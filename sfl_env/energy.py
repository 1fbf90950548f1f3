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
from .latency import transfer_s
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
    is each client's (None: ``compute``'s for every client)."""
    cpu_hz = np.asarray(client_cpu_hz, dtype=np.float64)
    per_flop = compute.client_cycles_per_flop if client_cycles_per_flop is None else np.asarray(client_cycles_per_flop)
    cycles = per_flop * cost.local_iters * (cost.client_forward_flops + cost.client_backward_flops)
    compute_j = compute.effective_capacitance * cycles * cpu_hz**2
    rate = uplink_rate_bps(bandwidth_share, uplink_gain, wireless.client_power_w, wireless.bandwidth_hz,
                           wireless.noise_psd_w_per_hz)
    return compute_j + wireless.client_power_w * transfer_s(cost.bits_up / cost.num_clients, rate)
