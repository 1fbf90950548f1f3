"""Benchmark agents and SFL schemes on one fixed protocol: results.csv, leaderboard.md, figures, claims.md.

    python evaluate.py                                   # all three modes on the embedded default
    python evaluate.py --mode agents --agents "runs/ddqn__*",random,oracle --seeds 5
    python evaluate.py --mode schemes --agents oracle --seeds 3
    python evaluate.py --mode cuts --seeds 3 --env-kwargs max_rounds=100
    python evaluate.py --mode cuts --data-dir ~/data/mnist --env-kwargs preset=mnist

Modes (each writes into its own folder under ``--out``):
  agents   every agent of ``--agents`` (train_agent.py run folders, a glob picks several runs of one
           agent and seed i uses run i mod #runs) next to every baseline (random, fixed cuts,
           greedy latency, oracle), and each but random and oracle again with ``allocation=equal``
           (the paper's ablation grid: cut policy x optimal/equal resources).
           Default env: SFLEnvAnalytic-v0.
  schemes  SFL-GA, SFL-V1, SFL-V2, PSL and FL on the same seeds, each with its cut chosen by the
           first agent of ``--agents`` (default ``oracle``). Default env: SFLEnv-v0 (real training).
  cuts     every fixed cut of SFL-GA (``cut-1`` ... ``cut-L``). Default env: SFLEnv-v0.
  all      cuts, schemes and agents, then ``claims.md`` from all three.

Protocol: seed i, episode j resets the env with seed 1_000_000 + 1000 i + j for every agent, so all
agents face the same channels and data. Per agent: mean and interquartile mean (IQM) of the per-seed
mean return with 95 % stratified-bootstrap confidence intervals, and the normalised score
(R - R_random) / (R_oracle - R_random) per seed. ``--resume`` skips every (agent, config, seed,
episode) row already in results.csv.
"""

from __future__ import annotations

import argparse
import csv
import glob
import hashlib
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import agents
import sfl_env  # noqa: F401  (registers the env ids)
from agents.rollout import EVAL_SEED_OFFSET, Episode, run_episode
from agents.tracking import hardware, versions
from sfl_env.demo import parse_overrides
from sfl_env.schemes import SCHEMES

