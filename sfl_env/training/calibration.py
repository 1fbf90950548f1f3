"""The twin's calibrations: which configurations a fitted curve covers, and refusing every other one.

A calibration file (``sfl_env/calibration/<preset>.json``, written by ``python -m
sfl_env.calibration.fit``) holds one :class:`~sfl_env.training.curve.TrainingCurveModel` per scheme and
records what they were fitted on: every training option, each scheme's learning rate, the seeds, and
the run log. The twin follows a curve only for a configuration whose every learning option equals the
recorded one; :func:`calibration_for` names the first option that differs and the calibrated values, so
``gym.make("SFLEnvAnalytic-v0", lr=1e-6)`` fails at once instead of silently following the curve of
another learning rate. Options that change no learning (``eval_every``, ``device``) are free;
``data_dir`` is not compared: a file preset's calibration records the sizes of the data it read, and the
env checks the files in ``data_dir`` against them (:meth:`Calibration.check_data`).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ..config import SFLConfig
from ..errors import ConfigError
from .curve import TrainingCurveModel

# SFLConfig fields that are not compared with the calibration: no effect on learning, or per machine.
FREE_OPTIONS: tuple[str, ...] = ("eval_every", "device", "data_dir")
# The other tables in sfl_env/calibration: tuned learning rates and leakage per cut.
OTHER_TABLES: tuple[str, ...] = ("learning_rates.json", "leakage.json")


@dataclass(frozen=True)
class Calibration:
    """One calibration file, read: its curves and what they were fitted on."""

    preset: str
    options: dict[str, Any]  # every compared training option except scheme and lr
    lr: dict[str, float]  # per scheme
    curves: dict[str, TrainingCurveModel]
    fit_seeds: tuple[int, ...]
    held_out_seeds: tuple[int, ...]
    target_accuracy: float
    source: str
    data: str  # what data the runs read
    runs_log: Path  # the recorded runs it was fitted on (and its held-out runs)
    data_sizes: tuple[int, int] | None  # (training, test) samples of the runs
    data_sha256: str | None = None  # a text corpus's hash (its text differs between Python versions)

    def check_corpus(self, metadata: dict) -> str | None:
        """A warning if ``metadata``'s corpus is not the text the runs read (None if it is, or no corpus)."""
        if self.data_sha256 is None or metadata.get("sha256") in (None, self.data_sha256):
            return None
        return (f"the {self.preset!r} twin was fitted on a {metadata.get('corpus')} corpus with SHA-256 "
                f"{self.data_sha256[:12]}..., but this one (Python {metadata.get('python')}) has "
                f"{metadata['sha256'][:12]}...: the text differs, so the twin's curves may not match real training here")

    def check_data(self, train_samples: int, test_samples: int) -> None:
        """A ConfigError unless the loaded data has the sizes the runs had (file datasets, whose
        folder is not part of the options)."""
        if self.data_sizes is not None and (train_samples, test_samples) != tuple(self.data_sizes):
            raise ConfigError(
                f"data_dir holds {train_samples} training and {test_samples} test samples, but the {self.preset!r} "
                f"twin was fitted on {self.data_sizes[0]} and {self.data_sizes[1]} ({self.data}); use SFLEnv-v0 "
                "(real training) on this data, or record and fit a calibration for it"
            )

    def mismatch(self, config: SFLConfig) -> str | None:
        """Why ``config`` is outside this calibration (None if it is covered)."""
        values = config.to_dict()
        for name, calibrated in self.options.items():
            value = list(values[name]) if isinstance(values[name], tuple) else values[name]
            if value != calibrated:
                return f"{name}={values[name]!r} (calibrated: {name}={calibrated!r})"
        if config.scheme not in self.curves:
            return f"scheme={config.scheme!r} (calibrated: {', '.join(self.curves)})"
        if config.lr != self.lr[config.scheme]:
            return f"lr={config.lr!r} (calibrated for {config.scheme}: lr={self.lr[config.scheme]!r})"
        return None


@functools.lru_cache(maxsize=16)
def read_calibration(path: str) -> Calibration:
    payload = json.loads(Path(path).read_text())
    return Calibration(
        preset=payload["preset"],
        options=payload["options"],
        lr={k: float(v) for k, v in payload["lr"].items()},
        curves={k: TrainingCurveModel.from_dict(v) for k, v in payload["schemes"].items()},
        fit_seeds=tuple(payload["fit_seeds"]),
        held_out_seeds=tuple(payload["held_out_seeds"]),
        target_accuracy=float(payload["target_accuracy"]),
        source=str(path),
        data=payload.get("data", ""),
        runs_log=Path(path).parent / payload["runs_log"],
        data_sizes=tuple(payload["data_sizes"]) if payload.get("data_sizes") else None,
        data_sha256=payload.get("data_sha256"),
    )


def shipped_calibrations() -> list[Calibration]:
    """Every calibration shipped in ``sfl_env/calibration``."""
    folder = resources.files("sfl_env.calibration")
    return [read_calibration(str(item)) for item in sorted(folder.iterdir(), key=lambda p: p.name)
            if item.name.endswith(".json") and item.name not in OTHER_TABLES]


@dataclass(frozen=True)
class CalibratedCurve:
    calibration: Calibration
    curve: TrainingCurveModel


def calibration_for(config: SFLConfig, path: str | Path | None = None) -> CalibratedCurve:
    """The calibration covering ``config`` and its scheme's curve; a ConfigError naming the option
    that no calibration covers otherwise. ``path`` reads one given file instead of the shipped ones."""
    calibrations = [read_calibration(str(path))] if path is not None else shipped_calibrations()
    same_model = [c for c in calibrations
                  if c.options.get("dataset") == config.dataset and c.options.get("model") == config.model]
    if not same_model:
        covered = ", ".join(f"{c.options['dataset']}/{c.options['model']} (preset {c.preset!r})" for c in calibrations)
        raise ConfigError(
            f"the analytic twin has no calibration for dataset={config.dataset!r}, model={config.model!r}; "
            f"calibrated: {covered}. Use SFLEnv-v0 (real training), or record and fit one with "
            "`python -m sfl_env.calibration.record` and `python -m sfl_env.calibration.fit`"
        )
    reasons = []
    for calibration in same_model:
        reason = calibration.mismatch(config)
        if reason is None:
            return CalibratedCurve(calibration, calibration.curves[config.scheme])
        reasons.append(reason)
    raise ConfigError(
        f"the analytic twin is not calibrated for {'; '.join(reasons)} on {config.dataset}/{config.model}. "
        "It follows curves fitted to real runs and models no option it was not fitted on: use SFLEnv-v0 "
        "(real training) for this value, or record and fit a calibration for it "
        "(`python -m sfl_env.calibration.record --set ...`, then `python -m sfl_env.calibration.fit`)"
    )


def is_calibrated(config: SFLConfig) -> bool:
    """Whether a calibration covers ``config`` (the twin and the planner need one)."""
    try:
        calibration_for(config)
    except ConfigError:
        return False
    return True
