"""Parallel split learning: a shared server as in SFL-GA, own gradients unicast, no client FedAvg.

The shared server computes one loss over all K smashed batches, so, as in SFL-GA, its step is a
barrier: the downlink chain starts when the last batch has been served. Each client keeps its own
client-side blocks across rounds; the evaluated global model uses their average. Moving the cut
shallower makes every client upload its copy of the moved blocks.
"""

from .base import MIGRATION, Scheme, Server, Stage

PSL = Scheme(
    name="psl",
    summary="shared server, own gradients unicast, client blocks kept per client (no FedAvg)",
    server=Server.SHARED,
    broadcasts_gradient=False,
    aggregates_client_models=False,
    stages=(
        Stage(("client_forward", "uplink", "server"), allocated=True),
        Stage(("gradient_downlink", "client_backward")),
        *MIGRATION,
    ),
)
