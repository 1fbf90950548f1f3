"""SplitFed V1: one server copy per client, trained in parallel; own gradients unicast.

Each client's chain (forward, upload, its server copy's step, its own gradient down, backward) runs
independently of the others, so an iteration lasts the slowest client's whole chain. Client and server
copies are FedAvg'd every round (the server copies inside the server, at no air cost).
"""

from .base import MIGRATION, MODEL_AGGREGATION, Scheme, Server, Stage

SFL_V1 = Scheme(
    name="sfl-v1",
    summary="one server copy per client in parallel, own gradients unicast, FedAvg of both sides",
    server=Server.PER_CLIENT,
    broadcasts_gradient=False,
    aggregates_client_models=True,
    stages=(
        Stage(("client_forward", "uplink", "server", "gradient_downlink", "client_backward"), allocated=True),
        *MODEL_AGGREGATION,
        *MIGRATION,
    ),
)
