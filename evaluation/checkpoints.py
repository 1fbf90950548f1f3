"""Resumable training state in a run folder: ``checkpoint/`` written whole or not at all.

A checkpoint holds the agent's own files (weights, optimiser, replay buffer), the best model found so
far (it belongs to this state: a resume must not keep a best model found in a stretch that was lost)
and ``state.json`` (the trainer's counters). It is written to ``checkpoint.tmp/``, flushed to disk,
and swapped in by two renames; :func:`latest_checkpoint` also finds ``checkpoint.old/``, which is the
complete previous checkpoint if a kill falls between the two renames. A write that fails (a full
disk, a read-only folder) removes the partial folder and raises
:class:`~sfl_env.storage.WriteError` naming the file, leaving the last complete checkpoint as it was.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from agents.base import Agent
from sfl_env.storage import WriteError, sync_folder, sync_tree

CHECKPOINT = "checkpoint"
STATE = "state.json"


def write_checkpoint(run: Path, agent: Agent, state: dict[str, Any]) -> Path:
    """Writes ``agent``'s resumable state and ``state`` as the run's checkpoint; returns its folder."""
    tmp, final, old = (run / f"{CHECKPOINT}.tmp", run / CHECKPOINT, run / f"{CHECKPOINT}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    target = tmp
    try:
        tmp.mkdir(parents=True)
        agent.save_checkpoint(tmp)
        for best in run.glob("best_model.*"):
            target = tmp / best.name
            shutil.copy2(best, target)
        target = tmp / STATE
        target.write_text(json.dumps(state))
        sync_tree(tmp)
    except WriteError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    except OSError as error:
        shutil.rmtree(tmp, ignore_errors=True)
        raise WriteError(error.filename or target, error) from error
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    tmp.rename(final)
    sync_folder(run)
    shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(run: Path) -> Path | None:
    """The run's complete checkpoint folder, or None."""
    for name in (CHECKPOINT, f"{CHECKPOINT}.old"):  # .old survives a kill between the two renames
        if (run / name / STATE).is_file():
            return run / name
    return None


def read_state(checkpoint: Path) -> dict[str, Any]:
    """The trainer's counters saved with ``checkpoint``; a torn or foreign file names itself."""
    path = checkpoint / STATE
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"{path} is unreadable ({error})") from error
    if not isinstance(state, dict) or not isinstance(state.get("num_steps"), int):
        raise ValueError(f"{path} is not a training state (no integer num_steps)")
    return state
