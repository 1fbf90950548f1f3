"""SFLEnv: cut-point selection in Split Federated Learning as a Gymnasium environment.

Environment card
----------------
Each step is one training round of the SFL system. The agent picks the cut for the round; the env
checks it against the privacy constraint, trains the round (real PyTorch, or the calibrated analytic
model in ``SFLEnvAnalytic-v0``), allocates uplink bandwidth and server CPU with the resource solver,
prices the round with the latency ledger, and draws the next round's channel.

Action space
    ``Discrete(n_cuts)``: the action is a *cut index* ``i``, which selects the cut ``model.cuts[i]``,
    i.e. ``i + 1`` blocks on the clients. ``action_masks()`` (and ``info["action_mask"]``) says which
    cut indices privacy allows. With ``privacy="mask"`` a disallowed action raises ``ActionError`` (a
    ``ValueError``); with ``privacy="penalty"`` it is replaced by the nearest allowed cut and
    ``privacy_penalty`` is subtracted from the reward.
    ``cut_preview()`` prices every action of the coming round (solver and reward, no training);
    ``step(a)`` then returns exactly ``cut_preview()["reward"][a]`` (less the terminal cost when that
    round ends the episode in failure).
Observation space
    ``Box(0, 1, (2K + 8,), float32)``, in this order:
    ``[0, K)`` channel gain of each client in dB, scaled from [-PL(d_max) - 30 dB - 3 sigma, -PL(d_min) +
    10 dB + 3 sigma] (sigma: the shadowing's std; with ``link_trace``, the gains of 10 kbit/s to 1 Gbit/s);
    ``[K, 2K)`` client training FLOP/s this round (its device's, its governor's clock, lower while busy)
    / the most any client can give;
    ``2K`` previous cut index + 1 over n_cuts (0 before the first round);
    ``2K + 1`` rounds done / max_rounds;
    ``2K + 2`` last test accuracy; ``2K + 3`` last train loss / ln(classes), clipped;
    ``2K + 4`` last round latency / its reference latency, divided by 4 and clipped;
    ``2K + 5``, ``2K + 6``, ``2K + 7`` the share left of the time, leakage and energy budgets (1 for a
    budget the task does not have; the energy of the client that has spent the most).
Reward
    ``time_to_accuracy`` (the default): ``-T(l) / T_ref`` per round, so the return is minus the episode's
    simulated seconds in units of ``T_ref``; a failed episode (a budget exhausted before the target, or
    a diverged round) also pays the terminal cost ``(B + max(B - elapsed, 0)) / T_ref`` with B the time
    budget, so that every failure returns less than every success within the budget, in any episode
    (:mod:`sfl_env.budgets`). ``paper``: ``-(rho * Gamma(l) + (1 - rho) * T(l) / T_ref)``, the paper's
    per-round weighted objective, with Gamma normalised to a maximum of 1 over the cuts (no terminal
    cost). ``T_ref`` is a constant of the configuration, the same in every episode: one round at the
    shallowest cut under an equal split in the config's nominal cell (clients at evenly spaced quantiles
    of the distance range and the device mix, no shadowing, mean fading). The terms are in ``info["reward_terms"]`` (``convergence`` Gamma(l), ``latency``
    T(l) / T_ref, ``privacy_penalty``), ``T_ref`` in ``info["reference_latency_s"]`` and the terminal
    cost in ``info["terminal_cost"]``.
Episode end
    ``terminated`` when the test accuracy reaches ``target_accuracy`` within every budget, when a budget
    (``time_budget_s``, ``leakage_budget``, ``energy_budget_j``) is exhausted first, or when a round
    diverged: all three are terminal states, whose value a bootstrapping learner must not bootstrap
    past (the budgets left are in the observation). ``truncated`` after ``max_rounds`` rounds: a time
    limit outside the task, to bootstrap past. ``info["episode_end"]`` says which: ``target``,
    ``time_budget``, ``leakage_budget``, ``energy_budget``, ``diverged`` or ``max_rounds``.
Tasks
    ``task`` (fixed by the env id, :data:`sfl_env.TASK_IDS`) layers a task's dynamics and its budgets
    for the preset (:mod:`sfl_env.tasks`) on the preset's options.
Info
    ``cut``, ``latency_s``, ``latency`` (seconds per phase), ``reference_latency_s``, ``bits_up``,
    ``bits_down``, ``train_loss``, ``test_accuracy`` and ``test_loss`` (NaN when not evaluated; a
    language model's accuracy is next-token accuracy, and it adds ``test_perplexity``), ``allocation``
    (``bandwidth_share``, ``server_cpu_share``), ``reward_terms``, ``action_mask``, ``solver`` (method,
    status, fallback), ``privacy`` (rule, violated, requested cut), ``diverged``, ``energy_j`` (each
    client's joules this round), ``leakage`` (this round's, None without a leakage table),
    ``elapsed_s``, ``budget_left``, ``episode_end`` (None while it goes on) and ``terminal_cost``.
    Wall-clock times are not in ``info`` (they would make two runs with the same seed differ);
    ``env.unwrapped.timings`` holds the last step's round, solve and step seconds.
Planning interface
    ``cut_preview()`` prices every cut of the coming round; ``sample_round_costs()`` draws what a round
    at each cut may cost from the distributions of the exogenous state; ``episode_state()`` says where
    the episode stands. The oracle and the planner (``agents``) read them.
Many episodes
    ``gym.make_vec(id, num_envs=E)`` on an analytic id steps E episodes as arrays
    (:class:`~sfl_env.vector.SFLVectorEnv`); episode e equals this env reset with ``seed + e``.
"""

