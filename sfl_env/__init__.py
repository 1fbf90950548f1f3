"""SFL-Env: Split Federated Learning with a cut point that may change every round.

Modules, in the order a round flows through them: ``config`` (one validated configuration),
``data`` (datasets and client partitions), ``models`` (splittable model zoo), ``profiling``
(per-block FLOPs and bits), ``schemes`` (one real training round of SFL-GA, SFL-V1, SFL-V2, PSL or
FL), ``privacy`` (allowed cuts), ``wireless`` and ``latency`` (seconds and bits of a round),
``convergence`` (the convergence term and the calibrated analytic training model) and ``env``
(the Gymnasium environment). Importing the package registers ``SFLEnv-v0`` and
``SFLEnvAnalytic-v0``.
"""

__version__ = "0.1.0"


def register_envs() -> None:
    """Registers the environment ids with Gymnasium; safe to call again (``import sfl_env`` does it)."""
    import gymnasium as gym

    ids = {
        "SFLEnv-v0": {},
        "SFLEnvAnalytic-v0": {"training": "analytic"},
    }
    for env_id, kwargs in ids.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point="sfl_env.env:SFLEnv", kwargs=kwargs)


register_envs()
