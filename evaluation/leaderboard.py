"""The leaderboard of a mode: per-agent aggregates of results.csv rows, and their markdown table.

Per agent: mean and interquartile mean (IQM) of the per-seed mean return with 95 % stratified-bootstrap
confidence intervals (:mod:`evaluation.stats`), the normalised score (R - R_random) / (R_oracle -
R_random) per seed aggregated the same way, the rate of episodes that reached the target accuracy and
the median time to it, final accuracy, latency, traffic and privacy violations.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from .protocol import Entry
from .rollout import EVAL_SEED_OFFSET
from .stats import aggregate, normalised_score
from .tracking import hardware, versions


def leaderboard(rows: list[dict[str, Any]], labels: list[str]) -> list[dict[str, Any]]:
    """Aggregates per agent label (in ``labels`` order), with CIs over seeds.

    The score of an agent uses the seeds on which random and oracle both ran and do not tie (see
    :func:`evaluation.stats.normalised_score`); with no such seed the line has no ``score_*`` keys.
    """
    by_label = {label: [r for r in rows if r["agent"] == label] for label in labels}
    per_seed = {label: _per_seed(rs, "episode_return") for label, rs in by_label.items()}
    random_seed, oracle_seed = per_seed.get("random", {}), per_seed.get("oracle", {})
    table = []
    for label, rs in by_label.items():
        if not rs:
            continue
        returns = per_seed[label]
        stats = aggregate([list(returns.values())])
        line = {"agent": label, "policy": rs[0]["policy"], "allocation": rs[0]["allocation"],
                "seeds": len(returns), "episodes": len(rs)} | {f"return_{k}": v for k, v in stats.items() if k != "n"}
        scores = [normalised_score(returns[s], random_seed[s], oracle_seed[s])
                  for s in returns if s in random_seed and s in oracle_seed]
        scores = [score for score in scores if not math.isnan(score)]  # seeds where oracle and random tie
        if scores:
            line |= {f"score_{k}": v for k, v in aggregate([scores]).items() if k != "n"}
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


def _per_seed(rows: list[dict[str, Any]], key: str) -> dict[int, float]:
    seeds: dict[int, list[float]] = {}
    for r in rows:
        seeds.setdefault(r["seed_index"], []).append(r[key])
    return {s: float(np.mean(v)) for s, v in sorted(seeds.items())}


def leaderboard_markdown(mode: str, table: list[dict[str, Any]], entries: list[Entry], seeds: int, episodes: int,
                         rows: list[dict[str, Any]]) -> str:
    """``leaderboard.md`` of one mode: how it was measured, then the table sorted by IQM return."""
    sorted_table = sorted(table, key=lambda line: -line["return_iqm"])
    env_ids = sorted({e.env_id for e in entries})
    lines = [
        f"# Leaderboard: {mode}",
        "",
        f"Env: {', '.join(env_ids)}; base config `{json.dumps(_base_kwargs(entries), sort_keys=True)}`; "
        f"{seeds} seeds x {episodes} episodes (env seeds {EVAL_SEED_OFFSET} + 1000 seed + episode, shared by every agent).",
        f"Versions: `{rows[0]['versions'] if rows else json.dumps(versions(), sort_keys=True)}`; hardware: {rows[0]['hardware'] if rows else hardware()}.",
        "Return: per-seed mean episode return; IQM and mean over seeds with 95 % stratified-bootstrap CIs. "
        "Score: (R - R_random) / (R_oracle - R_random) per seed (1 = the per-round exhaustive-search oracle); "
        "seeds where R_oracle and R_random tie have no score and are left out (n/a when all tie).",
        "Time to target: median over the episodes that reached the target accuracy (simulated seconds).",
        "",
        "| agent | alloc | IQM return [95% CI] | mean return [95% CI] | IQM score [95% CI] | reached | rounds to target "
        "| s to target | final acc | latency s/round | up Mbit/round | down Mbit/round | privacy viol. |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for t in sorted_table:
        score = (f"{t['score_iqm']:.3f} [{t['score_iqm_low']:.3f}, {t['score_iqm_high']:.3f}]"
                 if "score_iqm" in t else "n/a")
        lines.append(
            f"| {t['agent']} | {t['allocation']} | {t['return_iqm']:.3f} [{t['return_iqm_low']:.3f}, "
            f"{t['return_iqm_high']:.3f}] | {t['return_mean']:.3f} [{t['return_mean_low']:.3f}, "
            f"{t['return_mean_high']:.3f}] | {score} | {100 * t['reach_rate']:.0f}% "
            f"| {or_never(t['rounds_to_target'], 0)} | {or_never(t['seconds_to_target'], 2)} "
            f"| {or_never(t['final_accuracy'], 3)} | {t['latency_per_round_s']:.4f} "
            f"| {t['bits_up_per_round'] / 1e6:.2f} | {t['bits_down_per_round'] / 1e6:.2f} | {t['privacy_violations']} |"
        )
    return "\n".join(lines) + "\n"


def _base_kwargs(entries: list[Entry]) -> dict[str, Any]:
    common = dict(entries[0].env_kwargs)
    for e in entries[1:]:
        common = {k: v for k, v in common.items() if e.env_kwargs.get(k) == v}
    return common


def or_never(value: float, digits: int) -> str:
    """``value`` with ``digits`` decimals, or ``never`` when it is NaN (a target never reached)."""
    return "never" if math.isnan(value) else f"{value:.{digits}f}"
