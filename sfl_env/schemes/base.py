"""What a scheme is: the declaration every SFL scheme makes, in one place.

A :class:`Scheme` says how one training round runs, and nothing here runs it:

* ``server``: how the server-side blocks are trained (:class:`Server`);
* ``broadcasts_gradient``: whether the server returns ONE aggregate of the smashed-data gradients to
  every client (a broadcast) or each client's own gradient (unicasts);
* ``aggregates_client_models``: whether the client-side blocks are FedAvg'd every round;
* ``stages``: the round's latency schedule, stage by stage (:class:`Stage`); one stage is marked
  ``allocated``, and the resource solver minimises exactly that stage's per-client chain.

From these the rest of the package derives everything else: :mod:`sfl_env.training` trains the
topology, :mod:`sfl_env.ledger` counts the round's bits and work, :mod:`sfl_env.latency` times its
schedule and builds its allocation problem.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

# Per-client phases (seconds) a stage can chain. Iteration phases happen in every local iteration;
# round phases once per round.
ITERATION_PHASES: tuple[str, ...] = ("client_forward", "uplink", "server", "gradient_downlink", "client_backward")
ROUND_PHASES: tuple[str, ...] = ("model_upload", "model_broadcast", "migration_down", "migration_up")
# Phases whose seconds depend on the allocation: the uplink band share beta (uplink, model_upload) and
# the server CPU share phi (server, unless the server serves the clients one after another).
BANDWIDTH_PHASES: tuple[str, ...] = ("uplink", "model_upload")
SERVER_PHASE = "server"


class Server(enum.Enum):
    """How the server-side blocks are trained in one local iteration."""

    SHARED = "shared"  # one server model, one loss sum_k alpha_k F_k over all K smashed batches (a barrier)
    PER_CLIENT = "per_client"  # K server copies, each on its own client's batch; FedAvg'd every round
    SEQUENTIAL = "sequential"  # one server model, one SGD step per client, clients in a random order
    NONE = "none"  # no split: every client trains the whole model (FedAvg)


@dataclass(frozen=True)
class Stage:
    """Phases each client runs back to back; the stage ends when the last client is done (a barrier).

    ``per_iteration``: the stage happens in every local iteration (its seconds count ``I`` times, with a
    barrier each time); otherwise once per round, where an iteration phase in it counts ``I`` times
    inside the client's own chain. ``sequential``: the server serves the clients one after another, so
    the stage lasts the sum over clients instead of the slowest client. ``allocated``: the resource
    solver minimises this stage (exactly one stage of a scheme is allocated).
    """

    phases: tuple[str, ...]
    per_iteration: bool = True
    sequential: bool = False
    allocated: bool = False

    def __post_init__(self) -> None:
        unknown = [p for p in self.phases if p not in ITERATION_PHASES + ROUND_PHASES]
        if not self.phases or unknown:
            raise ValueError(f"stage phases {self.phases!r}: unknown {unknown}; allowed: "
                             f"{', '.join(ITERATION_PHASES + ROUND_PHASES)}")
        if self.per_iteration and any(p in ROUND_PHASES for p in self.phases):
            raise ValueError(f"stage {self.phases!r} is per iteration but holds a round phase")
        if self.sequential and self.phases != (SERVER_PHASE,):
            raise ValueError("only a stage of the server phase alone can be sequential")
        if self.allocated and sum(p in BANDWIDTH_PHASES for p in self.phases) != 1:
            raise ValueError(f"the allocated stage {self.phases!r} needs exactly one uplink transfer")


# Stages every scheme that FedAvgs its client blocks ends its round with, and the block migration that
# follows a cut move (a deeper cut broadcasts the blocks; a shallower one uploads them where needed).
MODEL_AGGREGATION: tuple[Stage, ...] = (
    Stage(("model_upload",), per_iteration=False),
    Stage(("model_broadcast",), per_iteration=False),
)
MIGRATION: tuple[Stage, ...] = (
    Stage(("migration_down",), per_iteration=False),
    Stage(("migration_up",), per_iteration=False),
)


@dataclass(frozen=True)
class Scheme:
    """One SFL scheme, declared (see the module docstring)."""

    name: str
    summary: str
    server: Server
    broadcasts_gradient: bool
    aggregates_client_models: bool
    stages: tuple[Stage, ...]

    def __post_init__(self) -> None:
        if sum(stage.allocated for stage in self.stages) != 1:
            raise ValueError(f"scheme {self.name!r} must mark exactly one stage as allocated")
        if self.broadcasts_gradient and self.server is not Server.SHARED:
            raise ValueError(f"scheme {self.name!r}: only a shared server holds every G_k to aggregate")

    @property
    def splits_model(self) -> bool:
        """False for FedAvg, whose clients train the whole model whatever the action."""
        return self.server is not Server.NONE

    @property
    def cut_matters(self) -> bool:
        """Whether the cut can change what the scheme learns. FedAvg trains the whole model; per-client
        server copies FedAvg'd like the client blocks (sfl-v1) are FedAvg of the whole model at every cut.
        The cut still changes every scheme's latency."""
        return self.splits_model and not (self.server is Server.PER_CLIENT and self.aggregates_client_models)

    @property
    def allocated_stage(self) -> Stage:
        return next(stage for stage in self.stages if stage.allocated)

    def gradient_aggregation_ratio(self, gradient_aggregation: float) -> float:
        """The weight of the aggregate in what clients back-propagate (1: the aggregate, 0: their own
        gradient). Only a broadcasting scheme aggregates; ``gradient_aggregation`` blends it."""
        return float(gradient_aggregation) if self.broadcasts_gradient else 0.0

    def gradient_is_broadcast(self, gradient_aggregation: float) -> bool:
        """Whether the gradients go down as one broadcast (else as K unicasts, one per client)."""
        return self.gradient_aggregation_ratio(gradient_aggregation) == 1.0

    def client_cut(self, cut: int, num_blocks: int) -> int:
        """Blocks the clients train at ``cut``: all of them when the scheme does not split the model."""
        return cut if self.splits_model else num_blocks
