"""SplitFed V2: one server model that takes one SGD step per client, clients in a random order.

The server serves the clients one after another with its whole CPU, so there is no server CPU to
share: the allocation minimises the uplink stage alone. The schedule lets the server start once every
upload has arrived and the gradients leave after the last client has been served: an upper bound of
the pipelined schedule. Own gradients are unicast; client blocks are FedAvg'd every round.
"""

from .base import MIGRATION, MODEL_AGGREGATION, Scheme, Server, Stage

SFL_V2 = Scheme(
    name="sfl-v2",
    summary="one server model stepping once per client in a random order, own gradients unicast, FedAvg",
    server=Server.SEQUENTIAL,
    broadcasts_gradient=False,
    aggregates_client_models=True,
    stages=(
        Stage(("client_forward", "uplink"), allocated=True),
        Stage(("server",), sequential=True),
        Stage(("gradient_downlink", "client_backward")),
        *MODEL_AGGREGATION,
        *MIGRATION,
    ),
)
