"""Run logs: local JSONL/CSV files are the source of truth; Weights & Biases mirrors them when enabled.

``RunLog`` appends every record to ``metrics.jsonl`` (one JSON object per line, flushed at once) and
episode and evaluation rows to ``episodes.csv`` and ``evaluations.csv``. ``WandbMirror`` forwards
the same records to W&B; any W&B failure (no network, a bad key, a crash of its service) is reported
once and turns the mirror off, never the run.
"""

from __future__ import annotations

import csv
import json
import math
import netrc
import os
import platform
import shutil
import socket
import time
import urllib.parse
import warnings
from pathlib import Path
from typing import Any

from sfl_env.storage import WriteError, replacing

WANDB_MODES = ("online", "offline", "disabled")
LOG_FILES = ("metrics.jsonl", "episodes.csv", "evaluations.csv")


class RunLog:
    """Append-only metric files of one run folder (safe to reopen on resume).

    ``lines`` counts the lines of each file, so a checkpoint can record where the logs stood and a
    resume can cut them back to exactly that point (:func:`rewind_run`).
    """

    def __init__(self, folder: str | Path, mirror: WandbMirror | None = None) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.mirror = mirror
        self.lines = {name: _count_lines(self.folder / name) for name in LOG_FILES}
        self._jsonl = (self.folder / "metrics.jsonl").open("a")
        self._csv: dict[str, tuple[Any, csv.DictWriter]] = {}

    def record(self, kind: str, step: int, values: dict[str, Any]) -> None:
        """One record of ``kind`` (``train``, ``episode``, ``eval`` ...) at env step ``step``."""
        row = {"kind": kind, "step": int(step), "time": round(time.time(), 3)} | {k: _plain(v) for k, v in values.items()}
        try:
            self._jsonl.write(json.dumps(row, allow_nan=True) + "\n")
            self._jsonl.flush()
        except OSError as error:
            raise WriteError(self.folder / "metrics.jsonl", error) from error
        self.lines["metrics.jsonl"] += 1
        if kind in ("episode", "eval"):
            name = "episodes.csv" if kind == "episode" else "evaluations.csv"
            try:
                self._csv_row(name, row)
            except OSError as error:
                raise WriteError(self.folder / name, error) from error
        if self.mirror is not None:
            prefix = {"episode": "rollout/", "eval": f"{values.get('split', 'eval')}/"}.get(kind, "")
            numeric = {(k if "/" in k else prefix + k): v for k, v in row.items()
                       if k not in ("kind", "step", "time") and isinstance(v, (int, float)) and not isinstance(v, bool)}
            self.mirror.log(numeric, step)

    def _csv_row(self, name: str, row: dict[str, Any]) -> None:
        if name not in self._csv:
            path = self.folder / name
            fields = list(row)
            if path.is_file() and path.stat().st_size > 0:
                with path.open() as existing:
                    fields = next(csv.reader(existing), fields)
            file = path.open("a", newline="")
            writer = csv.DictWriter(file, fieldnames=fields, extrasaction="ignore")
            if file.tell() == 0:
                writer.writeheader()
                file.flush()
                self.lines[name] += 1
            self._csv[name] = (file, writer)
        file, writer = self._csv[name]
        writer.writerow(row)
        file.flush()
        self.lines[name] += 1

    def close(self) -> None:
        self._jsonl.close()
        for file, _ in self._csv.values():
            file.close()
        self._csv.clear()


def _count_lines(path: Path) -> int:
    """Complete lines of a log file (a torn last line does not count)."""
    if not path.is_file():
        return 0
    with path.open("rb") as file:
        return sum(1 for line in file if line.endswith(b"\n"))


def rewind_run(folder: str | Path, checkpoint: Path | None, state: dict[str, Any] | None) -> None:
    """Brings a run folder back to its checkpoint before a resume: one timeline.

    What a killed run logged after its checkpoint, and the best model it found there, are lost with
    it: the logs are cut back to the line counts saved in the checkpoint's ``state["log_lines"]``
    (:func:`truncate_logs`) and the best model saved with the checkpoint is put back. Without a
    checkpoint (``None``) the run starts clean: no logs, no best model.
    """
    folder = Path(folder)
    truncate_logs(folder, None if state is None else state.get("log_lines"),
                  None if state is None else state["num_steps"])
    for best in folder.glob("best_model.*"):
        best.unlink()
    for best in checkpoint.glob("best_model.*") if checkpoint is not None else ():
        shutil.copy2(best, folder / best.name)


