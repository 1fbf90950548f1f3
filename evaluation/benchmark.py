"""The whole benchmark: play each mode's entries, then write its leaderboard and figures, then claims.md.

Output layout under ``out``: with one mode, ``out/`` holds results.csv, traces.jsonl, leaderboard.md
and the figures; with several, each mode has its own folder ``out/<mode>/``. ``out/claims.md`` judges
the paper's claims from every mode that ran.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sfl_env.storage import write_text

from . import figures
from .claims import claims_markdown
from .leaderboard import leaderboard, leaderboard_markdown
from .protocol import Entry
from .results import TRACES, read_traces, run_mode


def mode_folder(out: Path, mode: str, n_modes: int) -> Path:
    """Where a mode writes: ``out`` itself when it is the only mode, else ``out/<mode>``."""
    return out / mode if n_modes > 1 else out


def run_benchmark(plan: list[tuple[str, list[Entry]]], seeds: int, episodes: int, out: Path, resume: bool,
                  log: Callable[[str], Any] = print) -> dict[str, Path]:
    """Plays ``plan`` (mode, entries) in order and writes every report; returns the report paths.

    The returned dict maps each mode to its leaderboard.md and ``"claims"`` to claims.md. An existing
    evaluation without ``resume`` raises ``FileExistsError`` (from :func:`evaluation.results.run_mode`).
    """
    tables, all_rows, reports = {}, {}, {}
    start = time.perf_counter()
    for mode, entries in plan:
        folder = mode_folder(out, mode, len(plan))
        log(f"{mode}: {len(entries)} agents x {seeds} seeds x {episodes} episodes -> {folder}")
        rows = run_mode(mode, entries, seeds, episodes, folder, resume, log=log)
        labels = [e.label for e in entries]
        hashes = {e.config_hash for e in entries}
        # rows of more seeds or episodes than asked (a file resumed with a smaller --seeds) stay out
        rows = [r for r in rows if r["config_hash"] in hashes and r["agent"] in labels
                and r["seed_index"] < seeds and r["episode"] < episodes]
        table = leaderboard(rows, labels)
        reports[mode] = folder / "leaderboard.md"
        write_text(reports[mode], leaderboard_markdown(mode, table, entries, seeds, episodes, rows))
        traces = [t for t in read_traces(folder / TRACES)
                  if t["agent"] in labels and t["seed_index"] < seeds and t["episode"] < episodes]
        figures.write_figures(mode, folder, traces, rows)
        tables[mode], all_rows[mode] = table, rows
    reports["claims"] = out / "claims.md"
    write_text(reports["claims"], claims_markdown(tables, all_rows))
    log(f"done in {time.perf_counter() - start:.0f} s; leaderboards, figures and claims.md in {out}/")
    for path in reports.values():
        log(f"  {path}")
    return reports
