"""The paper's cut-selection agent: Double DQN with action masks, in plain PyTorch.

One file, read top to bottom: the hyperparameters, the Q-network, the replay buffer, the Double-DQN
target, then the agent (act, learn, save/load, checkpoint/resume). :class:`DDQNConfig`'s defaults are
the paper's agent (SFL-GA, arXiv 2501.01078: one-step targets, gamma 0.9 for its per-round reward);
``train_agent.py`` starts from ``agents/configs/ddqn.yml`` instead, whose defaults are set for the
time-to-accuracy objective (gamma 0.99) and per task.

Masks are honoured twice: epsilon-greedy exploration and greedy actions pick only allowed cuts, and
the target's argmax over next actions is taken over the cuts allowed in the next state (stored in
the replay buffer), so a forbidden cut's Q-value never leaks into a target.

``n_step > 1`` stores n-step transitions: the discounted sum of the next ``n`` rewards and the state
``n`` steps later, bootstrapped with ``gamma^n`` (fewer steps where the episode ends first). A cut's
effect on time to accuracy shows in how long the episode lasts, many rounds later; n-step returns
carry it back ``n`` rounds per update instead of one.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sfl_env.storage import replacing

from .base import Agent, Callback, masked_argmax

CHECKPOINT_FORMAT = "sfl-env/ddqn/1"


@dataclass
class DDQNConfig:
    """Hyperparameters; the defaults are the paper's agent. Steps count env transitions summed over parallel envs."""

    gamma: float = 0.9
    n_step: int = 1  # rewards summed before bootstrapping (1: the paper's one-step target)
    learning_rate: float = 1e-3
    learning_rate_final: float | None = None  # linear decay to this over total_steps (None: constant)
    hidden_sizes: list[int] = field(default_factory=lambda: [128, 128])
    dueling: bool = False  # a value and an advantage head (QNetwork); False: the paper's one head
    buffer_size: int = 10_000
    batch_size: int = 64
    learning_starts: int = 500
    train_frequency: int = 1  # env steps per gradient step
    target_update_interval: int = 100  # gradient steps between target updates
    tau: float = 1.0  # 1 = hard copy; < 1 = Polyak averaging at every target update
    epsilon_start: float = 1.0
    epsilon_end: float = 0.01
    exploration_fraction: float = 0.5  # of total_steps, linear decay
    max_grad_norm: float = 10.0
    log_interval: int = 1000  # env steps between metric records

    def __post_init__(self) -> None:
        checks = {
            "gamma": 0.0 <= self.gamma <= 1.0,
            "n_step": isinstance(self.n_step, int) and 1 <= self.n_step <= 1000,
            "learning_rate": self.learning_rate > 0,
            "learning_rate_final": self.learning_rate_final is None or self.learning_rate_final >= 0,
            "hidden_sizes": len(self.hidden_sizes) > 0 and all(int(h) > 0 for h in self.hidden_sizes),
            "dueling": isinstance(self.dueling, bool),
            "buffer_size": self.buffer_size >= 1,
            "batch_size": 1 <= self.batch_size <= self.buffer_size,
            "learning_starts": self.learning_starts >= 0,
            "train_frequency": self.train_frequency >= 1,
            "target_update_interval": self.target_update_interval >= 1,
            "tau": 0.0 < self.tau <= 1.0,
            "epsilon_start": 0.0 <= self.epsilon_start <= 1.0,
            "epsilon_end": 0.0 <= self.epsilon_end <= 1.0,
            "exploration_fraction": 0.0 < self.exploration_fraction <= 1.0,
            "max_grad_norm": self.max_grad_norm > 0,
            "log_interval": self.log_interval >= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"ddqn hyperparameter {bad[0]}={getattr(self, bad[0])!r} is out of range")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DDQNConfig:
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise ValueError(f"unknown ddqn hyperparameter {unknown[0]!r}; allowed: {', '.join(names)}")
        return cls(**values)


