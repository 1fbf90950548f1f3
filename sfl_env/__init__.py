"""SFL-Env: Split Federated Learning with a cut point that may change every round.

Modules, in the order a round flows through them: ``config`` (every option, as validated data),
``schemes`` (one declaration per scheme: topology, gradient return, aggregation, latency schedule),
``data`` (datasets, file formats, partitions, sampler), ``models`` (splittable model zoo),
``profiling`` (per-block FLOPs and bits), ``training`` (the round-trainer protocol; real PyTorch
rounds and the calibrated analytic twin), ``ledger`` (the cost of a round), ``privacy`` (allowed
cuts), ``wireless`` and ``latency`` (seconds of a round, and each scheme's allocation problem),
``convergence`` (the convergence term) and ``env`` (the Gymnasium environment). ``errors`` holds the
one family of errors for a user's mistakes. Importing the package registers ``SFLEnv-v0`` and
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
