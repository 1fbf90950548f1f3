"""Cut-selection agents: the paper's Double DQN, Stable-Baselines3 adapters and baseline policies.

Every agent implements :class:`agents.base.Agent` (``predict(obs, action_mask)``, ``learn``,
``save``/``load``) and talks to the environment only through its public API.

    import agents
    agent = agents.make("ddqn", env, seed=0)          # hyperparameters from agents/configs/ddqn.yml
    agent = agents.load("runs/ddqn-seed0")             # a train_agent.py run, ready to predict

Names: ``ddqn``; the SB3 algorithms ``dqn``, ``ppo``, ``a2c``, ``qrdqn``, ``maskable-ppo``; and the
baselines ``random``, ``fixed-shallowest``, ``fixed-middle``, ``fixed-deepest``, ``greedy-latency``,
``oracle`` and ``planner``; and ``cut-<n>``, a fixed cut with ``n`` client blocks (the cut sweep).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from sfl_env.errors import ConfigError, CorruptFileError, did_you_mean, unknown_name

from .base import Agent, Callback
from .baselines import CutAgent, FixedCutAgent, GreedyLatencyAgent, OracleAgent, RandomAgent
from .ddqn import DDQNAgent
from .planner import PlannerAgent
from .rllib import MODULE_FOLDER, RLLIB_ALGORITHMS, RLlibAgent
from .sb3 import ALGORITHMS, SB3Agent

CONFIG_DIR = Path(__file__).parent / "configs"
BASELINES = ("random", "fixed-shallowest", "fixed-middle", "fixed-deepest", "greedy-latency", "oracle", "planner")
LEARNERS = ("ddqn", *ALGORITHMS)
AGENTS = LEARNERS + BASELINES
RLLIB = RLLIB_ALGORITHMS  # trained by train_rllib.py; their run folders load like any other
RUN_CONFIG = "config.json"

# The keys every run folder's config.json holds (train_agent.py and train_rllib.py write them), with
# their types; train_agent.py's runs also hold RESUME_KEYS, which --resume needs.
RUN_KEYS = {"agent": str, "env_id": str, "env_kwargs": dict, "seed": int, "n_actions": int}
RESUME_KEYS = {"hyperparameters": dict, "total_steps": int, "n_envs": int, "eval_freq": int, "eval_episodes": int,
               "checkpoint_freq": int, "run_name": str}

__all__ = ["AGENTS", "Agent", "Callback", "check_env_id", "check_name", "has_model", "hyperparameters", "load",
           "make", "nullable", "read_run_config"]


def check_name(name: str) -> str:
    """``name`` if it names an agent (one of ``AGENTS`` or ``cut-<n>``); otherwise a
    :class:`~sfl_env.errors.ConfigError` with a did-you-mean and the allowed names."""
    if name.startswith("cut-") and name[4:].isdigit():
        return name
    if name not in AGENTS + RLLIB:
        raise unknown_name("agent", name, [*AGENTS, *RLLIB, "cut-<n>"])
    return name


def check_env_id(env_id: str) -> str:
    """``env_id`` if Gymnasium knows it; otherwise a :class:`~sfl_env.errors.ConfigError` with a
    did-you-mean (over every registered id) and our ids."""
    import gymnasium as gym

    if env_id in gym.registry:
        return env_id
    ours = [k for k, spec in gym.registry.items() if str(spec.entry_point).startswith("sfl_env")]
    raise ConfigError(f"{env_id!r} is not registered{did_you_mean(env_id, gym.registry)}; "
                      f"SFL-Env ids: {', '.join(ours)}")


def has_model(run_folder: str | Path, model: str = "best_model") -> bool:
    """Whether a ``train_agent.py`` run folder holds ``model`` (``model`` or ``best_model``), or, for
    ``model="model"``, a ``train_rllib.py`` run folder holds its RL module."""
    folder = Path(run_folder)
    rllib = model == "model" and (folder / MODULE_FOLDER).is_dir()
    return rllib or any((folder / f"{model}.{ext}").is_file() for ext in ("pt", "zip"))


def hyperparameters(name: str, env_id: str | None = None) -> dict[str, Any]:
    """The agent's hyperparameters for ``env_id``: ``configs/<name>.yml``'s ``default`` updated by its
    ``env_id`` section (rl-baselines3-zoo style). Baselines have none."""
    check_name(name)
    path = CONFIG_DIR / f"{name}.yml"
    if name not in LEARNERS or not path.is_file():
        return {}
    with path.open() as file:
        sections = yaml.safe_load(file) or {}
    return dict(sections.get("default", {})) | dict(sections.get(env_id, {}) if env_id else {})


def nullable(name: str) -> set[str]:
    """The hyperparameters of ``name`` that may be None: those null in its config's ``default`` section
    (``learning_rate_final: null``, no decay), whatever a task's section sets them to."""
    return {key for key, value in hyperparameters(name).items() if value is None}


