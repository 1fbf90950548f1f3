"""SFL-Env: Split Federated Learning with a cut point that may change every round.

Modules, in the order a round flows through them: ``config`` (every option, as validated data;
``hardware`` holds the radio and processor parameters), ``schemes`` (one declaration per scheme:
topology, gradient return, aggregation, latency schedule), ``data`` (image datasets, text corpora,
file formats, partitions, sampler), ``models`` (splittable model zoo, a GPT-style decoder included),
``profiling`` (per-block FLOPs and bits), ``training`` (the round-trainer protocol; real PyTorch
rounds and the calibrated analytic twin), ``ledger`` (the cost of a round), ``privacy`` (allowed
cuts), ``wireless`` and ``latency`` (seconds of a round, and each scheme's allocation problem),
``convergence`` (the convergence term), ``pricing`` (one round's price, or a batch's) and ``env``
(the Gymnasium environment; ``planning`` its interface for planners; ``vector`` the native vectorised
twin). ``errors`` holds the one family of errors for a user's mistakes. Importing
the package registers one real and one analytic environment id per task, and a pair for the language
model (:data:`TASK_IDS`).
"""

__version__ = "0.1.0"

# One real and one analytic id per task (sfl_env.config.TASKS), on the default preset and on lm; the id
# fixes the task and the training (and the preset, where it names one).
TASK_IDS: dict[str, dict[str, str]] = {
    "SFLEnv-v0": {"task": "default"},
    "SFLEnvAnalytic-v0": {"task": "default", "training": "analytic"},
    "SFLEnvDynamic-v0": {"task": "dynamic"},
    "SFLEnvDynamicAnalytic-v0": {"task": "dynamic", "training": "analytic"},
    "SFLEnvBudget-v0": {"task": "budget"},
    "SFLEnvBudgetAnalytic-v0": {"task": "budget", "training": "analytic"},
    "SFLEnvVehicular-v0": {"task": "vehicular"},
    "SFLEnvVehicularAnalytic-v0": {"task": "vehicular", "training": "analytic"},
    # The language model: the default task on the lm preset (a GPT-style decoder on Python's sources).
    "SFLEnvLM-v0": {"task": "default", "preset": "lm"},
    "SFLEnvLMAnalytic-v0": {"task": "default", "preset": "lm", "training": "analytic"},
}


def register_envs() -> None:
    """Registers the environment ids with Gymnasium; safe to call again (``import sfl_env`` does it)."""
    import gymnasium as gym

    for env_id, kwargs in TASK_IDS.items():
        if env_id not in gym.registry:
            # An analytic id also steps many episodes as arrays: gym.make_vec(env_id, num_envs=E).
            vector = "sfl_env.vector:SFLVectorEnv" if kwargs.get("training") == "analytic" else None
            gym.register(id=env_id, entry_point="sfl_env.env:SFLEnv", vector_entry_point=vector, kwargs=kwargs)


register_envs()
