"""The native vectorised twin: E episodes of an analytic env stepped as arrays, in one process.

``gym.make_vec("SFLEnvAnalytic-v0", num_envs=E)`` (every analytic id; ``vectorization_mode=
"vector_entry_point"`` is the default for them) returns :class:`SFLVectorEnv`, a
:class:`gymnasium.vector.VectorEnv`. Every episode's state is a row of an array: the channel
(:class:`~sfl_env.wireless.Channel`), the clients' CPUs (:class:`~sfl_env.availability.CpuAvailability`),
the twin's runs (:class:`~sfl_env.training.analytic.AnalyticRuns`) and the budgets
(:class:`~sfl_env.budgets.EpisodeBudget`) hold E rows, and :class:`~sfl_env.pricing.RoundPricer` prices the
E rounds of a step as one batch (the exact solver included). A single env is the batch of one of the
same code, and each episode draws from its own generators in the order a single env draws, so:

    episode e of ``reset(seed=s)`` equals ``gym.make(id).reset(seed=s + e)``, step for step,

observations, rewards, ends, masks and budgets alike (``tests/test_vector.py`` compares them exactly),
and so do the episodes that follow it by autoreset (they equal ``reset()`` without a seed).

Autoreset follows Gymnasium 1.x's default, ``AutoresetMode.NEXT_STEP``: the step after an episode ends
resets that episode instead, returning its first observation with reward 0, not terminated or
truncated, and the action given for it is ignored. ``infos`` holds, per episode, ``action_mask``
(E, n_cuts), ``cut``, ``latency_s``, ``elapsed_s``, ``test_accuracy``, ``train_loss``, ``terminal_cost``
and ``episode_end`` (None while it goes on), each with its Gymnasium ``_name`` mask (False for an
episode that was reset in this step, whose info is the reset's ``action_mask`` only).
``autoreset_mode="SameStep"`` (``AutoresetMode.SAME_STEP``) resets a finished episode in the step that
ends it instead, as Stable-Baselines3 expects: its last observation and info are in
``infos["final_obs"]`` and ``infos["final_info"]``.

Real training (``SFLEnv-v0`` and the other real ids) has no native vector env: use
``vectorization_mode="sync"`` or ``"async"``. Nor do link traces (``link_trace=``), whose channel
replays a file per client: they are refused here, and run on the single env.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from .availability import ClientDevices, CpuAvailability
from .budgets import ENDS, EpisodeBudget
from .draws import EpisodeGenerators
from .episode_seeds import episode_words, seed_in_place
from .env import SFLEnv, observations
from .errors import ActionError, ConfigError
from .pricing import StateBatch
from .training.analytic import AnalyticRuns
from .wireless import Channel


_END_NAMES = np.array([*ENDS, "max_rounds", None], dtype=object)  # an end code's name; -1 is None


class SFLVectorEnv(VectorEnv):
    """``num_envs`` episodes of one analytic env configuration, stepped as arrays (module docstring)."""

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}

    def __init__(self, num_envs: int, autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
                 **kwargs: Any) -> None:
        modes = (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP)
        try:
            self.autoreset_mode = AutoresetMode(autoreset_mode)
        except ValueError:
            self.autoreset_mode = None
        if self.autoreset_mode not in modes:
            raise ConfigError(f"autoreset_mode={autoreset_mode!r} is invalid; allowed: "
                              f"{', '.join(repr(mode.value) for mode in modes)}")
        self.metadata = {**self.metadata, "autoreset_mode": self.autoreset_mode}
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ConfigError(f"num_envs={num_envs!r} is invalid; allowed: an integer >= 1")
        if kwargs.get("render_mode") is not None:
            raise ConfigError("the native vector env does not render; allowed: render_mode=None (render a single "
                              "env, or use vectorization_mode='sync')")
        kwargs.pop("render_mode", None)
        # One single env checks the configuration and holds what every episode shares (spaces, pricer, mask).
        self._env = env = SFLEnv(**kwargs)
        if env.config.training != "analytic":
            raise ConfigError("the native vector env runs the analytic twin only (training='analytic'); for real "
                              "training use gym.make_vec(..., vectorization_mode='sync') or 'async'")
        if env.config.wireless.link_trace is not None:
            raise ConfigError("the native vector env does not replay link traces; allowed: link_trace=None, or "
                              "gym.make_vec(..., vectorization_mode='sync') to replay them")
        env.reset(seed=0)  # the privacy mask and the twin's curve are the same in every episode
        self.config, self.num_envs, self.cuts = env.config, int(num_envs), env.cuts
        self.single_observation_space, self.single_action_space = env.observation_space, env.action_space
        self.observation_space = batch_space(env.observation_space, self.num_envs)
        self.action_space = spaces.MultiDiscrete(np.full(self.num_envs, env.action_space.n))
        self.pricer = env.pricer
        self._mask = env.action_masks()
        allowed = np.flatnonzero(self._mask)
        self._nearest_allowed = np.array([allowed[np.argmin(np.abs(allowed - i))] for i in range(len(self.cuts))])
        self._model, self._curve = env.model, env.curve
        self._np_randoms: list[np.random.Generator | None] = [None] * self.num_envs
        self._channel: Channel | None = None

    # ------------------------------------------------------------------ Gymnasium API

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict | None = None):
        """Resets every episode: episode e from ``seed + e`` (or ``seed[e]``; None keeps its generator)."""
        seeds = self._seeds(seed)
        for row, episode_seed in enumerate(seeds):
            if episode_seed is not None or self._np_randoms[row] is None:
                self._np_randoms[row], _ = seeding.np_random(episode_seed)
        self._env_rngs = EpisodeGenerators(self._np_randoms)
        channel_words, trainer_words = self._draw_episodes(np.arange(self.num_envs))
        channel_rngs, trainer_rngs = _generators(channel_words), _generators(trainer_words)
        # One list of each kind for the processes that draw from them, reseeded in place at autoreset.
        self._channel_rngs, self._trainer_rngs = EpisodeGenerators(channel_rngs), EpisodeGenerators(trainer_rngs)
        cfg, k = self.config, self._env.num_clients
        self._channel = Channel(k, cfg.wireless, self._channel_rngs)  # each generator: the channel, then the devices
        devices = ClientDevices.draw_rows(k, cfg.compute, self._channel_rngs, np.arange(self.num_envs))
        self._cpu = CpuAvailability(devices, cfg.compute, self._channel_rngs)
        self._runs = AnalyticRuns(cfg.system, self._model, self._curve, self._trainer_rngs)
        self._budget = EpisodeBudget(cfg, k, episodes=self.num_envs)
        self._round = np.zeros(self.num_envs, dtype=np.int64)
        self._previous_index = np.full(self.num_envs, -1)
        self._accuracy = np.zeros(self.num_envs)
        self._loss = np.full(self.num_envs, math.log(self._model.num_classes))
        self._latency_ratio = np.zeros(self.num_envs)
        self._autoreset = np.zeros(self.num_envs, dtype=bool)
        return self._observations(), {"action_mask": self._masks(), "_action_mask": np.ones(self.num_envs, bool)}

    def step(self, actions):
        if self._channel is None:
            raise RuntimeError("call reset() before step()")
        stepping = ~self._autoreset
        cut_index, violated = self._cut_indices(actions, stepping)
        cfg = self.config
        outcome = self._runs.run_round(cut_index)
        latency_s, latency_ratio, priced_reward, leakage, energy_j = self._price(cut_index, violated, stepping)

        self._round = self._round + 1
        self._previous_index = cut_index
        self._budget.charge(latency_s, leakage, energy_j)
        accuracy = outcome["test_accuracy"]
        self._accuracy = np.where(np.isnan(accuracy), self._accuracy, accuracy)
        train_loss = outcome["train_loss"]
        self._loss = np.where(np.isfinite(train_loss), train_loss, self._loss)
        self._latency_ratio = latency_ratio
        end = self._budget.end_codes(self._accuracy, np.zeros(self.num_envs, dtype=bool))
        terminated = end >= 0
        truncated = ~terminated & (self._round >= cfg.max_rounds)
        failed = terminated & (end != ENDS.index("target"))
        terminal_cost = np.where(failed, self._budget.terminal_cost_s() / self.pricer.reference_s, 0.0)
        reward = priced_reward - terminal_cost
        episode_end = _END_NAMES[np.where(truncated, len(ENDS), end)]  # -1: None
        info = {"cut": np.asarray(self.cuts)[cut_index], "latency_s": latency_s,
                "elapsed_s": self._budget.elapsed_s.copy(), "test_accuracy": accuracy, "train_loss": train_loss,
                "terminal_cost": terminal_cost, "episode_end": episode_end}
        self._channel.step(latency_s)
        self._cpu.step()

        infos = {"action_mask": None, "_action_mask": np.ones(self.num_envs, dtype=bool)}
        for name, value in info.items():
            infos[name], infos[f"_{name}"] = value, stepping.copy()
        if self.autoreset_mode is AutoresetMode.SAME_STEP:
            done = terminated | truncated
            if done.any():  # the finished episodes' last observations and infos, then their new episodes
                final_obs = np.empty(self.num_envs, dtype=object)
                for row, observation in zip(np.flatnonzero(done), self._observations()[done]):
                    final_obs[row] = observation
                infos |= {"final_obs": final_obs, "_final_obs": done,
                          "final_info": {key: value for key, value in infos.items() if key != "action_mask"}
                          | {f"_{name}": done for name in info}, "_final_info": done}
                self._restart(np.flatnonzero(done))
        else:
            restarting = np.flatnonzero(self._autoreset)
            if restarting.size:
                self._restart(restarting)
                reward = np.where(stepping, reward, 0.0)
                terminated, truncated = terminated & stepping, truncated & stepping
            self._autoreset = terminated | truncated
        infos["action_mask"] = self._masks()
        return self._observations(), reward, terminated, truncated, infos

    def action_masks(self) -> np.ndarray:
        """(E, n_cuts): the allowed actions of every episode (sb3-contrib's MaskablePPO reads this)."""
        return self._masks()

    def close_extras(self, **kwargs: Any) -> None:
        if hasattr(self, "_env"):  # not when the constructor refused its input
            self._env.close()

    # ------------------------------------------------------------------ pieces

    def _seeds(self, seed: int | list[int | None] | None) -> list[int | None]:
        if seed is None:
            return [None] * self.num_envs
        if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
            return [int(seed) + row for row in range(self.num_envs)]
        seeds = list(seed)
        if len(seeds) != self.num_envs:
            raise ConfigError(f"seed has {len(seeds)} values; allowed: one per episode ({self.num_envs}), an "
                              "integer (episode e gets seed + e) or None")
        return seeds

    def _draw_episodes(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each row's PCG64 seeding words for a new episode, drawn from its env generator as a single env's reset
        draws them: the channel's (which also draws the devices and their clocks) and the twin's."""
        seeds = np.zeros((self.num_envs, 1), dtype=np.int64)
        self._env_rngs.integers(2**31 - 1, seeds, rows)  # each: int(env_rng.integers(2**31 - 1))
        return episode_words(seeds[rows, 0])

    def _restart(self, rows: np.ndarray) -> None:
        """New episodes in ``rows`` (autoreset): drawn exactly as :meth:`reset` draws them."""
        channel_words, trainer_words = self._draw_episodes(rows)
        self._channel_rngs.seed(rows, channel_words)
        self._trainer_rngs.seed(rows, trainer_words)
        channel_rngs, trainer_rngs = [self._channel_rngs[r] for r in rows], [self._trainer_rngs[r] for r in rows]
        self._channel.restart(rows, channel_rngs)  # each generator: the channel, then the devices
        devices = ClientDevices.draw_rows(self._env.num_clients, self.config.compute, self._channel_rngs, rows)
        self._cpu.restart(rows, devices, channel_rngs)
        self._runs.restart(rows, trainer_rngs)
        self._budget.restart(rows)
        self._round[rows], self._previous_index[rows] = 0, -1
        self._accuracy[rows], self._latency_ratio[rows] = 0.0, 0.0
        self._loss[rows] = math.log(self._model.num_classes)

    def _price(self, cut_index: np.ndarray, violated: np.ndarray, stepping: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
        """The rounds of the stepping episodes priced: (latency_s, latency term, reward, leakage or None,
        energy_j), each with a row per episode. An episode being reset in this step is not priced (its row is
        0): whatever it spends is wiped by the restart, which redraws every state its round would move."""
        rows = np.flatnonzero(stepping) if not stepping.all() else None
        gain, cpu_hz, per_flop = self._channel.gain, self._cpu.cpu_hz, self._cpu.cycles_per_flop
        if rows is not None:
            gain, cpu_hz, per_flop = gain[rows], cpu_hz[rows], per_flop[rows]
        index = slice(None) if rows is None else rows
        costs = self.pricer.cost_batch(cut_index[index], self._previous_index[index])
        priced = self.pricer.price_batch(costs, StateBatch(gain, cpu_hz, per_flop), cut_index[index], violated[index])
        values = (priced.latency.total_s, priced.terms["latency"], priced.reward, priced.leakage, priced.energy_j)
        if rows is None:
            return values
        full = []
        for value in values:
            if value is None:
                full.append(None)
                continue
            whole = np.zeros((self.num_envs, *value.shape[1:]))
            whole[rows] = value
            full.append(whole)
        return tuple(full)

    def _cut_indices(self, actions, stepping: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The cut index each episode's round runs at, and whether its action violated privacy; the
        action of an episode being reset is ignored."""
        actions = np.asarray(actions)
        n = len(self.cuts)
        if actions.shape != (self.num_envs,) or not np.issubdtype(actions.dtype, np.integer):
            raise ActionError(f"actions has shape {actions.shape} and dtype {actions.dtype}; allowed: integers of "
                              f"shape ({self.num_envs},), each a cut index in 0..{n - 1}")
        actions = np.where(stepping, actions, int(np.flatnonzero(self._mask)[0]))
        if actions.min() < 0 or actions.max() >= n:
            bad = int(np.flatnonzero((actions < 0) | (actions >= n))[0])
            raise ActionError(f"actions[{bad}]={int(actions[bad])} is invalid; allowed: a cut index in 0..{n - 1}")
        violated = ~self._mask[actions]
        if violated.any() and self.config.privacy == "mask":
            bad = int(np.flatnonzero(violated)[0])
            raise ActionError(f"actions[{bad}]={int(actions[bad])} violates the privacy constraint "
                              f"({self.config.privacy_rule}); allowed actions: {np.flatnonzero(self._mask).tolist()}")
        return self._nearest_allowed[actions], violated

    def _masks(self) -> np.ndarray:
        return np.broadcast_to(self._mask, (self.num_envs, len(self.cuts))).copy()

    def _observations(self) -> np.ndarray:
        env = self._env
        return observations(env, gain=self._channel.gain, flops_per_s=self._cpu.flops_per_s,
                            previous_index=self._previous_index, rounds=self._round, accuracy=self._accuracy,
                            loss=self._loss, latency_ratio=self._latency_ratio, left=self._budget.left_shares())


def _generators(words: np.ndarray) -> list[np.random.Generator]:
    """A PCG64 generator seeded with each row of ``words`` (see :mod:`sfl_env.episode_seeds`)."""
    generators = [np.random.Generator(np.random.PCG64(0)) for _ in words]
    seed_in_place(generators, words)
    return generators