from __future__ import annotations

import math
import time
import warnings
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from .availability import ClientDevices, CpuAvailability, fastest_client_flops
from .budgets import EpisodeBudget
from .calibration.leakage import leakage_table
from .config import FILE_DATASETS, EnvConfig
from .convergence import convergence_term
from .data import check_fits_data, dataset_metadata, dataset_shape, load_config_dataset
from .errors import ActionError, ConfigError
from .memory import check_training_memory, training_memory
from .link_traces import TraceChannel, gain_for_rate, load_link_traces, nominal_trace_gain
from .models import SplitModel, build_model
from .planning import PlanningInterface
from .pricing import RoundPricer, RoundState
from .privacy import allowed_cuts
from .profiling import profile_model
from .rendering import render_image, render_text
from .schemes import get_scheme
from .training import RoundTrainer, build_trainer
from .training.calibration import calibration_for
from .training.curve import TrainingCurveModel
from .wireless import Channel, nominal_path_gain, path_loss_db


class SFLEnv(PlanningInterface, gym.Env):
    """Split Federated Learning with a per-round cut; see the module docstring for the card."""

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}

    def __init__(self, render_mode: str | None = None, **kwargs: Any) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ConfigError(f"render_mode={render_mode!r} is unknown; allowed: None, 'ansi', 'rgb_array'")
        self.render_mode = render_mode
        self.config = EnvConfig.from_kwargs(**kwargs)
        system = self.config.system
        # Spaces are fixed here, data and weights built by reset(). Data files are read here for their shape,
        # which checks them before any work starts.
        files = load_config_dataset(system) if system.dataset in FILE_DATASETS else None
        self._data_shape = (files.input_shape, files.num_classes) if files is not None else dataset_shape(system)
        probe_model = build_model(system.model, *self._data_shape, **system.model_options)
        self.cuts = probe_model.cuts
        self._probe_model = probe_model  # the twin prices this one model in every episode
        self.scheme = get_scheme(system.scheme)
        self.num_clients = system.num_clients
        # The fitted twin is read here, so that a configuration without one fails at construction.
        self._curve: TrainingCurveModel | None = None
        if self.config.training == "analytic" or self.config.convergence == "calibrated":
            calibrated = calibration_for(system)
            if files is not None:
                calibrated.calibration.check_data(len(files.y_train), len(files.y_test))
            self._curve = calibrated.curve
            if len(self._curve.speed) != len(self.cuts):
                raise ConfigError(f"the calibration of {system.dataset}/{system.model} has {len(self._curve.speed)} "
                                  f"cut speeds but the model has {len(self.cuts)} cuts")
        check_fits_data(system, files)
        if self.config.training == "real":  # a round that cannot fit this machine is refused before any work
            check_training_memory(training_memory(system, *self._data_shape),
                                  f"{system.dataset}/{system.model}, {system.num_clients} clients x batch "
                                  f"{system.batch_size} of shape {tuple(self._data_shape[0])}", system.device)
        self.profile = profile_model(probe_model)  # after the checks: a large model's profile is work
        self.data_metadata = dataset_metadata(system)  # a text corpus's Python version and SHA-256
        if self._curve is not None and (warning := calibrated.calibration.check_corpus(self.data_metadata)):
            warnings.warn(warning, stacklevel=2)
        # Leakage per cut from the recorded table (both envs price it alike); a leakage budget needs it.
        self._leakage: np.ndarray | None = None
        try:
            self._leakage = leakage_table(system)
        except ConfigError:
            if self.config.leakage_budget is not None:
                raise
        if self._leakage is not None and len(self._leakage) != len(self.cuts):
            raise ConfigError(f"the leakage table of {system.model} has {len(self._leakage)} cuts but the model "
                              f"has {len(self.cuts)}; rerun python -m sfl_env.calibration.leakage")
        if self.config.privacy_rule == "min_blocks":  # this mask needs no weights: an impossible one fails now
            allowed_cuts(probe_model, "min_blocks", min_client_blocks=self.config.min_client_blocks)
        self.action_space = spaces.Discrete(len(self.cuts))
        self.observation_space = spaces.Box(0.0, 1.0, (2 * self.num_clients + 8,), dtype=np.float32)
        self.timings: dict[str, float] = {}
        wireless = self.config.wireless
        self._traces = load_link_traces(wireless.link_trace) if wireless.link_trace is not None else None
        self._gain_range_db = self._observed_gain_range_db()
        self._top_flops = fastest_client_flops(self.config.compute)
        self.pricer = RoundPricer(self.config, self.scheme, self.profile, cuts=self.cuts,
                                  convergence=self._convergence_term(), leakage=self._leakage,
                                  reference_state=self._nominal_state())
        self._trainer: RoundTrainer | None = None
        self._last: dict[str, Any] | None = None

    # ------------------------------------------------------------------ Gymnasium API

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        cfg = self.config
        episode_seed = int(self.np_random.integers(2**31 - 1))
        channel_seed, trainer_seed = np.random.SeedSequence(episode_seed).spawn(2)
        rng = np.random.default_rng(channel_seed)
        self._channel = Channel(self.num_clients, cfg.wireless, rng) if self._traces is None \
            else TraceChannel(self.num_clients, cfg.wireless, rng, self._traces)
        self._cpu = CpuAvailability(ClientDevices.draw(self.num_clients, cfg.compute, rng), cfg.compute, rng)
        self._trainer = build_trainer(cfg.system, int(trainer_seed.generate_state(1)[0]), cfg.training,
                                      data_shape=self._data_shape,
                                      model=self._probe_model if cfg.training == "analytic" else None,
                                      curve=self._curve if cfg.training == "analytic" else None)
        self._round, self._previous_cut_index = 0, None
        self._mask = self._privacy_mask()
        self._accuracy, self._loss, self._latency_ratio = 0.0, math.log(self._num_classes), 0.0
        self._budget = EpisodeBudget(cfg, self.num_clients)
        self._last = None
        return self._observation(), {"action_mask": self._mask.copy()}

    def step(self, action):
        if self._trainer is None:
            raise RuntimeError("call reset() before step()")
        if isinstance(action, (bool, np.bool_)) or not self.action_space.contains(action):
            raise ActionError(
                f"action={action!r} is invalid; allowed: an integer in 0..{self.action_space.n - 1} "
                f"(a cut index: action i puts i + 1 blocks on the clients)"
            )
        start = time.perf_counter()
        requested = int(action)
        cut_index, violated = self._apply_privacy(requested)
        cut = self.cuts[cut_index]

        cost = self.pricer.round_cost(cut, self._trainer.cut)
        round_start = time.perf_counter()
        outcome = self._trainer.run_round(cut)
        round_s = time.perf_counter() - round_start

        priced = self.pricer.price(cost, self._round_state(), cut_index, violated)
        allocation, latency, terms, reward = priced.allocation, priced.latency, priced.terms, priced.reward
        solve_s = allocation.solve_time_s
        energy, leakage = priced.energy_j, priced.leakage

        self._round += 1
        self._previous_cut_index = cut_index
        self._budget.charge(latency.total_s, leakage, energy)
        if outcome.evaluated:
            self._accuracy = outcome.test_accuracy
        if math.isfinite(outcome.train_loss):
            self._loss = outcome.train_loss
        self._latency_ratio = terms["latency"]
        end = self._budget.end(self._accuracy, outcome.diverged)
        terminated = end is not None
        truncated = not terminated and self._round >= self.config.max_rounds
        terminal_cost = self._budget.terminal_cost_s() / self.pricer.reference_s if end not in (None, "target") else 0.0
        reward -= terminal_cost
        # What this round ran on, kept for render() before the channel moves on to the next round.
        self._last = {"outcome": outcome, "cost": cost, "allocation": allocation, "latency": latency,
                      "reward": reward, "gain": self._channel.gain, "cpu_hz": self._cpu_hz}
        self._channel.step(latency.total_s)
        self._cpu.step()

        left = self._budget.left_shares()
        info = {
            "cut": cut,
            "latency_s": latency.total_s,
            "latency": dict(latency.phases),
            "reference_latency_s": self.pricer.reference_s,
            "bits_up": cost.bits_up,
            "bits_down": cost.bits_down,
            "train_loss": outcome.train_loss,
            "test_accuracy": outcome.test_accuracy,
            "test_loss": outcome.test_loss,
            "allocation": {
                "bandwidth_share": allocation.bandwidth_share.copy(),
                "server_cpu_share": allocation.server_cpu_share.copy(),
            },
            "reward_terms": terms,
            "action_mask": self._mask.copy(),
            "solver": {"method": allocation.method, "status": allocation.status, "fallback": allocation.fallback},
            "privacy": {"mode": self.config.privacy, "rule": self.config.privacy_rule,
                        "violated": violated, "requested_cut": self.cuts[requested]},
            "diverged": outcome.diverged,
            "energy_j": energy,
            "leakage": leakage,
            "elapsed_s": self._budget.elapsed_s,
            "budget_left": self._budget.left(left),
            "episode_end": end if end is not None else ("max_rounds" if truncated else None),
            "terminal_cost": terminal_cost,
        }
        if self._trainer.model.is_language_model:
            info["test_perplexity"] = math.exp(min(outcome.test_loss, 700.0))
        self.timings = {"round_s": round_s, "solve_s": solve_s, "step_s": time.perf_counter() - start}
        return self._observation(left), float(reward), terminated, truncated, info

    def action_masks(self) -> np.ndarray:
        """Allowed actions (sb3-contrib MaskablePPO reads this)."""
        if self._trainer is None:
            return np.ones(self.action_space.n, dtype=bool)
        return self._mask.copy()

    def render(self):
        if self.render_mode is None or self._last is None:
            return None
        if self.render_mode == "ansi":
            return render_text(self._last, self.num_clients)
        return render_image(self._last, self.num_clients, self._trainer.model.num_blocks)

    def close(self) -> None:
        self._trainer = None

    # ------------------------------------------------------------------ one step, piece by piece

    @property
    def model(self) -> SplitModel:
        """The split model of this configuration (the twin prices it in every episode; real training
        builds its own from each episode's seed)."""
        return self._probe_model

    @property
    def curve(self) -> TrainingCurveModel | None:
        """The twin's fitted training curve (None for real training with the profiled convergence term)."""
        return self._curve

    @property
    def _num_classes(self) -> int:
        return self._trainer.model.num_classes

    @property
    def _cpu_hz(self) -> np.ndarray:
        return self._cpu.cpu_hz

    def _privacy_mask(self) -> np.ndarray:
        cfg = self.config
        probe = None
        if cfg.privacy_rule == "leakage":
            system = cfg.system
            data = load_config_dataset(system)
            probe = data.x_test[:256].to(system.device)
        return allowed_cuts(self._trainer.model, cfg.privacy_rule, min_client_blocks=cfg.min_client_blocks,
                            max_leakage=cfg.max_leakage, probe=probe)

    def _convergence_term(self) -> np.ndarray:
        return convergence_term(self.config.convergence, self.profile, self.cuts, curve_model=self._curve)

    def _apply_privacy(self, cut_index: int) -> tuple[int, bool]:
        """The cut index the round runs at, and whether ``cut_index`` violated the privacy constraint."""
        if self._mask[cut_index]:
            return cut_index, False
        if self.config.privacy == "mask":
            allowed = [i for i in range(len(self.cuts)) if self._mask[i]]
            raise ActionError(
                f"action={cut_index} (cut {self.cuts[cut_index]}) violates the privacy constraint "
                f"({self.config.privacy_rule}); allowed actions: {allowed}. Use action_masks(), or "
                f"privacy='penalty' to replace it by the nearest allowed cut with a penalty"
            )
        allowed = np.flatnonzero(self._mask)
        return int(allowed[np.argmin(np.abs(allowed - cut_index))]), True

    def _round_state(self) -> RoundState:
        """This round's exogenous state, as the pricer reads it."""
        return RoundState(self._channel.gain, self._cpu.cpu_hz, self._cpu.cycles_per_flop)

    def _nominal_state(self) -> RoundState:
        """The nominal cell T_ref is priced in: clients at evenly spaced quantiles of the distance range
        and of the device mix, without shadowing, at mean fading; with traces, each at its trace's mean
        rate. A constant of the config, so that a return is minus the episode's seconds in one unit for
        every episode."""
        wireless = self.config.wireless
        gain = nominal_path_gain(self.num_clients, wireless) if self._traces is None \
            else nominal_trace_gain(self.num_clients, wireless, self._traces)
        devices = ClientDevices.nominal(self.num_clients, self.config.compute)
        return RoundState(gain, devices.cpu_hz, devices.cycles_per_flop)

    def _observed_gain_range_db(self) -> tuple[float, float]:
        """The dB range observations scale gains from: the farthest client in a deep fade and 3 standard
        deviations of shadowing below the mean, to the nearest in a peak as far above; with traces, the
        gains of 10 kbit/s to 1 Gbit/s."""
        wireless = self.config.wireless
        if self._traces is not None:
            low, high = gain_for_rate(np.array([1e4, 1e9]), wireless)
            return float(10 * np.log10(low)), float(10 * np.log10(high))
        pl = (wireless.path_loss_intercept_db, wireless.path_loss_slope_db)
        spread = 3.0 * wireless.shadowing_db
        return (-float(path_loss_db(wireless.distance_m[1], *pl)) - 30.0 - spread,
                -float(path_loss_db(wireless.distance_m[0], *pl)) + 10.0 + spread)

    def _observation(self, left: np.ndarray | None = None) -> np.ndarray:
        """The observation now; ``left``: the budget shares left, (1, 3), when the caller has them."""
        index = -1 if self._previous_cut_index is None else self._previous_cut_index
        return observations(self, gain=self._channel.gain[None], flops_per_s=self._cpu.flops_per_s[None],
                            previous_index=np.array([index]), rounds=np.array([self._round]),
                            accuracy=np.array([self._accuracy]), loss=np.array([self._loss]),
                            latency_ratio=np.array([self._latency_ratio]),
                            left=self._budget.left_shares() if left is None else left)[0]


