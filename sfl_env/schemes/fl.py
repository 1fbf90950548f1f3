"""FedAvg: every client trains the whole model; the cut is ignored (reported as the number of blocks).

A client's round is one chain: ``I`` local iterations, then the upload of its model (no barrier in
between, as there is no server step); the averaged model is then broadcast.
"""

from .base import Scheme, Server, Stage

FL = Scheme(
    name="fl",
    summary="FedAvg: each client trains the whole model, then the models are averaged",
    server=Server.NONE,
    broadcasts_gradient=False,
    aggregates_client_models=True,
    stages=(
        Stage(("client_forward", "client_backward", "model_upload"), per_iteration=False, allocated=True),
        Stage(("model_broadcast",), per_iteration=False),
    ),
)
