"""Cut-selection agents: the paper's Double DQN, Stable-Baselines3 adapters and baseline policies.

They talk to the environment only through the Gymnasium API. Nothing is exported yet.
"""
