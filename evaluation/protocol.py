"""The benchmark protocol: its modes, its seeds, and which agents, schemes and cuts run on which env.

Modes (``evaluate.py --mode``):
  agents   every agent asked for (train_agent.py run folders, a glob picks several runs of one agent
           and seed i uses run i mod #runs) next to the references (random, every fixed cut
           ``cut-<n>``, greedy latency, the one-round oracle, and the planner where the configuration
           is calibrated), and each but random, oracle and planner again with ``allocation=equal``
           (the paper's ablation grid: cut policy x optimal/equal resources). Default env:
           SFLEnvAnalytic-v0.
  schemes  SFL-GA, SFL-V1, SFL-V2, PSL and FL on the same seeds, each with its cut chosen by the first
           agent asked for (default ``oracle``). Default env: SFLEnv-v0 (real training).
  cuts     every fixed cut of SFL-GA (``cut-1`` ... ``cut-L``). Default env: SFLEnv-v0.
  all      cuts, schemes and agents, then ``claims.md`` from all three.

Seeds: seed i, episode j resets the env with seed 1_000_000 + 1000 i + j (:func:`env_seed`) for every
agent, so all agents face the same channels and data.
"""

from __future__ import annotations

import glob
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym

import agents
import sfl_env  # noqa: F401  (registers the env ids)
from sfl_env.errors import ConfigError
from sfl_env.schemes import SCHEMES
from sfl_env.training.calibration import is_calibrated

from .rollout import EVAL_SEED_OFFSET

MODES = ("agents", "schemes", "cuts", "all")
DEFAULT_ENV = {"agents": "SFLEnvAnalytic-v0", "schemes": "SFLEnv-v0", "cuts": "SFLEnv-v0"}
# The agents of each mode when none are asked for; asked-for agents come first in agents mode.
DEFAULT_AGENTS = {"agents": "random,greedy-latency,oracle,planner", "schemes": "oracle", "cuts": ""}
REFERENCES = ("random", "oracle", "planner")  # the ends of the normalised score and the paired comparisons


@dataclass
class Entry:
    """One leaderboard line: a policy on one env config."""

    label: str
    policy: str  # agent name
    env_id: str
    env_kwargs: dict[str, Any]
    runs: list[Path] = field(default_factory=list)  # train_agent.py run folders (learned agents)
    model: str = "best"  # of a run folder: "best" (validated during training, when saved) or "final"

    @property
    def config_hash(self) -> str:
        return config_hash(self.env_id, self.env_kwargs)

    @property
    def source(self) -> str:
        return ";".join(f"{r}:{self.model}" for r in self.runs) or self.policy


def config_hash(env_id: str, env_kwargs: dict[str, Any]) -> str:
    """A short, stable id of an env configuration (12 hex digits of a SHA-256)."""
    text = json.dumps({"env_id": env_id, "env_kwargs": env_kwargs}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def env_seed(seed_index: int, episode: int) -> int:
    """The env seed of episode ``episode`` of seed ``seed_index``, the same for every agent."""
    return EVAL_SEED_OFFSET + 1000 * seed_index + episode


def modes_to_run(mode: str) -> tuple[str, ...]:
    """The modes ``mode`` stands for, in the order they run (``all``: cuts, schemes, agents)."""
    return ("cuts", "schemes", "agents") if mode == "all" else (mode,)


def parse_agents(spec: str) -> list[tuple[str, list[Path]]]:
    """``"runs/ddqn__*,random"`` -> [(agent name, run folders)]; run folders of one agent are grouped."""
    out: dict[str, list[Path]] = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        folders = sorted(Path(p) for p in glob.glob(item)) if any(c in item for c in "*?[") else [Path(item)]
        if any((f / agents.RUN_CONFIG).is_file() for f in folders):
            for folder in folders:
                if not (folder / agents.RUN_CONFIG).is_file():
                    raise ConfigError(f"{folder} is not a train_agent.py run folder ({agents.RUN_CONFIG} missing)")
                name = agents.read_run_config(folder)["agent"]
                out.setdefault(name, []).append(folder)
        elif "/" in item or Path(item).exists() or any(c in item for c in "*?["):
            raise ConfigError(f"--agents: {item!r} matches no train_agent.py run folder")
        else:
            agents.check_name(item)
            if item in agents.LEARNERS:
                raise ConfigError(f"--agents {item!r} is a learning agent; give its train_agent.py run folder(s), "
                                  f"e.g. 'runs/{item}__*'")
            out.setdefault(item, [])
    if not out:
        raise ConfigError("--agents is empty; give baseline names and/or run folders, comma-separated")
    return list(out.items())


def build_entries(mode: str, agent_specs: list[tuple[str, list[Path]]], env_id: str, env_kwargs: dict[str, Any],
                  n_cuts: int, model: str = "best") -> list[Entry]:
    """The leaderboard lines of one mode (see the module docstring)."""
    if mode == "cuts":
        kwargs = {"scheme": "sfl-ga"} | env_kwargs
        return [Entry(f"cut-{c}", f"cut-{c}", env_id, kwargs) for c in range(1, n_cuts + 1)]
    if mode == "schemes":
        policy, runs = agent_specs[0]
        return [Entry(scheme, policy, env_id, env_kwargs | {"scheme": scheme}, runs, model) for scheme in SCHEMES]
    specs = dict(agent_specs)
    for name in REFERENCES:
        specs.setdefault(name, [])
    for cut in range(1, n_cuts + 1):
        specs.setdefault(f"cut-{cut}", [])
    entries = [Entry(name, name, env_id, env_kwargs, runs, model) for name, runs in specs.items()]
    if "allocation" not in env_kwargs:
        entries += [Entry(f"{name}/equal", name, env_id, env_kwargs | {"allocation": "equal"}, runs, model)
                    for name, runs in specs.items() if name not in REFERENCES]
    return entries


def plan_mode(mode: str, agents_spec: str | None, env_id: str | None, env_kwargs: dict[str, Any],
              model: str = "best") -> list[Entry]:
    """The entries of one mode: ``agents_spec`` is ``evaluate.py --agents`` (None: the mode's default),
    ``env_id`` None picks the mode's default env. Builds the env once to count its cuts, so a bad
    keyword fails here, before anything runs (ValueError, TypeError or FileNotFoundError)."""
    env_id = env_id or DEFAULT_ENV[mode]
    probe = gym.make(env_id, **env_kwargs)
    probe.reset(seed=0)  # what only a reset can check (data sizes, partitions) fails here, not mid-run
    n_cuts = int(probe.action_space.n)
    calibrated = is_calibrated(probe.unwrapped.config.system)
    spec = DEFAULT_AGENTS[mode]
    if mode == "agents" and agents_spec:
        spec = f"{agents_spec},{spec}"
    elif mode == "schemes" and agents_spec:
        spec = agents_spec.split(",")[0]
    specs = parse_agents(spec) if mode != "cuts" else []
    for _, runs in specs:
        for run in runs:
            agents.check_run_fits(run, probe)
    probe.close()
    if not calibrated:
        if "planner" in [item.strip() for item in (agents_spec or "").split(",")]:
            raise ConfigError("agent 'planner' plans over the calibrated twin, and this configuration has none; "
                              "drop it from --agents (scores then normalise against the oracle)")
        specs = [(name, runs) for name, runs in specs if name != "planner"]
    return build_entries(mode, specs, env_id, env_kwargs, n_cuts, model)

