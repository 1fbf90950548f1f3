"""The paper's claims and their verdicts, measured on this run's leaderboards (``claims.md``).

Each claim is a function of the leaderboard tables and the results.csv rows of every mode that ran
(keyed by mode); it returns a verdict (``Holds here``, ``Partly holds here``, ``Does not hold here``
or ``Not measured``) and a sentence with the numbers it rests on. A claim 'holds here' only for the
configuration and seeds of this run.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import agents
from sfl_env.schemes import SCHEMES, get_scheme

from .leaderboard import or_never

Tables = dict[str, list[dict[str, Any]]]  # mode -> leaderboard lines
Rows = dict[str, list[dict[str, Any]]]  # mode -> results.csv rows
Verdict = tuple[str, str]  # (verdict, what was measured)


def claims_markdown(tables: Tables, rows: Rows) -> str:
    """``claims.md``: each claim of :data:`CLAIMS` with its verdict and what was measured."""
    lines = ["# The paper's claims, measured", "",
             "Each claim of SFL-GA (arXiv 2501.01078) with what this run measured. A claim 'holds here' only "
             "for this configuration and these seeds; see leaderboard.md of each mode for the full numbers.", ""]
    for title, check in CLAIMS:
        verdict, body = check(tables, rows)
        lines += [f"## {title}", "", f"**{verdict}.** {body}", ""]
    return "\n".join(lines)


def _by_agent(table: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {t["agent"]: t for t in table}


def sends_own_gradients(name: str) -> bool:
    """Whether ``name`` is a scheme whose server returns each client its own smashed-data gradient
    (the schemes claim 1 compares SFL-GA's broadcast with: SFL-V1, SFL-V2 and PSL, and any scheme
    registered later that unicasts)."""
    return name in SCHEMES and get_scheme(name).splits_model and not get_scheme(name).broadcasts_gradient


def claim_broadcast(tables: Tables, rows: Rows) -> Verdict:
    """Claim 1: SFL-GA's downlink per round is below that of every scheme that unicasts its gradients
    (schemes mode)."""
    table = _by_agent(tables.get("schemes", []))
    if "sfl-ga" not in table:
        return "Not measured", "Run `--mode schemes` (or `all`)."
    ga = table["sfl-ga"]["bits_down_per_round"]
    others = {s: table[s]["bits_down_per_round"] for s in table if sends_own_gradients(s)}
    ratios = ", ".join(f"{s} {v / 1e6:.2f} Mbit ({v / ga:.1f}x)" for s, v in others.items())
    holds = all(v > ga for v in others.values())
    return ("Holds here" if holds else "Does not hold here"), (
        f"Downlink per round: SFL-GA {ga / 1e6:.2f} Mbit (one broadcast aggregated gradient per iteration) vs "
        f"{ratios}. Cuts are chosen by the same policy per scheme, so they may differ between schemes.")


def claim_smaller_client(tables: Tables, rows: Rows) -> Verdict:
    """Claim 2: rounds to the target never decrease as the client-side model grows (cuts mode)."""
    table = tables.get("cuts", [])
    if not table:
        return "Not measured", "Run `--mode cuts` (or `all`)."
    table = sorted(table, key=lambda t: int(t["agent"].removeprefix("cut-")))
    rounds = [t["rounds_to_target"] if t["reach_rate"] == 1.0 else math.inf for t in table]
    accuracy = [t["final_accuracy"] for t in table]
    holds = all(a <= b for a, b in zip(rounds, rounds[1:])) and rounds[0] < rounds[-1]
    detail = "; ".join(f"{t['agent']}: reached {100 * t['reach_rate']:.0f}%, median rounds to target "
                       f"{or_never(t['rounds_to_target'], 0)}, final accuracy {t['final_accuracy']:.3f}" for t in table)
    return ("Holds here" if holds else "Does not hold here"), (
        f"SFL-GA at each fixed cut (more client blocks to the right). {detail}. Holds when rounds to the target "
        f"never decrease as the client-side model grows (a cut that misses the target in some episode counts as never); "
        f"final accuracy goes {', '.join(f'{a:.3f}' for a in accuracy)}.")


def claim_ccc_latency(tables: Tables, rows: Rows) -> Verdict:
    """Claim 3: SFL-GA reaches the target first at an accuracy within 0.02 of the best (schemes mode)."""
    table = _by_agent(tables.get("schemes", []))
    if "sfl-ga" not in table:
        return "Not measured", "Run `--mode schemes` (or `all`)."
    ga = table["sfl-ga"]
    others = {s: t for s, t in table.items() if s != "sfl-ga"}
    best_accuracy = max(t["final_accuracy"] for t in table.values())
    comparable = ga["final_accuracy"] >= best_accuracy - 0.02
    faster = all(math.isnan(t["seconds_to_target"]) or (not math.isnan(ga["seconds_to_target"])
                 and ga["seconds_to_target"] < t["seconds_to_target"]) for t in others.values())
    detail = "; ".join(f"{s}: {or_never(t['seconds_to_target'], 2)} s = {or_never(t['rounds_to_target'], 0)} rounds "
                       f"x {t['latency_per_round_s']:.3f} s/round (reached {100 * t['reach_rate']:.0f}%, final "
                       f"accuracy {t['final_accuracy']:.3f})" for s, t in table.items())
    policy = ga["policy"]
    holds = faster and comparable and ga["reach_rate"] > 0
    why = "" if holds else " " + _why_sfl_ga_loses(ga, others)
    return ("Holds here" if holds else "Does not hold here"), (
        f"Median simulated seconds to the target accuracy, each scheme with cuts from `{policy}` and the convex "
        f"allocation: {detail}. Holds when SFL-GA is fastest and its final accuracy is within 0.02 of the best."
        + why)


def _why_sfl_ga_loses(ga: dict[str, Any], others: dict[str, dict[str, Any]]) -> str:
    """Which factor of seconds = rounds x seconds per round makes each faster scheme win."""
    reasons = []
    for name, t in others.items():
        if math.isnan(t["seconds_to_target"]) or (not math.isnan(ga["seconds_to_target"])
                                                 and t["seconds_to_target"] >= ga["seconds_to_target"]):
            continue
        if math.isnan(ga["rounds_to_target"]):
            reasons.append(f"{name} reaches the target and SFL-GA does not")
            continue
        rounds = ga["rounds_to_target"] / t["rounds_to_target"]
        per_round = ga["latency_per_round_s"] / t["latency_per_round_s"]
        factor = "more rounds" if rounds > per_round else "longer rounds"
        reasons.append(f"{name} is {ga['seconds_to_target'] / t['seconds_to_target']:.3f}x faster: SFL-GA needs "
                       f"{rounds:.2f}x its rounds at {per_round:.2f}x its seconds per round ({factor} decide)")
    return ("Where SFL-GA loses: " + "; ".join(reasons) + ".") if reasons else ""


def claim_ddqn_ablations(tables: Tables, rows: Rows) -> Verdict:
    """Claim 4: the trained DDQN with the convex allocation beats every ablation (agents mode)."""
    table = _by_agent(tables.get("agents", []))
    learned = [name for name in table if name in agents.LEARNERS]
    if not learned:
        return "Not measured", "Run `--mode agents` with a trained DDQN run folder (train_agent.py --agent ddqn)."
    name = "ddqn" if "ddqn" in learned else learned[0]
    full = table[name]
    references = ("oracle", "planner")  # upper references, not ablations
    ablations = {k: t for k, t in table.items() if k != name and k.split("/")[0] not in references}
    margin = {k: full["return_iqm"] - t["return_iqm"] for k, t in ablations.items()}
    not_beaten = [k for k, m in margin.items() if m <= 1e-9]
    detail = "; ".join(f"{k} {t['return_iqm']:.3f}" for k, t in ablations.items())
    verdict = "Holds here" if not not_beaten else "Partly holds here" if len(not_beaten) < len(margin) \
        else "Does not hold here"
    ties = [k for k in not_beaten if abs(margin[k]) <= 1e-9]
    return verdict, (
        f"IQM return of {name} with the convex allocation: {full['return_iqm']:.3f} "
        f"[{full['return_iqm_low']:.3f}, {full['return_iqm_high']:.3f}]; the ablations (other cut policies, and "
        f"`/equal` = equal bandwidth and server CPU): {detail}. Oracle (per-round exhaustive search): "
        f"{table['oracle']['return_iqm']:.3f}"
        + (f"; planner (lookahead over the twin): {table['planner']['return_iqm']:.3f}" if "planner" in table else "")
        + f". Holds when {name} beats every ablation"
        + (f"; it does not beat {', '.join(not_beaten)}" if not_beaten else "")
        + (f" ({', '.join(ties)}: the same return, i.e. {name} learned that fixed policy)" if ties else "")
        + ".")


CLAIMS: tuple[tuple[str, Callable[[Tables, Rows], Verdict]], ...] = (
    ("1. The aggregated broadcast cuts downlink traffic", claim_broadcast),
    ("2. A smaller client-side model converges better", claim_smaller_client),
    ("3. CCC beats SFL, PSL and FL in latency to the target at comparable accuracy", claim_ccc_latency),
    ("4. DDQN + convex allocation beats the ablations", claim_ddqn_ablations),
)