class QNetwork(nn.Module):
    """state -> hidden -> ReLU -> ... -> one Q-value per cut.

    ``dueling`` (Wang et al., "Dueling network architectures for deep reinforcement learning", ICML 2016)
    splits the last layer into a state value V(s) and advantages A(s, a), with Q = V + A - mean(A): the
    cuts share one estimate of how good the state is and learn only how they differ, which is what
    matters when their values are close (here: cut 1 and cut 2 cost about the same per round)."""

    def __init__(self, obs_dim: int, n_actions: int, hidden_sizes: list[int], dueling: bool = False) -> None:
        super().__init__()
        layers, width = [], obs_dim
        for hidden in hidden_sizes:
            layers += [nn.Linear(width, int(hidden)), nn.ReLU()]
            width = int(hidden)
        self.dueling = dueling
        if dueling:
            self.net = nn.Sequential(*layers)
            self.value, self.advantage = nn.Linear(width, 1), nn.Linear(width, n_actions)
        else:
            layers.append(nn.Linear(width, n_actions))
            self.net = nn.Sequential(*layers)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if not self.dueling:
            return self.net(obs)
        features = self.net(obs)
        advantage = self.advantage(features)
        return self.value(features) + advantage - advantage.mean(dim=-1, keepdim=True)


class ReplayBuffer:
    """A ring buffer of transitions, with the action mask of the next state and the discount that
    bootstraps from it (``gamma^k`` for a k-step transition)."""

    FIELDS = ("obs", "actions", "rewards", "next_obs", "terminated", "next_masks", "discounts")

    def __init__(self, capacity: int, obs_dim: int, n_actions: int) -> None:
        self.capacity, self.position, self.size = capacity, 0, 0
        self.obs = np.zeros((capacity, obs_dim), dtype=np.float32)
        self.actions = np.zeros(capacity, dtype=np.int64)
        self.rewards = np.zeros(capacity, dtype=np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), dtype=np.float32)
        self.terminated = np.zeros(capacity, dtype=np.float32)
        self.next_masks = np.ones((capacity, n_actions), dtype=bool)
        self.discounts = np.zeros(capacity, dtype=np.float32)

    def add(self, obs, actions, rewards, next_obs, terminated, next_masks, discounts) -> None:
        """Adds a batch of transitions (one per parallel env)."""
        for row in zip(obs, actions, rewards, next_obs, terminated, next_masks, discounts):
            for name, value in zip(self.FIELDS, row):
                getattr(self, name)[self.position] = value
            self.position = (self.position + 1) % self.capacity
            self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        idx = rng.integers(0, self.size, size=batch_size)
        return {name: torch.as_tensor(getattr(self, name)[idx]) for name in self.FIELDS}

    def state_dict(self) -> dict[str, np.ndarray]:
        state = {name: getattr(self, name)[: self.size] for name in self.FIELDS}
        return state | {"position": np.array(self.position), "capacity": np.array(self.capacity)}

    def load_state_dict(self, state: dict[str, np.ndarray], gamma: float | None = None) -> None:
        """Restores a buffer; one saved before discounts were stored takes ``gamma`` for each (one-step)."""
        if "discounts" not in state:
            if gamma is None:
                raise ValueError("this replay buffer holds no discounts; pass the gamma it was collected with")
            state = state | {"discounts": np.full(len(state["actions"]), gamma, dtype=np.float32)}
        if int(state["capacity"]) != self.capacity:
            raise ValueError(f"replay buffer capacity {int(state['capacity'])} does not match {self.capacity}")
        self.size = len(state["actions"])
        self.position = int(state["position"])
        for name in self.FIELDS:
            getattr(self, name)[: self.size] = state[name]


def double_dqn_target(
    rewards: torch.Tensor,
    terminated: torch.Tensor,
    next_q_online: torch.Tensor,
    next_q_target: torch.Tensor,
    next_masks: torch.Tensor,
    gamma: float | torch.Tensor,
) -> torch.Tensor:
    """``y = r + gamma (1 - terminated) Q_target(s', argmax_{a allowed in s'} Q_online(s', a))``; ``gamma``
    is one number or, for n-step transitions, each transition's ``gamma^k``."""
    masked_online = next_q_online.masked_fill(~next_masks, -math.inf)
    best_next = masked_online.argmax(dim=1, keepdim=True)
    next_value = next_q_target.gather(1, best_next).squeeze(1)
    return rewards + gamma * (1.0 - terminated) * next_value