def make(name: str, env: Any = None, *, seed: int = 0, env_id: str | None = None, **overrides: Any) -> Agent:
    """Builds agent ``name`` for ``env`` (a Gymnasium env or an SB3 ``VecEnv``; its spaces size the agent).

    ``overrides`` replace single hyperparameters; an unknown one raises naming the allowed keys.
    Baselines are bound to ``env`` when it is a single Gymnasium env.
    """
    check_name(name)
    if name in RLLIB:
        raise ConfigError(f"{name!r} trains with RLlib: python train_rllib.py --algorithm {name}; "
                          f"agents.load(run_folder) loads what it trained")
    if env is None:
        raise ValueError(f"agents.make({name!r}) needs the env it will act in (for its spaces)")
    env_id = env_id or _env_id(env)
    n_actions = int(env.action_space.n)
    params = hyperparameters(name, env_id) | overrides
    params.pop("n_timesteps", None)
    if name == "ddqn":
        return DDQNAgent(int(env.observation_space.shape[0]), n_actions, seed=seed, **params)
    if name in ALGORITHMS:
        return SB3Agent(name, n_actions, seed=seed, **params)
    if params:
        raise ConfigError(f"baseline {name!r} takes no hyperparameters; got {', '.join(sorted(params))}")
    if name == "random":
        agent: Agent = RandomAgent(n_actions, seed)
    elif name.startswith("cut-"):
        agent = CutAgent(n_actions, seed, cut=int(name[4:]))
    elif name.startswith("fixed-"):
        agent = FixedCutAgent(n_actions, seed, position=name.removeprefix("fixed-"))
    elif name == "greedy-latency":
        agent = GreedyLatencyAgent(n_actions, seed)
    elif name == "planner":
        agent = PlannerAgent(n_actions, seed)
    else:
        agent = OracleAgent(n_actions, seed)
    if hasattr(env, "get_wrapper_attr"):  # a single Gymnasium env, not a VecEnv
        agent.bind(env)
    return agent


def read_run_config(run_folder: str | Path, resumable: bool = False) -> dict[str, Any]:
    """A run folder's ``config.json``, checked: every key of :data:`RUN_KEYS` (and of
    :data:`RESUME_KEYS` when ``resumable``) present with its type, and a known agent. A missing, torn,
    foreign or incomplete file raises :class:`~sfl_env.errors.CorruptFileError` (one line naming the
    file and the key), or ``FileNotFoundError`` when there is none."""
    folder = Path(run_folder)
    path = folder / RUN_CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a train_agent.py or train_rllib.py run folder: {RUN_CONFIG} "
                                f"is missing")
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise CorruptFileError(f"{path} is corrupt ({error})") from None
    if not isinstance(config, dict):
        raise CorruptFileError(f"{path} is not a run's configuration: it holds a {type(config).__name__}, "
                               f"not a mapping")
    def check_keys(keys: dict[str, type], holds: str) -> None:
        for key, kind in keys.items():
            if key not in config:
                raise CorruptFileError(f"{path} is not a run's configuration (another project's, or incomplete): "
                                       f"key {key!r} is missing; {holds} {', '.join(keys)}")
            if not isinstance(config[key], kind) or (kind is int and isinstance(config[key], bool)):
                raise CorruptFileError(f"{path}: {key}={config[key]!r} is not a {kind.__name__}")

    check_keys(RUN_KEYS, "a run's config.json holds")
    try:
        check_name(config["agent"])
    except ConfigError as error:
        raise CorruptFileError(f"{path}: {error}") from None
    if resumable:
        check_keys(RESUME_KEYS, "a train_agent.py run's config.json also holds")
    return config


def check_run_fits(run_folder: str | Path, env: Any, config: dict[str, Any] | None = None) -> None:
    """Refuses to play a run in an env whose spaces differ from those it was trained on, naming the env
    options the run was trained with and how to pass them (``config``: the run's, when already read)."""
    config = read_run_config(run_folder) if config is None else config
    trained = (config["n_actions"], config.get("obs_dim"))
    here = (int(env.action_space.n), int(env.observation_space.shape[0]))
    if trained[0] != here[0] or (trained[1] is not None and trained[1] != here[1]):
        options = " ".join(f"{k}={v}" for k, v in config["env_kwargs"].items())
        raise ConfigError(
            f"{run_folder} was trained on {config['env_id']}"
            + (f" with env options {options}" if options else " with its default options")
            + f" ({trained[0]} cuts, {trained[1]} observations); this env has {here[0]} cuts and {here[1]} "
            f"observations: pass --env-id {config['env_id']}"
            + (f" --env-kwargs {options}" if options else "") + " to play it")


def load(run_folder: str | Path, env: Any = None, model: str = "model") -> Agent:
    """The trained agent of a ``train_agent.py`` run folder, ready to ``predict``: its final model, or
    ``model="best_model"`` for the one that scored best on the validation episodes during training.

    ``env``, when given, is bound to the agent (needed by ``greedy-latency`` and ``oracle``).
    """
    folder = Path(run_folder)
    config = read_run_config(folder)
    name, seed, n_actions = config["agent"], config["seed"], config["n_actions"]
    if env is not None:
        check_run_fits(folder, env, config)
    if name in RLLIB:
        agent: Agent = RLlibAgent.load(folder / MODULE_FOLDER, name, n_actions)
    elif name == "ddqn":
        agent = DDQNAgent.load(folder / f"{model}.pt")
    elif name in ALGORITHMS:
        agent = SB3Agent(name, n_actions, seed=seed, **config.get("hyperparameters", {})).load_model(folder / model)
    else:
        agent = make(name, _SpacesOnly(n_actions), seed=seed, env_id=config.get("env_id"))
    return agent.bind(env) if env is not None else agent


def _env_id(env: Any) -> str | None:
    spec = getattr(env, "spec", None)
    if spec is None and hasattr(env, "get_attr"):  # SB3 VecEnv
        spec = env.get_attr("spec", indices=[0])[0]
    return spec.id if spec is not None else None


class _SpacesOnly:
    """Stands in for an env when rebuilding a baseline: only the action count is needed."""

    def __init__(self, n_actions: int) -> None:
        import gymnasium as gym

        self.action_space = gym.spaces.Discrete(n_actions)
        self.spec = None
