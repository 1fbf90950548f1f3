"""The leaderboard of a mode: per-agent aggregates of results.csv rows, and their markdown table.

Per agent: mean and interquartile mean (IQM) of the per-seed mean return with 95 % stratified-bootstrap
confidence intervals (:mod:`evaluation.stats`); the paired difference of its return to the best fixed
cut and to the planner on the same seeds, with a 95 % bootstrap interval and the probability of
improvement; the normalised score (R - R_random) / (R_ref - R_random) per seed, the reference being the
planner (the oracle where no planner ran); the rate of episodes that reached the target accuracy and
the median time to it, final accuracy, latency, traffic and privacy violations.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from .protocol import Entry
from .rollout import EVAL_SEED_OFFSET
from .stats import aggregate, normalised_score, paired_difference
from .tracking import hardware, versions


def leaderboard(rows: list[dict[str, Any]], labels: list[str]) -> list[dict[str, Any]]:
    """Aggregates per agent label (in ``labels`` order), with CIs over seeds.

    The score of an agent uses the seeds on which random and the reference (:func:`score_reference`)
    both ran and do not tie (see :func:`evaluation.stats.normalised_score`); with no such seed the line
    has no ``score_*`` keys. ``vs_fixed_*`` and ``vs_planner_*`` are the paired differences to the best
    fixed cut (:func:`best_fixed_cut`) and to the planner, where they ran.
    """
    by_label = {label: [r for r in rows if r["agent"] == label] for label in labels}
    per_seed = {label: _per_seed(rs, "episode_return") for label, rs in by_label.items()}
    reference = score_reference(per_seed)
    random_seed, reference_seed = per_seed.get("random", {}), per_seed.get(reference, {})
    comparisons = {"fixed": best_fixed_cut(per_seed), "planner": "planner" if per_seed.get("planner") else None}
    table = []
    for label, rs in by_label.items():
        if not rs:
            continue
        returns = per_seed[label]
        stats = aggregate([list(returns.values())])
        line = {"agent": label, "policy": rs[0]["policy"], "allocation": rs[0]["allocation"],
                "seeds": len(returns), "episodes": len(rs)} | {f"return_{k}": v for k, v in stats.items() if k != "n"}
        scores = [normalised_score(returns[s], random_seed[s], reference_seed[s])
                  for s in returns if s in random_seed and s in reference_seed]
        scores = [score for score in scores if not math.isnan(score)]  # seeds where the references tie
        if scores:
            line |= {f"score_{k}": v for k, v in aggregate([scores]).items() if k != "n"} | {"score_reference": reference}
        for name, other in comparisons.items():
            if other is not None:
                common = [s for s in returns if s in per_seed[other]]
                difference = paired_difference([returns[s] for s in common], [per_seed[other][s] for s in common])
                line |= {f"vs_{name}_{k}": v for k, v in difference.items()} | {f"vs_{name}": other}
        reached = [r for r in rs if r["reached_target"]]
        line |= {
            "reach_rate": len(reached) / len(rs),
            "rounds_to_target": float(np.median([r["rounds_to_target"] for r in reached])) if reached else math.nan,
            "seconds_to_target": float(np.median([r["seconds_to_target"] for r in reached])) if reached else math.nan,
            "final_accuracy": float(np.nanmean([r["final_accuracy"] for r in rs]))
            if any(not math.isnan(r["final_accuracy"]) for r in rs) else math.nan,
            "latency_s": float(np.mean([r["total_latency_s"] for r in rs])),
            "latency_per_round_s": float(np.mean([r["total_latency_s"] / r["rounds"] for r in rs])),
            "bits_up_per_round": float(np.mean([r["bits_up"] / r["rounds"] for r in rs])),
            "bits_down_per_round": float(np.mean([r["bits_down"] / r["rounds"] for r in rs])),
            "privacy_violations": int(sum(r["privacy_violations"] for r in rs)),
        }
        table.append(line)
    return table


def score_reference(per_seed: dict[str, dict[int, float]]) -> str:
    """The top of the normalised score: the planner where it ran, else the per-round oracle."""
    return "planner" if per_seed.get("planner") else "oracle"


def best_fixed_cut(per_seed: dict[str, dict[int, float]]) -> str | None:
    """The ``cut-<n>`` label with the highest mean per-seed return (None when no fixed cut ran)."""
    cuts = {label: np.mean(list(r.values())) for label, r in per_seed.items()
            if label.startswith("cut-") and label[4:].isdigit() and r}
    return max(cuts, key=cuts.get) if cuts else None


def _per_seed(rows: list[dict[str, Any]], key: str) -> dict[int, float]:
    seeds: dict[int, list[float]] = {}
    for r in rows:
        seeds.setdefault(r["seed_index"], []).append(r[key])
    return {s: float(np.mean(v)) for s, v in sorted(seeds.items())}


def leaderboard_markdown(mode: str, table: list[dict[str, Any]], entries: list[Entry], seeds: int, episodes: int,
                         rows: list[dict[str, Any]]) -> str:
    """``leaderboard.md`` of one mode: how it was measured, then the table sorted by IQM return."""
    sorted_table = sorted(table, key=lambda line: -line["return_iqm"])
    fixed = next((t["vs_fixed"] for t in table if "vs_fixed" in t), None)
    reference = next((t["score_reference"] for t in table if "score_reference" in t), "oracle")
    env_ids = sorted({e.env_id for e in entries})
    lines = [
        f"# Leaderboard: {mode}",
        "",
        f"Env: {', '.join(env_ids)}; base config `{json.dumps(_base_kwargs(entries), sort_keys=True)}`; "
        f"{seeds} seeds x {episodes} episodes (env seeds {EVAL_SEED_OFFSET} + 1000 seed + episode, shared by every agent).",
        f"Versions: `{rows[0]['versions'] if rows else json.dumps(versions(), sort_keys=True)}`; hardware: {rows[0]['hardware'] if rows else hardware()}.",
        "Return: per-seed mean episode return; IQM and mean over seeds with 95 % stratified-bootstrap CIs. "
        f"Δ fixed / Δ planner: the paired difference of the return to the best fixed cut ({fixed or 'none ran'}) "
        "and to the planner on the same seeds, mean [95 % paired-bootstrap CI], and P(>): the share of seeds "
        f"where the agent is ahead (ties half). Score: (R - R_random) / (R_ref - R_random) per seed, R_ref the "
        f"{reference}; seeds where R_ref and R_random tie have no score (n/a when all tie).",
        "Time to target: median over the episodes that reached the target accuracy (simulated seconds).",
        "",
        "| agent | alloc | IQM return [95% CI] | mean return [95% CI] | Δ fixed [95% CI] | P(> fixed) "
        "| Δ planner [95% CI] | P(> planner) | IQM score [95% CI] | reached | rounds to target "
        "| s to target | final acc | latency s/round | up Mbit/round | down Mbit/round | privacy viol. |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for t in sorted_table:
        score = (f"{t['score_iqm']:.3f} [{t['score_iqm_low']:.3f}, {t['score_iqm_high']:.3f}]"
                 if "score_iqm" in t else "n/a")
        lines.append(
            f"| {t['agent']} | {t['allocation']} | {t['return_iqm']:.3f} [{t['return_iqm_low']:.3f}, "
            f"{t['return_iqm_high']:.3f}] | {t['return_mean']:.3f} [{t['return_mean_low']:.3f}, "
            f"{t['return_mean_high']:.3f}] | {_paired(t, 'fixed')} | {_paired(t, 'planner')} | {score} "
            f"| {100 * t['reach_rate']:.0f}% "
            f"| {or_never(t['rounds_to_target'], 0)} | {or_never(t['seconds_to_target'], 2)} "
            f"| {or_never(t['final_accuracy'], 3)} | {t['latency_per_round_s']:.4f} "
            f"| {t['bits_up_per_round'] / 1e6:.2f} | {t['bits_down_per_round'] / 1e6:.2f} | {t['privacy_violations']} |"
        )
    return "\n".join(lines) + "\n"


def _paired(line: dict[str, Any], name: str) -> str:
    """``Δ [low, high] | P(>)`` of a paired comparison, or n/a cells where it did not run."""
    if f"vs_{name}_mean" not in line:
        return "n/a | n/a"
    return (f"{line[f'vs_{name}_mean']:+.3f} [{line[f'vs_{name}_low']:+.3f}, {line[f'vs_{name}_high']:+.3f}] "
            f"| {line[f'vs_{name}_p_improvement']:.2f}")


def _base_kwargs(entries: list[Entry]) -> dict[str, Any]:
    common = dict(entries[0].env_kwargs)
    for e in entries[1:]:
        common = {k: v for k, v in common.items() if e.env_kwargs.get(k) == v}
    return common


def or_never(value: float, digits: int) -> str:
    """``value`` with ``digits`` decimals, or ``never`` when it is NaN (a target never reached)."""
    return "never" if math.isnan(value) else f"{value:.{digits}f}"
