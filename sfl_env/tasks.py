"""The tasks: what an agent is asked to do on a preset, each registered as a real and an analytic id.

A task is a set of ``gym.make`` keywords layered on a preset (its dynamics) plus the budgets measured
for that preset. ``EnvConfig.from_kwargs`` applies preset, then task, then the caller's keywords.
Like :mod:`sfl_env.config`, this module holds data only.
"""

from __future__ import annotations

from typing import Any

from .errors import ConfigError
from .validation import check_choice

# Purposes and how the budgets were measured: docs/design.md, "Tasks"; ids: sfl_env.TASK_IDS.
DEFAULT_TASK = "default"
TASKS: dict[str, dict[str, Any]] = {
    # Reach the target accuracy in the least simulated time, within the preset's time budget.
    "default": {},
    # The same, while each client's CPU is sometimes busy ([R] values, ComputeConfig) and clients walk
    # at 3 km/h [36.814 A.2.1.1]: 0.8 m per round of about 1 s.
    "dynamic": {"busy_probability": 0.3, "busy_mean_rounds": 5.0, "busy_cpu_share": 0.25,
                "mobility_km_per_round": 0.0008},
    # The same, within a privacy-leakage budget and a per-client energy budget (values per preset below).
    "budget": {},
    # The same, with clients in vehicles: 30 km/h, the urban macro cell's vehicular speed (ITU-R M.2135-1,
    # Table A1-2), so shadowing decorrelates ten times faster than a pedestrian's; the links measured in
    # moving vehicles (benchmarks/link_statistics.py) are the ones to hold it against.
    "vehicular": {"speed_km_h": 30.0},
}
# Per preset: every task's time budget, 3x the median simulated seconds to target of the fastest fixed
# cut; the budget task's leakage and energy budgets, what the fixed cut that spends the least of each
# needs in 90 % of its episodes. Measured on the twin over 20 seeds by
# ``python benchmarks/budgets.py --preset P`` (its output is docs/results/budgets.md).
PRESET_BUDGETS: dict[str, dict[str, float]] = {
    "shapes": {"time_budget_s": 165.7, "leakage_budget": 72.65, "energy_budget_j": 14.52},
    "digits": {"time_budget_s": 36.7, "leakage_budget": 21.76, "energy_budget_j": 2.94},
    "lm": {"time_budget_s": 68.8, "leakage_budget": 65.23, "energy_budget_j": 5.03},
}
BUDGET_OPTIONS: dict[str, tuple[str, ...]] = {"default": ("time_budget_s",), "dynamic": ("time_budget_s",),
                                             "budget": ("time_budget_s", "leakage_budget", "energy_budget_j"),
                                             "vehicular": ("time_budget_s",)}


def task_options(task: str, preset: str) -> dict[str, Any]:
    """The options ``task`` adds on ``preset``: its dynamics, and its budgets as measured for the preset
    (a preset without measured budgets gets none: no time budget, no failure cost)."""
    check_choice("task", task, tuple(TASKS))
    budgets = PRESET_BUDGETS.get(preset, {})
    if task == "budget" and "leakage_budget" not in budgets:
        raise ConfigError(f"task='budget' needs the measured budgets of preset {preset!r}; presets with them: "
                          f"{', '.join(p for p, b in PRESET_BUDGETS.items() if 'leakage_budget' in b)} "
                          "(or pass leakage_budget and energy_budget_j yourself to the default task)")
    own = {name: budgets.get(name) for name in BUDGET_OPTIONS[task]}
    return dict(TASKS[task]) | own