def truncate_logs(folder: str | Path, lines: dict[str, int] | None, step: int | None = None) -> None:
    """Cuts a run's logs back to their first ``lines[name]`` lines, before a resume appends to them.

    A run killed after its last checkpoint logged records that the resumed run will make again; keeping
    them would log those records twice and make steps go backwards. Cutting by line count is exact even
    for records logged at the checkpoint's own step (the test evaluation of a summary the kill cut
    short). A checkpoint that has no line counts (an older run) is cut by env step: records with
    ``step <= step`` stay. With neither, the logs are removed. Each file is rewritten whole and
    replaced atomically, so a kill during the cut leaves either log; a torn last line is dropped.
    """
    folder = Path(folder)
    for name in LOG_FILES:
        path = folder / name
        if not path.is_file():
            continue
        if lines is None and step is None:
            path.unlink()
            continue
        with path.open(newline="") as file:
            content = [line for line in file if line.endswith("\n")]
        if lines is not None:
            kept = content[: lines.get(name, 0)]
        elif name.endswith(".jsonl"):
            kept = [line for line in content if (at := _step_of_record(line)) is not None and at <= step]
        else:
            kept = content[:1] + [line for line in content[1:] if _step_of_row(content[0], line) <= step]
        with replacing(path) as tmp, tmp.open("w", newline="") as out:
            out.writelines(kept)


def _step_of_record(line: str) -> int | None:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return None


def _step_of_row(header: str, line: str) -> float:
    row = next(csv.DictReader([header, line]), {})
    value = row.get("step") or ""
    return int(value) if value.isdigit() else math.inf


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl``; a torn last line (a killed run) is skipped."""
    records = []
    with Path(path).open() as file:
        for line in file:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def versions() -> dict[str, str]:
    """Package versions a result depends on (recorded with every run and evaluation row)."""
    import gymnasium
    import numpy
    import stable_baselines3
    import torch

    import sfl_env

    return {"sfl_env": sfl_env.__version__, "python": platform.python_version(), "torch": torch.__version__,
            "gymnasium": gymnasium.__version__, "stable_baselines3": stable_baselines3.__version__,
            "numpy": numpy.__version__, "machine": platform.machine()}


def hardware() -> str:
    """The machine, processor and CPU count (recorded with every run and evaluation row)."""
    return f"{platform.machine()} {platform.processor() or platform.system()} {os.cpu_count()} cpus"


def default_wandb_mode() -> str:
    """``online`` when an API key is configured (``WANDB_API_KEY`` or a netrc entry), else ``offline``."""
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].split("/")[0]
    try:
        return "online" if netrc.netrc().authenticators(host) else "offline"
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return "offline"


def wandb_unreachable(timeout_s: float = 5.0) -> str | None:
    """Why the W&B host (``WANDB_BASE_URL``, default api.wandb.ai) cannot be reached, or None if it can.

    One TCP connection with a short timeout: W&B's own start waits about 100 s on a dead host before it
    gives up."""
    url = urllib.parse.urlsplit(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai"))
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname or "", port), timeout=timeout_s).close()
    except OSError as error:
        return f"{url.hostname}:{port}: {error.strerror or error}"
    return None


class WandbMirror:
    """Mirrors records to a W&B run; degrades to a no-op (with one warning) on any W&B error.

    In ``online`` mode an unreachable W&B host is found in seconds, with a warning, and the run is
    mirrored ``offline`` instead (``wandb sync`` uploads it later)."""

    def __init__(self, *, project: str, entity: str | None, mode: str, folder: Path, name: str, run_id: str,
                 config: dict[str, Any], group: str | None = None) -> None:
        if mode not in WANDB_MODES:
            from sfl_env.errors import unknown_name

            raise unknown_name("wandb mode", mode, WANDB_MODES)
        self.run = None
        if mode == "online" and (reason := wandb_unreachable()) is not None:
            warnings.warn(f"W&B host unreachable ({reason}); mirroring offline to {folder / 'wandb'}, upload it "
                          f"later with: wandb sync {folder / 'wandb'}/offline-run-*", RuntimeWarning, stacklevel=2)
            mode = "offline"
        self.mode = mode
        try:
            import wandb

            self.run = wandb.init(project=project, entity=entity, mode=mode, dir=str(folder), name=name, id=run_id,
                                  group=group, resume="allow", config=config, reinit="finish_previous")
        except Exception as error:  # a tracking outage must not stop training
            self._fail("start", error)

    @property
    def directory(self) -> str | None:
        return None if self.run is None else getattr(self.run, "dir", None)

    def log(self, values: dict[str, float], step: int) -> None:
        if self.run is None or not values:
            return
        try:
            self.run.log({k: v for k, v in values.items() if not (isinstance(v, float) and math.isnan(v))}, step=step)
        except Exception as error:
            self._fail("log", error)

    def summary(self, values: dict[str, Any]) -> None:
        if self.run is None:
            return
        try:
            self.run.summary.update({k: v for k, v in values.items() if isinstance(v, (int, float, str))})
        except Exception as error:
            self._fail("summary", error)

    def finish(self) -> None:
        if self.run is None:
            return
        try:
            self.run.finish()
        except Exception as error:
            self._fail("finish", error)
        self.run = None

    def _fail(self, what: str, error: Exception) -> None:
        warnings.warn(f"W&B {what} failed ({type(error).__name__}: {error}); W&B mirroring is off for this run, "
                      f"the local metrics.jsonl keeps every record", RuntimeWarning, stacklevel=3)
        self.run = None


def _plain(value: Any) -> Any:
    """JSON-safe scalars (numpy numbers to Python numbers)."""
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
