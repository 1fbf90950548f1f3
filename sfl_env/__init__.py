"""SFL-Env: Split Federated Learning with a cut point that may change every round.

Modules, in the order a round flows through them: ``config`` (one validated configuration),
``data`` (datasets and client partitions), ``models`` (splittable model zoo), ``profiling``
(per-block FLOPs and bits) and ``schemes`` (one real training round of SFL-GA, SFL-V1, SFL-V2,
PSL or FL).
"""

__version__ = "0.1.0"