def linear_epsilon(step: int, total_steps: int, config: DDQNConfig) -> float:
    """Linear decay from ``epsilon_start`` to ``epsilon_end`` over ``exploration_fraction * total_steps``."""
    duration = max(1.0, config.exploration_fraction * total_steps)
    fraction = min(1.0, step / duration)
    return config.epsilon_start + fraction * (config.epsilon_end - config.epsilon_start)


class DDQNAgent(Agent):
    """Double DQN over the cut index; see the module docstring."""

    name = "ddqn"
    learns = True

    def __init__(self, obs_dim: int, n_actions: int, seed: int = 0, **hyperparameters: Any) -> None:
        super().__init__()
        self.config = DDQNConfig.from_dict(hyperparameters)
        self.obs_dim, self.n_actions, self.seed = int(obs_dim), int(n_actions), int(seed)
        # Both networks are initialised inside the fork: building an agent must not advance torch's
        # global RNG (that would make other code's random draws depend on how many agents were built).
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.q_network = QNetwork(self.obs_dim, self.n_actions, self.config.hidden_sizes, self.config.dueling)
            self.target_network = QNetwork(self.obs_dim, self.n_actions, self.config.hidden_sizes, self.config.dueling)
        self.target_network.load_state_dict(self.q_network.state_dict())
        self.optimizer = torch.optim.Adam(self.q_network.parameters(), lr=self.config.learning_rate)
        self.buffer = ReplayBuffer(self.config.buffer_size, self.obs_dim, self.n_actions)
        self.rng = np.random.default_rng(seed)
        self.gradient_steps = 0
        self.skipped_updates = 0  # updates dropped because the loss was not finite

    # ------------------------------------------------------------------ acting

    @torch.no_grad()
    def q_values(self, obs: np.ndarray) -> np.ndarray:
        """Q-values of a batch of observations, shape (batch, n_actions)."""
        return self.q_network(torch.as_tensor(np.asarray(obs, dtype=np.float32).reshape(-1, self.obs_dim))).numpy()

    def predict(self, obs: np.ndarray, action_mask: np.ndarray | None = None, deterministic: bool = True) -> int:
        return masked_argmax(self.q_values(obs)[0], action_mask)

    def _explore(self, obs: np.ndarray, masks: np.ndarray, epsilon: float) -> np.ndarray:
        """Epsilon-greedy over allowed actions, one per parallel env."""
        greedy = self.q_values(obs)
        actions = np.empty(len(obs), dtype=np.int64)
        for i, mask in enumerate(masks):
            if self.rng.random() < epsilon:
                actions[i] = self.rng.choice(np.flatnonzero(mask))
            else:
                actions[i] = masked_argmax(greedy[i], mask)
        return actions

    # ------------------------------------------------------------------ learning

    def learn(self, env: Any, total_steps: int, callback: Callback | None = None) -> DDQNAgent:
        """Trains on an SB3 ``VecEnv`` until ``num_steps >= total_steps``.

        Episodes in progress are not part of a checkpoint, so learning always starts from a reset
        (seeded from ``seed`` and ``num_steps``, hence reproducible after a resume).
        """
        callback = callback or Callback()
        cfg = self.config
        n_envs = env.num_envs
        env.seed(self.seed + self.num_steps)
        obs = env.reset()
        masks = self._reset_masks(env, range(n_envs), np.ones((n_envs, self.n_actions), dtype=bool))
        pending: list[list[tuple[np.ndarray, int, float]]] = [[] for _ in range(n_envs)]
        callback.on_training_start(self)
        losses: list[float] = []
        q_means: list[float] = []
        keep_going = True
        while keep_going and self.num_steps < total_steps:
            epsilon = linear_epsilon(self.num_steps, total_steps, cfg)
            self._set_learning_rate(self.num_steps, total_steps)
            actions = self._explore(obs, masks, epsilon)
            next_obs, rewards, dones, infos = env.step(actions)

            final_obs = next_obs.copy()
            terminated = np.zeros(n_envs, dtype=np.float32)
            next_masks = masks.copy()
            for i, info in enumerate(infos):
                if "action_mask" in info:
                    next_masks[i] = info["action_mask"]
                if dones[i]:
                    final_obs[i] = info["terminal_observation"]
                    terminated[i] = float(not info.get("TimeLimit.truncated", False))
            for i in range(n_envs):
                pending[i].append((obs[i], int(actions[i]), float(rewards[i])))
                if dones[i] or len(pending[i]) == cfg.n_step:
                    self._store(pending[i], final_obs[i], terminated[i], next_masks[i], flush=bool(dones[i]))

            previous_steps, self.num_steps = self.num_steps, self.num_steps + n_envs
            obs = next_obs
            masks = self._reset_masks(env, np.flatnonzero(dones), next_masks)

            if self.num_steps > cfg.learning_starts and self.buffer.size >= cfg.batch_size:
                for _ in range(self.num_steps // cfg.train_frequency - previous_steps // cfg.train_frequency):
                    loss, q_mean = self._update()
                    if loss is not None:
                        losses.append(loss)
                        q_means.append(q_mean)

            keep_going = callback.on_step(self, self.num_steps, rewards, dones, infos)
            if self.num_steps // cfg.log_interval > previous_steps // cfg.log_interval:
                metrics = {"train/epsilon": epsilon, "train/gradient_steps": float(self.gradient_steps),
                           "train/learning_rate": self.optimizer.param_groups[0]["lr"],
                           "train/skipped_updates": float(self.skipped_updates)}
                if losses:
                    metrics |= {"train/loss": float(np.mean(losses)), "train/q_mean": float(np.mean(q_means))}
                callback.on_metrics(self, self.num_steps, metrics)
                losses, q_means = [], []
        callback.on_training_end(self)
        return self

    def _store(self, pending: list[tuple[np.ndarray, int, float]], next_obs: np.ndarray, terminated: float,
               next_mask: np.ndarray, flush: bool) -> None:
        """Stores the oldest pending step as an n-step transition to ``next_obs`` (every pending step, each
        to the episode's end, when ``flush``), and drops what it stored from ``pending``."""
        gamma = self.config.gamma
        while pending:
            ret = sum(gamma**t * reward for t, (_, _, reward) in enumerate(pending))
            first_obs, action, _ = pending.pop(0)
            self.buffer.add([first_obs], [action], [ret], [next_obs], [terminated], [next_mask],
                            [gamma ** (len(pending) + 1)])
            if not flush:
                return

    def _set_learning_rate(self, step: int, total_steps: int) -> None:
        cfg = self.config
        if cfg.learning_rate_final is None:
            return
        fraction = min(1.0, step / max(1, total_steps))
        for group in self.optimizer.param_groups:
            group["lr"] = cfg.learning_rate + fraction * (cfg.learning_rate_final - cfg.learning_rate)

    def _reset_masks(self, env: Any, indices, masks: np.ndarray) -> np.ndarray:
        """Masks for the first state of freshly reset episodes (from their reset info, else ``action_masks()``)."""
        masks = masks.copy()
        reset_infos = getattr(env, "reset_infos", [])
        for i in indices:
            info = reset_infos[i] if i < len(reset_infos) else {}
            if "action_mask" in info:
                masks[i] = info["action_mask"]
            else:
                try:
                    masks[i] = np.asarray(env.env_method("action_masks", indices=[i])[0], dtype=bool)
                except AttributeError:  # an env without masks allows every action
                    masks[i] = True
        return masks

    def _update(self) -> tuple[float | None, float]:
        """One gradient step on a sampled batch; a non-finite loss skips the step instead of corrupting weights."""
        cfg = self.config
        batch = self.buffer.sample(cfg.batch_size, self.rng)
        with torch.no_grad():
            target = double_dqn_target(
                batch["rewards"], batch["terminated"], self.q_network(batch["next_obs"]),
                self.target_network(batch["next_obs"]), batch["next_masks"], batch["discounts"],
            )
        q = self.q_network(batch["obs"]).gather(1, batch["actions"].unsqueeze(1)).squeeze(1)
        loss = F.smooth_l1_loss(q, target)
        if not torch.isfinite(loss):
            self.skipped_updates += 1
            return None, math.nan
        self.optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(self.q_network.parameters(), cfg.max_grad_norm)
        self.optimizer.step()
        self.gradient_steps += 1
        if self.gradient_steps % cfg.target_update_interval == 0:
            with torch.no_grad():
                for target_param, param in zip(self.target_network.parameters(), self.q_network.parameters()):
                    target_param.lerp_(param, cfg.tau)
        return loss.item(), q.mean().item()

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | Path) -> Path:
        """Writes the policy (online network and what rebuilds it) to ``path`` (``.pt`` added)."""
        path = Path(path).with_suffix(".pt")
        with replacing(path) as tmp:
            torch.save(self._header() | {"q_network": self.q_network.state_dict()}, tmp)
        return path

    @classmethod
    def load(cls, path: str | Path) -> DDQNAgent:
        """Rebuilds a saved policy; the file is read with ``weights_only=True`` (no code runs)."""
        state = _read_checkpoint(Path(path).with_suffix(".pt"))
        agent = cls(state["obs_dim"], state["n_actions"], state["seed"], **json.loads(state["config"]))
        agent.q_network.load_state_dict(state["q_network"])
        agent.target_network.load_state_dict(state["q_network"])
        agent.num_steps = int(state.get("num_steps", 0))
        return agent

    def save_checkpoint(self, folder: str | Path) -> None:
        """Networks, optimiser, counters and RNG (``ddqn.pt``) plus the replay buffer (``replay.npz``)."""
        folder = Path(folder)
        state = self._header() | {
            "q_network": self.q_network.state_dict(),
            "target_network": self.target_network.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "gradient_steps": self.gradient_steps,
            "skipped_updates": self.skipped_updates,
            "rng": json.dumps(self.rng.bit_generator.state),
        }
        # Both files are replaced only once both are written, so a failed save keeps the old pair.
        with replacing(folder / "replay.npz") as replay, replacing(folder / "ddqn.pt") as networks:
            np.savez(replay, **self.buffer.state_dict())
            torch.save(state, networks)

    def load_checkpoint(self, folder: str | Path, env: Any = None) -> None:
        folder = Path(folder)
        state = _read_checkpoint(folder / "ddqn.pt")
        if (state["obs_dim"], state["n_actions"]) != (self.obs_dim, self.n_actions):
            raise ValueError(
                f"checkpoint {folder} is for obs_dim={state['obs_dim']}, n_actions={state['n_actions']}; "
                f"this agent has obs_dim={self.obs_dim}, n_actions={self.n_actions}"
            )
        self.q_network.load_state_dict(state["q_network"])
        self.target_network.load_state_dict(state["target_network"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.num_steps = int(state["num_steps"])
        self.gradient_steps = int(state["gradient_steps"])
        self.skipped_updates = int(state["skipped_updates"])
        self.rng.bit_generator.state = json.loads(state["rng"])
        with np.load(folder / "replay.npz", allow_pickle=False) as replay:
            self.buffer.load_state_dict(dict(replay), gamma=self.config.gamma)

    def _header(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "obs_dim": self.obs_dim,
            "n_actions": self.n_actions,
            "seed": self.seed,
            "num_steps": self.num_steps,
            "config": json.dumps(dataclasses.asdict(self.config)),
        }


def _read_checkpoint(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"no DDQN checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated or foreign file: say which file and why
        raise ValueError(f"{path} is not a readable DDQN checkpoint: {error}") from error
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a DDQN checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    return state
