"""The round trainer protocol and what one round returns: its learning outcome and its cost."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple, Protocol, runtime_checkable

from ..ledger import RoundCost

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


class RoundResult(NamedTuple):
    """One round: what it taught (``outcome``) and what it cost (``cost``)."""

    outcome: RoundOutcome
    cost: RoundCost


@runtime_checkable
class RoundTrainer(Protocol):
    """Runs SFL training rounds on one global model; the cut may change every round."""

    model: SplitModel  # the global model (its blocks, cuts and classes)
    profile: ModelProfile  # per-block FLOPs and bits of its architecture
    cut: int | None  # the cut of the last round (None before the first)

    def run_round(self, cut: int) -> RoundResult:
        """Trains one round with blocks ``[0, cut)`` on the clients."""
        ...
