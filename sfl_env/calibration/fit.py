"""Fits the analytic twin to recorded real runs and writes its calibration file.

Reads the runs that ``python -m sfl_env.calibration.record`` logged for a preset, keeps the fit seeds
(the held-out seeds are only recorded in the file, for ``benchmarks/twin_fidelity.py``), and fits one
:class:`~sfl_env.training.curve.TrainingCurveModel` per scheme: a shared saturating curve, one speed per
cut (every speed 1 for a scheme whose learning the cut cannot change), the spread of the runs' paces
around it (each run's best factor on its speed, lognormal), and the round-to-round fluctuation around
each run's own paced curve (AR(1)). The file records every training option of the runs, each scheme's
learning rate and the seeds, so the twin can refuse what it was not fitted on
(:mod:`sfl_env.training.calibration`). Prints fitted vs measured rounds to the target on the fit seeds.

    python -m sfl_env.calibration.fit --preset shapes                  # fit seeds 0,1; held out 2
    python -m sfl_env.calibration.fit --preset digits --fit-seeds 0,1,2 --held-out-seeds 3
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import least_squares, minimize_scalar

from ..config import SFLConfig, default_lr
from ..schemes import SCHEMES, get_scheme
from ..storage import write_text
from ..training.calibration import FREE_OPTIONS
from ..training.curve import TrainingCurveModel
from .record import first_round_at, model_cuts, read_log


def fit_shape(
    runs: dict[int, list[np.ndarray]], reference: int, speeds: dict[int, float] | None = None,
    value_range: tuple[float, float] = (0.0, np.inf),
) -> tuple[dict[int, float], list[float]]:
    """Least-squares fit of one saturating curve shape plus a speed per cut (the reference cut has speed 1)
    to every recorded run of every cut, each over the rounds it ran (runs stop at different rounds past
    the target, so averaging them first would bias the tail). Given ``speeds``, only the shape is fitted.
    The start and end values stay in ``value_range`` (an accuracy in [0, 1]): runs that stop soon after
    the target do not pin the asymptote, and an unbounded fit can trade it against the time constant."""
    cuts = sorted(runs)
    others = [c for c in cuts if c != reference] if speeds is None else []
    first = float(np.nanmean([row[0] for rows in runs.values() for row in rows]))
    last = float(np.nanmax([np.nanmean(row[-5:]) for rows in runs.values() for row in rows]))
    rounds = max(len(row) for row in runs[reference])
    observed = {cut: [np.isfinite(row) for row in rows] for cut, rows in runs.items()}

    def unpack(theta):
        start, end, log_tau, log_kappa = theta[:4]
        fitted = {reference: 1.0} | {c: math.exp(v) for c, v in zip(others, theta[4:])}
        return start, end, math.exp(log_tau), math.exp(log_kappa), speeds or fitted

    def residuals(theta):
        start, end, tau, kappa, speed = unpack(theta)
        out = []
        for cut in cuts:
            for row, seen in zip(runs[cut], observed[cut]):
                p = speed[cut] * np.arange(1, len(row) + 1)
                out.append((end - (end - start) * np.exp(-((p / tau) ** kappa)) - row)[seen])
        return np.concatenate(out)

    low, high = value_range
    theta0 = np.array([first, last, math.log(rounds / 3), math.log(1.5)] + [0.0] * len(others))
    theta0[:2] = np.clip(theta0[:2], low + 1e-6, high - 1e-6)
    lower = [low, low, -np.inf, math.log(0.2)] + [-np.inf] * len(others)
    upper = [high, high, np.inf, math.log(10.0)] + [np.inf] * len(others)
    solution = least_squares(residuals, theta0, method="trf", bounds=(lower, upper))
    start, end, tau, kappa, fitted_speeds = unpack(solution.x)
    return fitted_speeds, [start, end, tau, kappa]


def run_paces(model: TrainingCurveModel, runs: dict[int, list[np.ndarray]]) -> dict[int, list[float]]:
    """Each run's pace: the factor on its cut's speed that fits it best, the curve's shape held fixed."""
    paces: dict[int, list[float]] = {}
    for cut, rows in runs.items():
        for row in rows:
            rounds, seen = np.arange(1, len(row) + 1), np.isfinite(row)

            def error(log_pace: float, row=row, rounds=rounds, seen=seen) -> float:
                curve = model.accuracy(math.exp(log_pace) * model.speed[cut - 1] * rounds)
                return float(np.sum((curve - row)[seen] ** 2))

            paces.setdefault(cut, []).append(math.exp(minimize_scalar(error, bounds=(-2.0, 2.0), method="bounded").x))
    return paces


