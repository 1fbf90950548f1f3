"""The catalogue of SFL schemes: one declaration per scheme, one module per declaration.

``get_scheme(name)`` returns the :class:`~sfl_env.schemes.base.Scheme` registered under ``name``;
:data:`SCHEMES` lists the names. A scheme declares its server topology, how gradients return, whether
client models are aggregated and its latency schedule (see :mod:`sfl_env.schemes.base`); the ledger,
the latency model, the allocation problem and the trainers all read that declaration.

Adding a scheme: write ``sfl_env/schemes/<name>.py`` with a ``Scheme(...)`` and add it to
:data:`REGISTERED` below. A scheme on one of the four server topologies needs nothing else; a new
topology needs its training step in :mod:`sfl_env.training.real`.

This package is pure declarations (no torch, no numpy), so the configuration can validate scheme
names against it.
"""

from __future__ import annotations

from ..errors import unknown_name
from .base import Scheme, Server, Stage
from .fl import FL
from .psl import PSL
from .sfl_ga import SFL_GA
from .sfl_v1 import SFL_V1
from .sfl_v2 import SFL_V2

REGISTERED: tuple[Scheme, ...] = (SFL_GA, SFL_V1, SFL_V2, PSL, FL)
_BY_NAME: dict[str, Scheme] = {scheme.name: scheme for scheme in REGISTERED}
SCHEMES: tuple[str, ...] = tuple(_BY_NAME)

__all__ = ["REGISTERED", "SCHEMES", "Scheme", "Server", "Stage", "get_scheme"]


def get_scheme(name: str | Scheme) -> Scheme:
    """The scheme registered as ``name`` (a :class:`Scheme` is returned as it is)."""
    if isinstance(name, Scheme):
        return name
    try:
        return _BY_NAME[name]
    except (KeyError, TypeError):
        raise unknown_name("scheme", name, SCHEMES) from None
