"""The cost of one round: the work and the bits a scheme spends at a cut, priced from the model profile.

:func:`round_cost` is the one place a round's cost is computed. The real trainer, the analytic twin,
``SFLEnv.cut_preview`` and the tests all call it, so a round that was trained and a round that was
only priced cost exactly the same.

With ``S(l)`` the bits of one client's smashed batch, ``q(l)`` the client-side model bits and ``Q`` the
whole model, a round of ``I`` local iterations over ``K`` clients moves (docs/design.md, "One round ledger")

    ============================  ===================  ==========================
    the scheme                    uplink               downlink
    ============================  ===================  ==========================
    broadcasts the gradient       K I S (+ K q)        I S (+ q)
    unicasts each gradient        K I S (+ K q)        K I S (+ q)
    does not split (FedAvg)       K Q                  Q
    ============================  ===================  ==========================

where the bracketed model traffic is there only when client models are FedAvg'd every round; plus the
blocks migrated by a cut move (:func:`migration_bits`). Labels travel with the smashed data and are not
counted. Work is per client and per local iteration; bits are round totals over all clients, a
broadcast counted once and a unicast once per client.
"""

from __future__ import annotations

from dataclasses import dataclass

from .profiling import ModelProfile
from .schemes import Scheme, get_scheme


@dataclass(frozen=True)
class RoundCost:
    """Work and traffic of one round at one cut (see the module docstring)."""

    scheme: Scheme  # the declaration itself, so that pricing never looks a name up again
    cut: int  # blocks on the clients (all of them for a scheme that does not split)
    previous_cut: int | None
    num_clients: int
    local_iters: int
    batch_size: int
    client_forward_flops: float  # one client's batch, one iteration
    client_backward_flops: float
    server_flops: float  # forward + backward on one client's batch
    smashed_bits: float  # S(l): one client's smashed batch (= its gradient) in one iteration
    gradient_broadcast: bool  # True: one broadcast of the aggregate; False: K unicasts
    client_model_bits: float  # q(l) (the whole model Q when the scheme does not split)
    smashed_bits_up: float
    gradient_bits_down: float
    model_bits_up: float
    model_bits_down: float
    migrated_bits_up: float
    migrated_bits_down: float

    @property
    def bits_up(self) -> float:
        return self.smashed_bits_up + self.model_bits_up + self.migrated_bits_up

    @property
    def bits_down(self) -> float:
        return self.gradient_bits_down + self.model_bits_down + self.migrated_bits_down


def round_cost(
    profile: ModelProfile,
    scheme: Scheme | str,
    cut: int,
    previous_cut: int | None,
    *,
    num_clients: int,
    local_iters: int,
    batch_size: int,
    gradient_aggregation: float = 1.0,
) -> RoundCost:
    """The cost of one round of ``scheme`` at ``cut`` after a round at ``previous_cut`` (None: the first).

    ``cut`` is the cut the round trains at; a scheme that does not split trains every block whatever
    the action, so pass ``scheme.client_cut(action_cut, num_blocks)``.
    """
    scheme = get_scheme(scheme)
    p, K, I, b = profile, num_clients, local_iters, batch_size
    splits = scheme.splits_model
    S = p.smashed_bits(cut, b) if splits else 0.0
    q = p.client_model_bits(cut) if splits else p.model_bits
    broadcast = scheme.gradient_is_broadcast(gradient_aggregation)
    aggregates = scheme.aggregates_client_models
    migrated_up, migrated_down = migration_bits(profile, scheme, previous_cut, cut, K)
    return RoundCost(
        scheme=scheme,
        cut=cut,
        previous_cut=previous_cut,
        num_clients=K,
        local_iters=I,
        batch_size=b,
        client_forward_flops=b * p.client_forward_flops(cut),
        client_backward_flops=b * p.client_backward_flops(cut),
        server_flops=b * p.server_flops(cut) if splits else 0.0,
        smashed_bits=S,
        gradient_broadcast=broadcast,
        client_model_bits=q,
        smashed_bits_up=K * I * S,
        gradient_bits_down=(1 if broadcast else K) * I * S,
        model_bits_up=K * q if aggregates else 0.0,
        model_bits_down=q if aggregates else 0.0,
        migrated_bits_up=migrated_up,
        migrated_bits_down=migrated_down,
    )


def migration_bits(
    profile: ModelProfile, scheme: Scheme | str, previous_cut: int | None, cut: int, num_clients: int
) -> tuple[float, float]:
    """(uplink, downlink) bits of moving the cut from ``previous_cut`` to ``cut``.

    A deeper cut broadcasts the blocks that move to the clients from the server copy. A shallower cut
    costs nothing when client blocks are FedAvg'd every round (the server already holds their average);
    otherwise every client uploads its own copy of the moved blocks for the server to average.
    """
    scheme = get_scheme(scheme)
    if previous_cut is None or previous_cut == cut:
        return 0.0, 0.0
    if cut > previous_cut:
        return 0.0, profile.blocks_bits(previous_cut, cut)
    if not scheme.aggregates_client_models:
        return num_clients * profile.blocks_bits(cut, previous_cut), 0.0
    return 0.0, 0.0
