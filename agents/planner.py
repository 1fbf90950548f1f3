"""The planner: model-based lookahead over the twin's known dynamics and distributions.

Certainty-equivalent model-predictive control (Bertsekas, "Dynamic Programming and Optimal Control",
vol. 1, 4th ed., sec. 6.1). Before every round it solves, by linear programming, how many more rounds
to spend at each cut so that the expected progress reaches the target at the least expected simulated
time, within what is left of every budget:

    minimise    sum_l n_l E[T_l]
    subject to  sum_l n_l s_l          >= P_target - P_now       (progress to the target)
                sum_l n_l E[T_l]       <= time budget left
                sum_l n_l lambda_l     <= leakage budget left
                sum_l n_l E[e_kl]      <= energy budget left of client k, for every k
                n_l >= 0

``s_l`` is the twin's progress per round at cut l (its fitted speed), ``P_target`` the progress by which
90 % of the twin's runs first reach the target (pace and fluctuation included: failing costs far more
than a few extra rounds, so it plans for a late run rather than the median one),
``lambda_l`` the cut's leakage, and ``E[T_l]`` and ``E[e_kl]`` the typical latency and energy of a
round at cut l: the median, over resampled episodes of the rounds that cut would need, of their mean
per round, from draws of the fading and CPU availability
(:meth:`sfl_env.env.SFLEnv.sample_round_costs`). Plain means would not do: a round waits for the
worst client's fade, whose transfer time has no finite mean under Rayleigh fading (E[1/|h|^2] is
infinite), so sample means are dominated by rare rounds and plan for episodes that almost never happen. It then plays a cut
the plan uses, keeping the previous one while the plan still uses it (a cut change migrates blocks).
Re-planning every round corrects the plan as the realised channel, progress and budgets unfold. When
no plan fits, it plays the cut that spends the least of the scarcest budget per unit of progress
(relative to what is left of it).

What it knows: the twin's curve, the cost model and the distributions of the exogenous state, and the
current state (progress, budgets spent, clients' distances). What it does not: the future draws of
fading, CPU availability and the twin's fluctuation, nor the episode's pace (it plans with pace 1 and
reads the progress made). On real training it estimates the progress by inverting the calibrated curve
at the last test accuracy. It needs a calibrated configuration (one the twin covers).
"""

from __future__ import annotations

import numpy as np

from .baselines import _Baseline

REPLAN_COSTS_EVERY = 25  # rounds between re-estimates of the expected costs when the clients move
COST_SAMPLES = 128  # exogenous draws per estimate
EPISODE_RESAMPLES = 500  # resampled episodes per typical cost
PLAN_QUANTILE = 0.9  # of the first passage of the target: the progress it plans for
IN_PLAN = 1e-6  # rounds: a cut the plan gives fewer to is not in the plan