def observations(env: SFLEnv, *, gain: np.ndarray, flops_per_s: np.ndarray, previous_index: np.ndarray,
                 rounds: np.ndarray, accuracy: np.ndarray, loss: np.ndarray, latency_ratio: np.ndarray,
                 left: np.ndarray) -> np.ndarray:
    """The observations (E, 2K + 8) of E episodes of ``env``'s configuration (the card's layout), from
    each episode's gains and FLOP/s (E, K), previous cut index (-1 before the first round), rounds done,
    last accuracy, loss and latency ratio (E,) and budget shares left (E, 3)."""
    low_db, high_db = env._gain_range_db
    k = gain.shape[1]
    obs = np.empty((gain.shape[0], 2 * k + 8))
    obs[:, :k] = (10 * np.log10(np.maximum(gain, 1e-300)) - low_db) / (high_db - low_db)
    obs[:, k:2 * k] = flops_per_s / env._top_flops
    obs[:, 2 * k] = np.where(previous_index < 0, 0.0, (previous_index + 1) / len(env.cuts))
    obs[:, 2 * k + 1] = rounds / env.config.max_rounds
    obs[:, 2 * k + 2] = accuracy
    obs[:, 2 * k + 3] = loss / math.log(env._num_classes)
    obs[:, 2 * k + 4] = latency_ratio / 4.0
    obs[:, 2 * k + 5:] = left
    return np.clip(obs, 0.0, 1.0, out=obs).astype(np.float32)
