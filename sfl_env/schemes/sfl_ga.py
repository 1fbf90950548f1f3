"""SFL-GA, the paper's scheme: split federated learning with gradient aggregation.

Clients forward in parallel; one shared server model trains on all K smashed batches with the loss
``sum_k alpha_k F_k``; the per-client smashed-data gradients ``G_k`` are aggregated into
``sum_k alpha_k G_k`` and broadcast ONCE; every client back-propagates that aggregate through its own
blocks; client blocks are FedAvg'd at the end of the round. Aggregating the ``G_k`` needs all of them,
so the server's step is a barrier between the uplink chain and the downlink chain.
"""

from .base import MIGRATION, MODEL_AGGREGATION, Scheme, Server, Stage

SFL_GA = Scheme(
    name="sfl-ga",
    summary="shared server, one broadcast of the aggregated smashed-data gradient, FedAvg of client blocks",
    server=Server.SHARED,
    broadcasts_gradient=True,
    aggregates_client_models=True,
    stages=(
        Stage(("client_forward", "uplink", "server"), allocated=True),
        Stage(("gradient_downlink", "client_backward")),
        *MODEL_AGGREGATION,
        *MIGRATION,
    ),
)
