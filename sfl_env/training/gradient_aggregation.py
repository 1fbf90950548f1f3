"""Gradient aggregation, the paper's first idea, as an autograd function at the cut.

A shared server computes one loss over all K smashed batches, ``sum_k alpha_k F_k``, so the gradient
arriving at client k's smashed data is ``alpha_k G_k`` with ``G_k = dF_k/ds_k``. The cut is an identity
whose backward replaces that gradient by what the client really receives: the aggregate
``sum_k alpha_k G_k``, broadcast once (ratio 1), or its own ``alpha_k G_k / alpha_k = G_k``, unicast
(ratio 0), or a blend of the two. The weighting is never applied twice.
"""

from __future__ import annotations

import torch


class AggregateSmashedGradient(torch.autograd.Function):
    """Identity on the stacked smashed data (K, b, ...); replaces its gradient by the broadcast aggregate.

    The server loss is ``sum_k alpha_k F_k``, so the gradient arriving for client k is ``alpha_k G_k``:
    their sum over k is the aggregate, and dividing by ``alpha_k`` recovers the client's own ``G_k``.
    """

    @staticmethod
    def forward(ctx, smashed: torch.Tensor, weights: torch.Tensor, ratio: float) -> torch.Tensor:
        ctx.save_for_backward(weights)
        ctx.ratio = ratio
        return smashed.view_as(smashed)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (weights,) = ctx.saved_tensors
        return aggregate_smashed_gradients(grad, weights, ctx.ratio), None, None


def aggregate_smashed_gradients(weighted: torch.Tensor, weights: torch.Tensor, ratio: float) -> torch.Tensor:
    """What each client back-propagates, from the server's ``alpha_k G_k`` stacked along dim 0.

    ``ratio`` 1 gives every client the aggregate ``sum_k alpha_k G_k``; 0 gives client k its own ``G_k``.
    """
    aggregate = weighted.sum(0, keepdim=True).expand_as(weighted)
    if ratio == 1.0:
        return aggregate
    own = weighted / weights.view(-1, *([1] * (weighted.dim() - 1)))
    if ratio == 0.0:
        return own
    return ratio * aggregate + (1.0 - ratio) * own