def fluctuation(model: TrainingCurveModel, runs: dict[int, list[np.ndarray]],
                paces: dict[int, list[float]]) -> tuple[float, float]:
    """Standard deviation and lag-one correlation of single runs around their own paced curve, pooled
    (the correlation as measured; the fit clips it into the AR(1) range)."""
    residuals = [row - model.accuracy(pace * model.speed[cut - 1] * np.arange(1, len(row) + 1))
                 for cut, rows in runs.items() for row, pace in zip(rows, paces[cut])]
    pooled = np.concatenate(residuals)
    lagged = np.corrcoef(np.concatenate([r[:-1] for r in residuals]), np.concatenate([r[1:] for r in residuals]))
    return float(pooled.std()), float(lagged[0, 1])


def measured_rounds(acc: list[list[float]], target: float) -> float:
    """Median over seeds of the first round at or above ``target`` (inf if a seed never gets there)."""
    return float(statistics.median(first_round_at(row, target) for row in acc))


def fit_scheme(runs: list[dict[str, Any]], num_cuts: int) -> TrainingCurveModel:
    """One scheme's curve model from its recorded runs (every cut, fit seeds only)."""
    by_cut: dict[int, list[dict[str, Any]]] = {}
    for run in runs:
        by_cut.setdefault(run["cut"], []).append(run)
    acc = {cut: [_array(r["accuracy"]) for r in rs] for cut, rs in by_cut.items()}
    loss = {cut: [_array(r["loss"]) for r in rs] for cut, rs in by_cut.items()}
    reference = min(acc)
    speeds, acc_shape = fit_shape(acc, reference=reference, value_range=(0.0, 1.0))
    _, loss_shape = fit_shape(loss, reference=reference, speeds=speeds)
    first = runs[0]
    if len(by_cut) == 1:  # the cut does not change this scheme's learning (Scheme.cut_matters)
        speeds = dict.fromkeys(range(1, num_cuts + 1), 1.0)
    model = TrainingCurveModel(
        scheme=first["scheme"], dataset=first["config"]["dataset"], model=first["config"]["model"],
        speed=tuple(speeds[c] for c in range(1, num_cuts + 1)),
        acc_0=acc_shape[0], acc_inf=acc_shape[1], acc_tau=acc_shape[2], acc_kappa=acc_shape[3],
        loss_0=loss_shape[0], loss_inf=loss_shape[1], loss_tau=loss_shape[2], loss_kappa=loss_shape[3],
    )
    paces = run_paces(model, acc)
    logs = np.log([p for ps in paces.values() for p in ps])
    pace_log_std = float(logs.std(ddof=1)) if len(logs) > 1 else 0.0
    std, corr = fluctuation(model, acc, paces)
    return dataclasses.replace(model, acc_noise_std=std, acc_noise_corr=float(np.clip(corr, 0.0, 0.99)),
                               pace_log_std=pace_log_std)


