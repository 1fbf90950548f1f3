"""The round trainer protocol and what one round returns: what it taught the model.

A round's cost (its work and bits) is not the trainer's to say: it follows from the cut, the previous cut
and the model's profile alone, and :class:`~sfl_env.pricing.RoundPricer` prices it (with
:func:`~sfl_env.ledger.round_cost`) for real training and the twin alike."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ..models import SplitModel
    from ..profiling import ModelProfile


@dataclass(frozen=True)
class RoundOutcome:
    """What one round taught the model."""

    round_index: int  # 1 for the first round
    train_loss: float  # mean over the local iterations (NaN when the round diverged)
    test_accuracy: float  # NaN when the round was not evaluated
    test_loss: float
    diverged: bool  # a non-finite loss or weight stopped the round; the weights are those before it

    @property
    def evaluated(self) -> bool:
        return not math.isnan(self.test_accuracy)


@runtime_checkable
class RoundTrainer(Protocol):
    """Runs SFL training rounds on one global model; the cut may change every round."""

    model: SplitModel  # the global model (its blocks, cuts and classes)
    profile: ModelProfile  # per-block FLOPs and bits of its architecture
    cut: int | None  # the cut of the last round (None before the first)

    def run_round(self, cut: int) -> RoundOutcome:
        """Trains one round with blocks ``[0, cut)`` on the clients; returns what it taught."""
        ...
