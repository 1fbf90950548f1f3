"""Run logs: local JSONL/CSV files are the source of truth; Weights & Biases mirrors them when enabled.

``RunLog`` appends every record to ``metrics.jsonl`` (one JSON object per line, flushed at once) and
episode and evaluation rows to ``episodes.csv`` and ``evaluations.csv``. ``WandbMirror`` forwards
the same records to W&B; any W&B failure (no network, a bad key, a crash of its service) is reported
once and turns the mirror off, never the run.
"""

from __future__ import annotations

import csv
import io
import json
import math
import netrc
import os
import platform
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

WANDB_MODES = ("online", "offline", "disabled")


class RunLog:
    """Append-only metric files of one run folder (safe to reopen on resume)."""

    def __init__(self, folder: str | Path, mirror: WandbMirror | None = None) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.mirror = mirror
        self._jsonl = (self.folder / "metrics.jsonl").open("a")
        self._csv: dict[str, tuple[Any, csv.DictWriter]] = {}

    def record(self, kind: str, step: int, values: dict[str, Any]) -> None:
        """One record of ``kind`` (``train``, ``episode``, ``eval`` ...) at env step ``step``."""
        row = {"kind": kind, "step": int(step), "time": round(time.time(), 3)} | {k: _plain(v) for k, v in values.items()}
        self._jsonl.write(json.dumps(row, allow_nan=True) + "\n")
        self._jsonl.flush()
        if kind in ("episode", "eval"):
            self._csv_row("episodes.csv" if kind == "episode" else "evaluations.csv", row)
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
            self._csv[name] = (file, writer)
        file, writer = self._csv[name]
        writer.writerow(row)
        file.flush()

    def close(self) -> None:
        self._jsonl.close()
        for file, _ in self._csv.values():
            file.close()
        self._csv.clear()


LOG_FILES = ("metrics.jsonl", "episodes.csv", "evaluations.csv")


def rewind_run(folder: str | Path, checkpoint: Path | None, step: int | None) -> None:
    """Brings a run folder back to its checkpoint before a resume: one timeline.

    What a killed run logged after its checkpoint, and the best model it found there, are lost with
    it: the logs are cut back to ``step`` (:func:`truncate_logs`) and the best model saved with the
    checkpoint is put back. Without a checkpoint (``None``) the run starts clean: no logs, no best model.
    """
    folder = Path(folder)
    truncate_logs(folder, step)
    for best in folder.glob("best_model.*"):
        best.unlink()
    for best in checkpoint.glob("best_model.*") if checkpoint is not None else ():
        shutil.copy2(best, folder / best.name)


def truncate_logs(folder: str | Path, step: int | None) -> None:
    """Cuts a run's logs back to env step ``step`` (None: removes them), before a resume appends.

    A run killed after its last checkpoint logged records that the resumed run will make again; keeping
    them would log those steps twice and make steps go backwards. Each file is rewritten whole to a
    temporary file that replaces it (``os.replace``), so a kill during the cut leaves either log. A torn
    last line is dropped with the rest of the lost stretch.
    """
    folder = Path(folder)
    for name in LOG_FILES:
        path = folder / name
        if not path.is_file():
            continue
        if step is None:
            path.unlink()
            continue
        kept = []
        with path.open(newline="") as file:
            if name.endswith(".jsonl"):
                for line in file:
                    try:
                        if int(json.loads(line)["step"]) <= step:
                            kept.append(line if line.endswith("\n") else line + "\n")
                    except (ValueError, KeyError, TypeError):
                        continue  # a torn line
            else:
                rows = list(csv.reader(file))
                if rows:
                    column = rows[0].index("step")
                    writer_rows = [rows[0]] + [r for r in rows[1:] if len(r) == len(rows[0]) and r[column].isdigit()
                                               and int(r[column]) <= step]
                    buffer = io.StringIO()
                    csv.writer(buffer).writerows(writer_rows)  # the csv module's own line ends, as RunLog's
                    kept.append(buffer.getvalue())
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("w", newline="") as out:
            out.writelines(kept)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)


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


class WandbMirror:
    """Mirrors records to a W&B run; degrades to a no-op (with one warning) on any W&B error."""

    def __init__(self, *, project: str, entity: str | None, mode: str, folder: Path, name: str, run_id: str,
                 config: dict[str, Any]) -> None:
        if mode not in WANDB_MODES:
            from sfl_env.errors import unknown_name

            raise unknown_name("wandb mode", mode, WANDB_MODES)
        self.run = None
        self.mode = mode
        try:
            import wandb

            self.run = wandb.init(project=project, entity=entity, mode=mode, dir=str(folder), name=name, id=run_id,
                                  resume="allow", config=config, reinit="finish_previous")
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