def _array(values: list[float | None]) -> np.ndarray:
    return np.array([math.nan if v is None else v for v in values], dtype=np.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="shapes")
    parser.add_argument("--fit-seeds", default="0,1")
    parser.add_argument("--held-out-seeds", default="2", help="recorded for the fidelity check, never fitted")
    parser.add_argument("--log", default=None, help="default: sfl_env/calibration/runs/<preset>.jsonl")
    parser.add_argument("--out", default=None, help="default: sfl_env/calibration/<preset>.json")
    parser.add_argument("--data-note", default=None,
                        help="what data the runs read, for presets whose files come from data_dir")
    parser.add_argument("--data-dir", default=None, help="the files the runs read, for a file preset (to count them)")
    args = parser.parse_args()

    here = Path(__file__).parent
    log = Path(args.log) if args.log else here / "runs" / f"{args.preset}.jsonl"
    out = Path(args.out) if args.out else here / f"{args.preset}.json"
    fit_seeds = [int(s) for s in args.fit_seeds.split(",")]
    held_out = [int(s) for s in args.held_out_seeds.split(",") if s]
    if set(fit_seeds) & set(held_out):
        raise SystemExit("--fit-seeds and --held-out-seeds must not share a seed")
    runs = [r for r in read_log(log).values() if r["seed"] in fit_seeds]
    if not runs:
        raise SystemExit(f"no runs of seeds {fit_seeds} in {log}; record them with python -m sfl_env.calibration.record")
    options = {k: v for k, v in runs[0]["config"].items() if k not in (*FREE_OPTIONS, "scheme", "lr")}
    for run in runs:
        other = {k: v for k, v in run["config"].items() if k not in (*FREE_OPTIONS, "scheme", "lr")}
        if other != options:
            diff = sorted(k for k in options if options[k] != other.get(k))
            raise SystemExit(f"{log} mixes training options ({', '.join(diff)}); fit one configuration per file")
    target = float(runs[0]["target"])
    config = SFLConfig(**{**runs[0]["config"], "scheme": "sfl-ga", "data_dir": "unused"})
    num_cuts = len(model_cuts(config))
    payload: dict[str, Any] = {
        "description": "TrainingCurveModel constants fitted to recorded real runs by sfl_env.calibration.fit",
        "preset": args.preset, "options": options, "lr": {}, "fit_seeds": fit_seeds, "held_out_seeds": held_out,
        "target_accuracy": target, "data": args.data_note or f"{options['dataset']} as bundled or generated",
        "data_sizes": _data_sizes(SFLConfig(**{**runs[0]["config"], "data_dir": args.data_dir})),
        "data_sha256": _corpus_hash(runs),
        "runs_log": str(log.relative_to(here)) if log.is_relative_to(here) else str(log),
        "schemes": {}, "report": {},
    }
    for scheme in SCHEMES:
        scheme_runs = [r for r in runs if r["scheme"] == scheme]
        if not scheme_runs:
            continue
        recorded = {r["cut"] for r in scheme_runs}
        wanted = set(range(1, num_cuts + 1)) if get_scheme(scheme).cut_matters else {1}
        if recorded != wanted:
            print(f"{scheme:>7}: skipped, cuts {sorted(wanted - recorded)} not recorded for every fit seed yet "
                  f"(python -m sfl_env.calibration.record)")
            continue
        lr = default_lr(options["dataset"], options["model"], scheme)
        lrs = {r["config"]["lr"] for r in scheme_runs}
        scheme_runs = [r for r in scheme_runs if r["config"]["lr"] == lr]
        if {r["cut"] for r in scheme_runs} != wanted:
            print(f"{scheme:>7}: skipped, not every cut recorded at its tuned lr={lr:g} (the log has {sorted(lrs)})")
            continue
        model = fit_scheme(scheme_runs, num_cuts)
        payload["lr"][scheme] = lr
        payload["schemes"][scheme] = model.to_dict()
        rows = []
        for cut in sorted({r["cut"] for r in scheme_runs}):
            cell = [r for r in scheme_runs if r["cut"] == cut]
            measured = measured_rounds([r["accuracy"] for r in cell], target)
            predicted = model.rounds_to(target, cut, horizon=max(r["max_rounds"] for r in cell))
            if math.isinf(measured) and math.isinf(predicted):
                error = 0.0
            else:
                error = abs(predicted - measured) / measured if math.isfinite(measured) else math.inf
            rows.append({"cut": cut, "measured": measured, "predicted": predicted, "relative_error": error})
            print(f"{scheme:>7} cut {cut}: rounds to {target:.0%} on the fit seeds: measured {measured:g}, "
                  f"fitted {predicted:g} ({error:.1%} off)")
        payload["report"][scheme] = rows
    write_text(out, json.dumps(payload, indent=1, default=float) + "\n")
    print(f"wrote {out}; check it on the held-out seeds with python benchmarks/twin_fidelity.py --preset {args.preset}")


def _corpus_hash(runs: list[dict[str, Any]]) -> str | None:
    """The SHA-256 of the text corpus every run read (None for image data); refuses a mix."""
    hashes = {run.get("data_sha256") for run in runs}
    if len(hashes) > 1:
        raise SystemExit(f"the runs read different text corpora ({', '.join(sorted(map(str, hashes)))}); "
                         "fit runs recorded on one Python version")
    return hashes.pop()


def _data_sizes(config: SFLConfig) -> list[int]:
    from ..data import load_config_dataset

    data = load_config_dataset(config)
    return [len(data.y_train), len(data.y_test)]


if __name__ == "__main__":
    main()