class PlannerAgent(_Baseline):
    """Re-plans the remaining rounds per cut by linear programming over expected costs (module docstring)."""

    name = "planner"

    def __init__(self, n_actions: int, seed: int = 0) -> None:
        super().__init__(n_actions, seed)
        self._costs: dict[str, np.ndarray] | None = None
        self._costs_round = -1
        self._curve = None

    def bind(self, env):
        super().bind(env)
        self._curve = None  # read again from the new env's configuration
        return self

    def predict(self, obs, action_mask=None, deterministic=True) -> int:
        env = self._unwrapped()
        state = env.episode_state()
        allowed = self._allowed(action_mask if action_mask is not None else env.action_masks())
        moving = env.config.wireless.mobility_km_per_round > 0
        if state["round"] == 0 or (moving and state["round"] - self._costs_round >= REPLAN_COSTS_EVERY):
            self._costs, self._costs_round = self._typical_costs(env), state["round"]
        plan = self.plan(env, state, self._target_progress)
        previous = state["previous_cut_index"]
        if plan is not None:
            candidates = [int(a) for a in allowed if plan[a] > IN_PLAN]
            return previous if previous in candidates else max(candidates, key=lambda a: plan[a])
        rows, left = self._budget_rows(env, state)
        if not len(rows):  # no budget at all: the least seconds per unit of progress
            rows, left = self._costs["latency_s"][None], np.ones(1)
        scarcest = np.max(rows / np.maximum(left, 1e-12)[:, None], axis=0) / self._speed(env)
        return int(allowed[np.argmin(scarcest[allowed])])

    def plan(self, env, state: dict, target_progress: float) -> np.ndarray | None:
        """Rounds per cut index that the linear program assigns to the rest of the episode to reach
        ``target_progress`` (None if no plan fits the budgets)."""
        speed = self._speed(env)
        remaining = target_progress - self._progress(state)
        if remaining <= 0:
            remaining = float(speed.min())  # past the planned passage the fluctuation decides: one more round
        rows, bounds = self._budget_rows(env, state)
        from scipy.optimize import linprog  # imported here: scipy.optimize costs 0.5 s at import

        result = linprog(self._costs["latency_s"], A_ub=np.vstack([rows, -speed]), b_ub=np.append(bounds, -remaining),
                         bounds=[(0, None if allowed else 0) for allowed in env.action_masks()], method="highs")
        return result.x if result.status == 0 else None

    def _budget_rows(self, env, state: dict) -> tuple[np.ndarray, np.ndarray]:
        """Per budget: what a round at each cut typically spends (rows) and what is left (bounds)."""
        costs, config = self._costs, env.config
        rows, bounds = [], []
        if config.time_budget_s is not None:
            rows.append(costs["latency_s"])
            bounds.append(config.time_budget_s - state["elapsed_s"])
        if config.leakage_budget is not None:
            rows.append(costs["leakage"])
            bounds.append(config.leakage_budget - state["leakage"])
        if config.energy_budget_j is not None:
            rows.extend(costs["energy_j"].T)
            bounds.extend(config.energy_budget_j - state["energy_j"])
        return np.array(rows).reshape(-1, len(env.cuts)), np.array(bounds, dtype=float)

    def _typical_costs(self, env) -> dict[str, np.ndarray]:
        """Per cut: the median over resampled episodes of the mean latency and energy per round, each
        episode as many rounds as the cut needs to the target (docstring of the module)."""
        draws = env.sample_round_costs(COST_SAMPLES, self.seed)
        rng = np.random.default_rng(self.seed)
        speed = self._speed(env)
        latency, energy = np.empty(len(speed)), np.empty(draws["energy_j"].shape[1:])
        for index, cut_speed in enumerate(speed):
            rounds = max(1, int(np.ceil(self._target_progress / cut_speed)))
            picks = rng.integers(COST_SAMPLES, size=(EPISODE_RESAMPLES, rounds))
            latency[index] = np.median(draws["latency_s"][picks, index].mean(1))
            energy[index] = np.median(draws["energy_j"][picks, index].mean(1), axis=0)
        return {"latency_s": latency, "energy_j": energy, "leakage": draws["leakage"]}

    def _unwrapped(self):
        if self.env is None:
            raise RuntimeError("agent 'planner' reads the env's state and cost model; call agent.bind(env) first")
        env = self.env.unwrapped
        if self._curve is None:
            from sfl_env.training.calibration import calibration_for

            self._curve = calibration_for(env.config.system).curve  # raises for an uncalibrated configuration
            self._target_progress = self._curve.speed[0] * self._curve.rounds_to(
                env.config.target_accuracy, cut=1, quantile=PLAN_QUANTILE)
        return env

    def _speed(self, env) -> np.ndarray:
        return self._curve.speeds_for(env.cuts)

    def _progress(self, state: dict) -> float:
        """The twin's progress; on real training, the curve's progress at the last test accuracy."""
        if state["progress"] is not None:
            return state["progress"]
        curve = self._curve
        accuracy = min(state["accuracy"], curve.acc_inf - 1e-6)
        return curve.progress_to(accuracy) if accuracy > curve.acc_0 else 0.0