MODES = ("agents", "schemes", "cuts", "all")
DEFAULT_ENV = {"agents": "SFLEnvAnalytic-v0", "schemes": "SFLEnv-v0", "cuts": "SFLEnv-v0"}
REFERENCES = ("random", "oracle")
COLUMNS = (
    "mode", "agent", "policy", "source", "scheme", "allocation", "seed_index", "episode", "env_seed", "env_id",
    "config_hash", "episode_return", "rounds", "final_accuracy", "reached_target", "rounds_to_target",
    "seconds_to_target", "total_latency_s", "bits_up", "bits_down", "privacy_violations", "solver_fallbacks",
    "diverged", "cuts", "wall_s", "versions", "hardware",
)


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
    text = json.dumps({"env_id": env_id, "env_kwargs": env_kwargs}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def env_seed(seed_index: int, episode: int) -> int:
    return EVAL_SEED_OFFSET + 1000 * seed_index + episode


# ---------------------------------------------------------------------------------------------- entries


def parse_agents(spec: str) -> list[tuple[str, list[Path]]]:
    """``"runs/ddqn__*,random"`` -> [(agent name, run folders)]; run folders of one agent are grouped."""
    out: dict[str, list[Path]] = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        folders = sorted(Path(p) for p in glob.glob(item)) if any(c in item for c in "*?[") else [Path(item)]
        if any((f / agents.RUN_CONFIG).is_file() for f in folders):
            for folder in folders:
                if not (folder / agents.RUN_CONFIG).is_file():
                    raise ValueError(f"{folder} is not a train_agent.py run folder ({agents.RUN_CONFIG} missing)")
                name = json.loads((folder / agents.RUN_CONFIG).read_text())["agent"]
                out.setdefault(name, []).append(folder)
        elif "/" in item or Path(item).exists() or any(c in item for c in "*?["):
            raise ValueError(f"--agents: {item!r} matches no train_agent.py run folder")
        else:
            agents.check_name(item)
            if item in agents.LEARNERS:
                raise ValueError(f"--agents {item!r} is a learning agent; give its train_agent.py run folder(s), "
                                 f"e.g. 'runs/{item}__*'")
            out.setdefault(item, [])
    if not out:
        raise ValueError("--agents is empty; give baseline names and/or run folders, comma-separated")
    return list(out.items())


def build_entries(mode: str, agent_specs: list[tuple[str, list[Path]]], env_id: str, env_kwargs: dict,
                  n_cuts: int, model: str = "best") -> list[Entry]:
    if mode == "cuts":
        kwargs = {"scheme": "sfl-ga"} | env_kwargs
        return [Entry(f"cut-{c}", f"cut-{c}", env_id, kwargs) for c in range(1, n_cuts + 1)]
    if mode == "schemes":
        policy, runs = agent_specs[0]
        return [Entry(scheme, policy, env_id, env_kwargs | {"scheme": scheme}, runs, model) for scheme in SCHEMES]
    specs = dict(agent_specs)
    for name in REFERENCES:
        specs.setdefault(name, [])
    entries = [Entry(name, name, env_id, env_kwargs, runs, model) for name, runs in specs.items()]
    if "allocation" not in env_kwargs:
        entries += [Entry(f"{name}/equal", name, env_id, env_kwargs | {"allocation": "equal"}, runs, model)
                    for name, runs in specs.items() if name not in REFERENCES]
    return entries


# ---------------------------------------------------------------------------------------------- running


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The complete rows of a results.csv. A row torn by a killed run is dropped, and the file is
    rewritten without it so that appended rows start on a fresh line."""
    if not path.is_file():
        return []
    with path.open(newline="") as file:
        raw = list(csv.DictReader(file))
    rows, complete = [], []
    for row in raw:
        try:
            rows.append(_typed(row))
            complete.append(row)
        except (KeyError, TypeError, ValueError):
            continue
    if len(complete) < len(raw) or not path.read_bytes().endswith(b"\n"):
        with path.open("w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(complete)
    return rows


def _typed(row: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = dict(row)
    for key in ("seed_index", "episode", "env_seed", "rounds", "privacy_violations", "solver_fallbacks"):
        out[key] = int(row[key])
    for key in ("episode_return", "final_accuracy", "rounds_to_target", "seconds_to_target", "total_latency_s",
                "bits_up", "bits_down", "wall_s"):
        out[key] = float(row[key]) if row[key] not in ("", "nan") else math.nan
    for key in ("reached_target", "diverged"):
        out[key] = row[key] == "True"
    return out


def run_mode(mode: str, entries: list[Entry], seeds: int, episodes: int, folder: Path, resume: bool,
             log=print) -> list[dict[str, Any]]:
    """Plays every entry x seed x episode not yet in ``folder/results.csv``; returns all rows."""
    folder.mkdir(parents=True, exist_ok=True)
    results, traces_path = folder / "results.csv", folder / "traces.jsonl"
    rows = read_rows(results)
    if rows and not resume:
        raise FileExistsError(f"{results} exists; pass --resume to continue it or choose another --out")
    done = {(r["agent"], r["config_hash"], r["seed_index"], r["episode"]) for r in rows}
    version_text, hardware_text = json.dumps(versions(), sort_keys=True), hardware()
    new_file = not results.is_file() or results.stat().st_size == 0
    with results.open("a", newline="") as csv_file, traces_path.open("a") as traces_file:
        writer = csv.DictWriter(csv_file, fieldnames=COLUMNS)
        if new_file:
            writer.writeheader()
        for entry in entries:
            todo = [(s, e) for s in range(seeds) for e in range(episodes)
                    if (entry.label, entry.config_hash, s, e) not in done]
            if not todo:
                continue
            env = gym.make(entry.env_id, **entry.env_kwargs)
            start = time.perf_counter()
            learned: dict[int, agents.Agent] = {}
            for seed_index, episode_index in todo:
                agent = _agent(entry, seed_index, episode_index, env, learned)
                t0 = time.perf_counter()
                episode = run_episode(agent, env, env_seed(seed_index, episode_index))
                row = _row(mode, entry, seed_index, episode_index, episode, time.perf_counter() - t0,
                           version_text, hardware_text)
                writer.writerow(row)
                csv_file.flush()
                traces_file.write(json.dumps({"agent": entry.label, "seed_index": seed_index, "episode": episode_index,
                                              **_json_safe(episode.traces())}) + "\n")
                traces_file.flush()
                rows.append(_typed({k: str(v) for k, v in row.items()}))
            env.close()
            log(f"  {mode:8s} {entry.label:22s} {len(todo)} episodes in {time.perf_counter() - start:6.1f} s")
    return rows


def _agent(entry: Entry, seed_index: int, episode_index: int, env: gym.Env, cache: dict) -> agents.Agent:
    if entry.runs:  # a trained policy: loaded once per seed, deterministic
        if seed_index not in cache:
            run = entry.runs[seed_index % len(entry.runs)]
            best = entry.model == "best" and agents.has_model(run, "best_model")
            cache[seed_index] = agents.load(run, env=env, model="best_model" if best else "model")
        return cache[seed_index].bind(env)
    # Baselines are rebuilt per episode so that a resumed evaluation draws the same random actions.
    return agents.make(entry.policy, env, seed=env_seed(seed_index, episode_index))


def _row(mode, entry, seed_index, episode_index, episode: Episode, wall_s, version_text, hardware_text) -> dict:
    summary = episode.summary()
    summary.pop("seed")
    return {
        "mode": mode, "agent": entry.label, "policy": entry.policy, "source": entry.source,
        "scheme": entry.env_kwargs.get("scheme", "sfl-ga"), "allocation": entry.env_kwargs.get("allocation", "optimal"),
        "seed_index": seed_index, "episode": episode_index, "env_seed": env_seed(seed_index, episode_index),
        "env_id": entry.env_id, "config_hash": entry.config_hash, **summary,
        "cuts": " ".join(map(str, episode.cuts)), "wall_s": round(wall_s, 4), "versions": version_text,
        "hardware": hardware_text,
    }


def _json_safe(traces: dict[str, list]) -> dict[str, list]:
    return {k: [None if isinstance(v, float) and math.isnan(v) else v for v in values] for k, values in traces.items()}


def read_traces(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ---------------------------------------------------------------------------------------------- reporting


def leaderboard(rows: list[dict[str, Any]], labels: list[str]) -> list[dict[str, Any]]:
    """Aggregates per agent label (in ``labels`` order), with CIs over seeds."""
    from agents.stats import aggregate

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
        scores = [(returns[s] - random_seed[s]) / (oracle_seed[s] - random_seed[s])
                  for s in returns if s in random_seed and s in oracle_seed and oracle_seed[s] != random_seed[s]]
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
    sorted_table = sorted(table, key=lambda line: -line["return_iqm"])
    env_ids = sorted({e.env_id for e in entries})
    lines = [
        f"# Leaderboard: {mode}",
        "",
        f"Env: {', '.join(env_ids)}; base config `{json.dumps(_base_kwargs(entries), sort_keys=True)}`; "
        f"{seeds} seeds x {episodes} episodes (env seeds {EVAL_SEED_OFFSET} + 1000 seed + episode, shared by every agent).",
        f"Versions: `{rows[0]['versions'] if rows else json.dumps(versions(), sort_keys=True)}`; hardware: {rows[0]['hardware'] if rows else hardware()}.",
        "Return: per-seed mean episode return; IQM and mean over seeds with 95 % stratified-bootstrap CIs. "
        "Score: (R - R_random) / (R_oracle - R_random) per seed (1 = the per-round exhaustive-search oracle).",
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
            f"{t['return_mean_high']:.3f}] | {score} | {100 * t['reach_rate']:.0f}% | {_fmt(t['rounds_to_target'], 0)} "
            f"| {_fmt(t['seconds_to_target'], 2)} | {_fmt(t['final_accuracy'], 3)} | {t['latency_per_round_s']:.4f} "
            f"| {t['bits_up_per_round'] / 1e6:.2f} | {t['bits_down_per_round'] / 1e6:.2f} | {t['privacy_violations']} |"
        )
    return "\n".join(lines) + "\n"


def _base_kwargs(entries: list[Entry]) -> dict[str, Any]:
    common = dict(entries[0].env_kwargs)
    for e in entries[1:]:
        common = {k: v for k, v in common.items() if e.env_kwargs.get(k) == v}
    return common


def _fmt(value: float, digits: int) -> str:
    return "never" if math.isnan(value) else f"{value:.{digits}f}"


def write_figures(mode: str, folder: Path, rows: list[dict[str, Any]], labels: list[str]) -> list[Path]:
    from agents import figures

    traces = [t for t in read_traces(folder / "traces.jsonl") if t["agent"] in labels]
    paths = [
        figures.accuracy_vs_round(traces, folder / "accuracy_vs_round.png"),
        figures.accuracy_vs_latency(traces, folder / "accuracy_vs_latency.png"),
        figures.cumulative_bits(traces, folder / "cumulative_bits.png"),
        figures.cuts_over_rounds(traces, folder / "cuts_over_rounds.png"),
    ]
    if mode == "cuts":
        sweep = [{"cut": int(r["agent"].removeprefix("cut-")), "rounds_to_target": r["rounds_to_target"],
                  "seconds_to_target": r["seconds_to_target"], "final_accuracy": r["final_accuracy"]} for r in rows]
        paths.append(figures.cut_sweep(sweep, folder / "cut_sweep.png"))
    return paths


# ---------------------------------------------------------------------------------------------- claims


def claims_markdown(tables: dict[str, list[dict[str, Any]]], rows: dict[str, list[dict[str, Any]]]) -> str:
    lines = ["# The paper's claims, measured", "",
             "Each claim of SFL-GA (arXiv 2501.01078) with what this run measured. A claim 'holds here' only "
             "for this configuration and these seeds; see leaderboard.md of each mode for the full numbers.", ""]
    for title, check in CLAIMS:
        verdict, body = check(tables, rows)
        lines += [f"## {title}", "", f"**{verdict}.** {body}", ""]
    return "\n".join(lines)


def _by_agent(table: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {t["agent"]: t for t in table}


def claim_broadcast(tables, rows):
    table = _by_agent(tables.get("schemes", []))
    if "sfl-ga" not in table:
        return "Not measured", "Run `--mode schemes` (or `all`)."
    ga = table["sfl-ga"]["bits_down_per_round"]
    others = {s: table[s]["bits_down_per_round"] for s in ("sfl-v1", "sfl-v2", "psl") if s in table}
    ratios = ", ".join(f"{s} {v / 1e6:.2f} Mbit ({v / ga:.1f}x)" for s, v in others.items())
    holds = all(v > ga for v in others.values())
    return ("Holds here" if holds else "Does not hold here"), (
        f"Downlink per round: SFL-GA {ga / 1e6:.2f} Mbit (one broadcast aggregated gradient per iteration) vs "
        f"{ratios}. Cuts are chosen by the same policy per scheme, so they may differ between schemes.")


def claim_smaller_client(tables, rows):
    table = tables.get("cuts", [])
    if not table:
        return "Not measured", "Run `--mode cuts` (or `all`)."
    table = sorted(table, key=lambda t: int(t["agent"].removeprefix("cut-")))
    rounds = [t["rounds_to_target"] if t["reach_rate"] == 1.0 else math.inf for t in table]
    accuracy = [t["final_accuracy"] for t in table]
    holds = all(a <= b for a, b in zip(rounds, rounds[1:])) and rounds[0] < rounds[-1]
    detail = "; ".join(f"{t['agent']}: reached {100 * t['reach_rate']:.0f}%, median rounds to target "
                       f"{_fmt(t['rounds_to_target'], 0)}, final accuracy {t['final_accuracy']:.3f}" for t in table)
    return ("Holds here" if holds else "Does not hold here"), (
        f"SFL-GA at each fixed cut (more client blocks to the right). {detail}. Holds when rounds to the target "
        f"never decrease as the client-side model grows (a cut that misses the target in some episode counts as never); "
        f"final accuracy goes {', '.join(f'{a:.3f}' for a in accuracy)}.")


def claim_ccc_latency(tables, rows):
    table = _by_agent(tables.get("schemes", []))
    if "sfl-ga" not in table:
        return "Not measured", "Run `--mode schemes` (or `all`)."
    ga = table["sfl-ga"]
    others = {s: t for s, t in table.items() if s != "sfl-ga"}
    best_accuracy = max(t["final_accuracy"] for t in table.values())
    comparable = ga["final_accuracy"] >= best_accuracy - 0.02
    faster = all(math.isnan(t["seconds_to_target"]) or (not math.isnan(ga["seconds_to_target"])
                 and ga["seconds_to_target"] < t["seconds_to_target"]) for t in others.values())
    detail = "; ".join(f"{s}: {_fmt(t['seconds_to_target'], 2)} s (reached {100 * t['reach_rate']:.0f}%, final "
                       f"accuracy {t['final_accuracy']:.3f})" for s, t in table.items())
    policy = ga["policy"]
    return ("Holds here" if faster and comparable and ga["reach_rate"] > 0 else "Does not hold here"), (
        f"Median simulated seconds to the target accuracy, each scheme with cuts from `{policy}` and the convex "
        f"allocation: {detail}. Holds when SFL-GA is fastest and its final accuracy is within 0.02 of the best.")


def claim_ddqn_ablations(tables, rows):
    table = _by_agent(tables.get("agents", []))
    learned = [name for name in table if name in agents.LEARNERS]
    if not learned:
        return "Not measured", "Run `--mode agents` with a trained DDQN run folder (train_agent.py --agent ddqn)."
    name = "ddqn" if "ddqn" in learned else learned[0]
    full = table[name]
    ablations = {k: t for k, t in table.items() if k not in (name, "oracle") and not k.startswith("oracle/")}
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
        f"{table['oracle']['return_iqm']:.3f}. Holds when {name} beats every ablation"
        + (f"; it does not beat {', '.join(not_beaten)}" if not_beaten else "")
        + (f" ({', '.join(ties)}: the same return, i.e. {name} learned that fixed policy)" if ties else "")
        + ".")


CLAIMS = (
    ("1. The aggregated broadcast cuts downlink traffic", claim_broadcast),
    ("2. A smaller client-side model converges better", claim_smaller_client),
    ("3. CCC beats SFL, PSL and FL in latency to the target at comparable accuracy", claim_ccc_latency),
    ("4. DDQN + convex allocation beats the ablations", claim_ddqn_ablations),
)


# ---------------------------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=MODES, default="all")
    parser.add_argument("--agents", default=None,
                        help="comma-separated run folders (globs allowed) and/or baseline names; agents mode "
                             "adds every baseline, schemes mode uses the first as the cut policy (default oracle)")
    parser.add_argument("--model", choices=("best", "final"), default="best",
                        help="which model of a run folder: the best on its validation episodes (default) or the final")
    parser.add_argument("--env-id", default=None, help="default: SFLEnvAnalytic-v0 for agents, SFLEnv-v0 otherwise")
    parser.add_argument("--env-kwargs", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--data-dir", default=None, help="folder of the MNIST / Fashion-MNIST / CIFAR-10 files")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--episodes", type=int, default=1)
    parser.add_argument("--out", default="evaluation")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted evaluation in --out")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for name, value in (("--seeds", args.seeds), ("--episodes", args.episodes)):
        if value < 1:
            parser.error(f"{name}={value} is out of range; allowed: an integer >= 1")
    try:
        env_kwargs = parse_overrides(args.env_kwargs)
    except ValueError as error:
        parser.error(str(error))
    if args.data_dir is not None:
        env_kwargs["data_dir"] = args.data_dir
    if args.env_id is not None:
        try:
            agents.check_env_id(args.env_id)
        except ValueError as error:
            parser.error(f"--env-id {error}")
    out = Path(args.out)
    modes = ("cuts", "schemes", "agents") if args.mode == "all" else (args.mode,)
    default_agents = {"agents": ",".join(agents.BASELINES), "schemes": "oracle", "cuts": ""}

    plan = []
    for mode in modes:
        env_id = args.env_id or DEFAULT_ENV[mode]
        try:
            probe = gym.make(env_id, **env_kwargs)
            n_cuts = int(probe.action_space.n)
            probe.close()
            spec = default_agents[mode]
            if mode == "agents" and args.agents:
                spec = f"{args.agents},{spec}"
            elif mode == "schemes" and args.agents:
                spec = args.agents.split(",")[0]
            specs = parse_agents(spec) if mode != "cuts" else []
        except (ValueError, TypeError, FileNotFoundError) as error:
            parser.error(f"{mode}: {error}")
        plan.append((mode, build_entries(mode, specs, env_id, env_kwargs, n_cuts, args.model)))

    tables, all_rows = {}, {}
    start = time.perf_counter()
    for mode, entries in plan:
        folder = out / mode if len(modes) > 1 else out
        print(f"{mode}: {len(entries)} agents x {args.seeds} seeds x {args.episodes} episodes -> {folder}")
        try:
            rows = run_mode(mode, entries, args.seeds, args.episodes, folder, args.resume)
        except FileExistsError as error:
            parser.error(str(error))
        labels = [e.label for e in entries]
        hashes = {e.config_hash for e in entries}
        rows = [r for r in rows if r["config_hash"] in hashes and r["agent"] in labels]
        table = leaderboard(rows, labels)
        (folder / "leaderboard.md").write_text(leaderboard_markdown(mode, table, entries, args.seeds, args.episodes, rows))
        write_figures(mode, folder, rows, labels)
        tables[mode], all_rows[mode] = table, rows
    claims = claims_markdown(tables, all_rows)
    (out / "claims.md").write_text(claims)
    print(f"done in {time.perf_counter() - start:.0f} s; leaderboards, figures and claims.md in {out}/")
    for mode in tables:
        folder = out / mode if len(modes) > 1 else out
        print(f"  {folder / 'leaderboard.md'}")
    print(f"  {out / 'claims.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
