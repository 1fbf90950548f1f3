"""How a run trains: the vector envs it learns on, and the trainer, the callback that keeps its books.

:class:`Trainer` receives every step of any learner of the agent zoo (through the agent protocol's
:class:`~agents.base.Callback`): it logs each finished episode, plays the validation episodes every
``eval_freq`` steps (keeping the best model), writes a checkpoint every ``checkpoint_freq`` steps,
drives the progress bar, and stops the learner at ``total_steps`` or when a stop is requested (Ctrl-C).
"""

from __future__ import annotations

import functools
import math
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from agents.base import Agent, Callback

from .checkpoints import write_checkpoint
from .rollout import Episode, evaluation_seeds, play_episodes, validation_seeds
from .summary import episode_means
from .tracking import RunLog

#: called with (env step, validation means) after every validation
ValidationHook = Callable[[int, dict[str, float]], None]


def _make_env(env_id: str, env_kwargs: dict[str, Any], in_subprocess: bool) -> gym.Env:
    if in_subprocess:  # Ctrl-C is the parent's to handle; workers keep serving until it closes them
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    from stable_baselines3.common.monitor import Monitor

    import sfl_env  # noqa: F401  (registers the ids in spawned workers)

    return Monitor(gym.make(env_id, **env_kwargs))


def make_vec_env(config: dict[str, Any]):
    """The SB3 vector env of a run config: ``n_envs`` episodes of an analytic id in its native vector env
    (one process, stepped as arrays); of a real-training id, ``n_envs`` envs, in spawned subprocesses
    when more than one."""
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    from .sb3_vector import NativeVecEnv, has_native_vector_env

    n_envs = config["n_envs"]
    if has_native_vector_env(config["env_id"]):
        return NativeVecEnv(config["env_id"], n_envs, config["env_kwargs"])
    factory = functools.partial(_make_env, config["env_id"], config["env_kwargs"], n_envs > 1)
    if n_envs == 1:
        return DummyVecEnv([factory])
    return SubprocVecEnv([factory] * n_envs, start_method="spawn")


class Trainer(Callback):
    """Episode bookkeeping, periodic evaluation and checkpoints, progress bar and Ctrl-C."""

    def __init__(self, run: Path, config: dict[str, Any], log: RunLog, eval_env: gym.Env, progress: bool,
                 state: dict[str, Any], on_validation: ValidationHook | None = None) -> None:
        self.run, self.config, self.log, self.eval_env = run, config, log, eval_env
        self.on_validation = on_validation  # told every validation: a sweep's scheduler reads it
        self.state = state  # counters that survive a resume
        self.stop_requested = False
        self.session_start = time.perf_counter()
        n = config["n_envs"]
        self._return, self._length, self._latency = np.zeros(n), np.zeros(n, dtype=int), np.zeros(n)
        self._accuracy = np.full(n, math.nan)
        self._bar = None
        if progress:
            from tqdm import tqdm

            self._bar = tqdm(total=config["total_steps"], initial=state["num_steps"], unit="step", dynamic_ncols=True)

    def wall_s(self) -> float:
        return self.state["wall_s"] + time.perf_counter() - self.session_start

    def on_step(self, agent, num_steps, rewards, dones, infos) -> bool:
        previous = self.state["num_steps"]
        self.state["num_steps"] = num_steps
        for i, info in enumerate(infos):
            self._return[i] += float(rewards[i])
            self._length[i] += 1
            self._latency[i] += float(info.get("latency_s", 0.0))
            if not math.isnan(info.get("test_accuracy", math.nan)):
                self._accuracy[i] = info["test_accuracy"]
            if dones[i]:
                self.state["episodes"] += 1
                self.log.record("episode", num_steps, {
                    "episode": self.state["episodes"], "return": self._return[i], "length": int(self._length[i]),
                    "final_accuracy": self._accuracy[i], "total_latency_s": self._latency[i],
                    "reached_target": info.get("episode_end") == "target", "episode_end": info.get("episode_end"),
                })
                self._return[i], self._length[i], self._latency[i], self._accuracy[i] = 0.0, 0, 0.0, math.nan
        if self._bar is not None:
            self._bar.update(num_steps - previous)
        if _crossed(previous, num_steps, self.config["eval_freq"]):
            self.play_split(agent, num_steps)
        if _crossed(previous, num_steps, self.config["checkpoint_freq"]):
            self.checkpoint(agent)
        return not self.stop_requested and num_steps < self.config["total_steps"]

    def on_metrics(self, agent, num_steps, metrics) -> None:
        self.log.record("train", num_steps, metrics)

    def play_split(self, agent: Agent, num_steps: int, split: str = "validation") -> list[Episode]:
        """Plays the validation episodes (model selection) or the test episodes (the summary)."""
        count = self.config["eval_episodes"]
        seeds = validation_seeds(count) if split == "validation" else evaluation_seeds(count)
        episodes = play_episodes(agent, self.eval_env, seeds)
        means = episode_means(episodes)
        mean = means["mean_return"]
        self.log.record("eval", num_steps, {"split": split} | means)
        if split == "validation" and agent.learns and mean > self.state.get("best_validation_return", -math.inf):
            agent.save(self.run / "best_model")
            self.state |= {"best_validation_return": mean, "best_step": num_steps}
        if self._bar is not None:
            self._bar.set_postfix(validation_return=f"{mean:.3f}")
        if split == "validation" and self.on_validation is not None:
            self.on_validation(num_steps, means)
        return episodes

    def checkpoint(self, agent: Agent) -> None:
        """Writes the resumable state; the previous checkpoint stays valid until the new one is complete."""
        if not agent.learns:
            return
        self.state["num_steps"] = agent.num_steps  # after a failure mid-step the agent is one step ahead
        write_checkpoint(self.run, agent, self.state | {"wall_s": self.wall_s(), "log_lines": dict(self.log.lines)})

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _crossed(previous: int, current: int, every: int) -> bool:
    return current // every > previous // every
