"""Playing a mode's entries into ``results.csv`` and ``traces.jsonl``, and reading them back.

``results.csv`` has one row per (agent, config, seed, episode) with the columns of :data:`COLUMNS`;
``traces.jsonl`` has one line per episode with its per-round traces (cuts, accuracy, latency, bits).
Both are appended and flushed episode by episode, the trace before the row, so a killed evaluation
loses at most the episode it was playing: :func:`run_mode` with ``resume=True`` drops a row or trace
torn by the kill and a trace whose row was never written, skips every row already in results.csv and
plays the rest. A write that fails (a full disk) raises :class:`~sfl_env.storage.WriteError` naming
the file.
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym

import agents
from sfl_env.errors import CorruptFileError
from sfl_env.storage import WriteError, replacing, write_text

from .protocol import Entry, env_seed
from .rollout import Episode, run_episode
from .tracking import hardware, versions

COLUMNS = (
    "mode", "agent", "policy", "source", "scheme", "allocation", "seed_index", "episode", "env_seed", "env_id",
    "config_hash", "episode_return", "rounds", "final_accuracy", "reached_target", "rounds_to_target",
    "seconds_to_target", "total_latency_s", "bits_up", "bits_down", "privacy_violations", "solver_fallbacks",
    "diverged", "episode_end", "cuts", "wall_s", "versions", "hardware",
)
RESULTS = "results.csv"
TRACES = "traces.jsonl"


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The complete rows of a results.csv. A last row torn by a killed run is dropped, and the file is
    rewritten without it so that appended rows start on a fresh line; a foreign file or a corrupt row
    before the last is a :class:`~sfl_env.errors.CorruptFileError` naming the file and the line."""
    if not path.is_file():
        return []
    with path.open(newline="") as file:
        reader = csv.DictReader(file)
        raw = list(reader)
        if raw and tuple(reader.fieldnames or ()) != COLUMNS:
            raise CorruptFileError(f"{path} is not a results.csv of this version (columns {reader.fieldnames}); "
                                   f"move it away or choose another --out")
    rows, complete = [], []
    for number, row in enumerate(raw, 2):
        try:
            rows.append(_typed(row))
            complete.append(row)
        except (KeyError, TypeError, ValueError) as error:
            if number - 1 < len(raw):
                raise CorruptFileError(f"{path} line {number} is corrupt ({type(error).__name__}: {error}); "
                                       f"remove the line or the file") from None
    if len(complete) < len(raw) or not path.read_bytes().endswith(b"\n"):
        with replacing(path) as tmp, tmp.open("w", newline="") as file:
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


def read_traces(path: Path, keep: Callable[[dict[str, Any]], bool] | None = None) -> list[dict[str, Any]]:
    """The episode traces of a traces.jsonl (one dict per episode; NaN accuracy reads as None). A last
    line torn by a killed run is dropped, and the file rewritten without it; a torn line elsewhere is
    corruption, reported naming the file and the line. With ``keep``, the traces it refuses are
    dropped from the file too."""
    if not path.is_file():
        return []
    text = path.read_text()
    lines = [line for line in text.splitlines() if line.strip()]
    traces = []
    for number, line in enumerate(lines, 1):
        try:
            traces.append(json.loads(line))
        except json.JSONDecodeError as error:
            if number < len(lines):
                raise CorruptFileError(f"{path} line {number} is corrupt ({error}); remove the line or the file") \
                    from None
    if keep is not None:
        traces = [t for t in traces if keep(t)]
    if len(traces) < len(lines) or (text and not text.endswith("\n")):  # so that appended lines start fresh
        write_text(path, "".join(json.dumps(t) + "\n" for t in traces))
    return traces


def run_mode(mode: str, entries: list[Entry], seeds: int, episodes: int, folder: Path, resume: bool,
             log: Callable[[str], Any] = print) -> list[dict[str, Any]]:
    """Plays every entry x seed x episode not yet in ``folder/results.csv``; returns all rows.

    Without ``resume`` an existing, non-empty results.csv raises ``FileExistsError``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    results, traces_path = folder / RESULTS, folder / TRACES
    rows = read_rows(results)
    if rows and not resume:
        raise FileExistsError(f"{results} exists; pass --resume to continue it or choose another --out")
    done = {(r["agent"], r["config_hash"], r["seed_index"], r["episode"]) for r in rows}
    played = {(r["agent"], r["seed_index"], r["episode"]) for r in rows}
    # a torn last line, or the trace of an episode killed before its row was written, is played again
    read_traces(traces_path, keep=lambda t: (t["agent"], t["seed_index"], t["episode"]) in played)
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
                trace = {"agent": entry.label, "seed_index": seed_index, "episode": episode_index,
                         **_json_safe(episode.traces())}
                _append(traces_path, traces_file, lambda: traces_file.write(json.dumps(trace) + "\n"))
                _append(results, csv_file, lambda: writer.writerow(row))
                rows.append(_typed({k: str(v) for k, v in row.items()}))
            env.close()
            log(f"  {mode:8s} {entry.label:22s} {len(todo)} episodes in {time.perf_counter() - start:6.1f} s")
    return rows


def _append(path: Path, file: Any, write: Callable[[], Any]) -> None:
    """One flushed write to ``file``; a failure (a full disk) is a WriteError naming ``path``."""
    try:
        write()
        file.flush()
    except OSError as error:
        raise WriteError(path, error) from error


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
