"""Fits the analytic training model to real training runs and stores the constants as JSON.

For every scheme and every fixed cut, trains ``--seeds`` real runs on the given preset, averages their
test-accuracy and test-loss curves, and fits one :class:`~sfl_env.training.analytic.TrainingCurveModel` per
scheme: a shared curve shape and one speed per cut, plus the run-to-run fluctuation around it (AR(1)).
Prints measured vs predicted rounds to the target accuracy for every cut: the median first round at
the target over the seeds against the same over simulated runs of the model.

    python -m sfl_env.calibration.fit                    # all schemes on digits/cnn, 3 seeds
    python -m sfl_env.calibration.fit --schemes sfl-ga --rounds 300 --out my-fit.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import time
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares

from ..config import SFLConfig
from ..training.analytic import TrainingCurveModel
from ..schemes import SCHEMES
from ..training import build_trainer

DEFAULT_ROUNDS = {"sfl-ga": 300, "sfl-v1": 150, "sfl-v2": 60, "psl": 150, "fl": 150}


def run_curves(config: SFLConfig, cut: int, rounds: int, seeds: int) -> tuple[np.ndarray, np.ndarray]:
    """(seeds, rounds) arrays of test accuracy and test loss after each round."""
    acc, loss = np.zeros((seeds, rounds)), np.zeros((seeds, rounds))
    for seed in range(seeds):
        trainer = build_trainer(config, seed=seed)
        for t in range(rounds):
            outcome = trainer.run_round(cut).outcome
            acc[seed, t], loss[seed, t] = outcome.test_accuracy, outcome.test_loss
    return acc, loss


def fit_shape(
    curves: dict[int, np.ndarray], reference: int, speeds: dict[int, float] | None = None
) -> tuple[dict[int, float], list[float]]:
    """Least-squares fit of one saturating curve shape plus a speed per cut (the reference cut has speed 1).
    Given ``speeds``, only the shape is fitted."""
    cuts = sorted(curves)
    others = [c for c in cuts if c != reference] if speeds is None else []
    first = np.concatenate([c[:1] for c in curves.values()]).mean()
    last = max(float(c[-1]) for c in curves.values())
    rounds = len(curves[reference])

    def unpack(theta):
        start, end, log_tau, log_kappa = theta[:4]
        fitted = {reference: 1.0} | {c: math.exp(v) for c, v in zip(others, theta[4:])}
        return start, end, math.exp(log_tau), math.exp(log_kappa), speeds or fitted

    def residuals(theta):
        start, end, tau, kappa, speeds = unpack(theta)
        out = []
        for cut in cuts:
            p = speeds[cut] * np.arange(1, len(curves[cut]) + 1)
            out.append(end - (end - start) * np.exp(-((p / tau) ** kappa)) - curves[cut])
        return np.concatenate(out)

    theta0 = np.array([first, last, math.log(rounds / 3), math.log(1.5)] + [0.0] * len(others))
    solution = least_squares(residuals, theta0, method="trf")
    start, end, tau, kappa, speeds = unpack(solution.x)
    return speeds, [start, end, tau, kappa]


def fluctuation(model: TrainingCurveModel, acc: dict[int, np.ndarray]) -> tuple[float, float]:
    """Standard deviation and lag-one correlation of single runs around the fitted curve, pooled."""
    residuals = [row - model.accuracy(model.speed[cut - 1] * np.arange(1, len(row) + 1))
                 for cut, runs in acc.items() for row in runs]
    pooled = np.concatenate(residuals)
    lagged = np.corrcoef(np.concatenate([r[:-1] for r in residuals]), np.concatenate([r[1:] for r in residuals]))
    return float(pooled.std()), float(np.clip(lagged[0, 1], 0.0, 0.99))


def measured_rounds(acc: np.ndarray, target: float) -> float:
    """Median over seeds of the first round at or above ``target`` (inf if a seed never gets there)."""
    hits = [next((t + 1 for t, a in enumerate(row) if a >= target), math.inf) for row in acc]
    return float(statistics.median(hits))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="digits")
    parser.add_argument("--schemes", default=",".join(SCHEMES))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=None, help="rounds per run (default: per scheme)")
    parser.add_argument("--target", type=float, default=0.9)
    parser.add_argument("--out", default=None, help="JSON path (default: next to this script)")
    args = parser.parse_args()

    base = SFLConfig.from_kwargs(preset=args.preset)
    out = Path(args.out) if args.out else Path(__file__).with_name(f"{base.dataset}-{base.model}.json")
    existing = json.loads(out.read_text())["schemes"] if out.is_file() else {}
    report = {}
    for scheme in args.schemes.split(","):
        config = SFLConfig.from_kwargs(preset=args.preset, scheme=scheme)
        rounds = args.rounds or DEFAULT_ROUNDS[scheme]
        n_cuts = build_trainer(config).model.num_blocks - 1
        cuts = [1] if scheme == "fl" else list(range(1, n_cuts + 1))
        start = time.perf_counter()
        runs = {cut: run_curves(config, cut, rounds, args.seeds) for cut in cuts}
        speeds, acc_shape = fit_shape({c: a.mean(0) for c, (a, _) in runs.items()}, reference=1)
        _, loss_shape = fit_shape({c: l.mean(0) for c, (_, l) in runs.items()}, reference=1, speeds=speeds)
        model = TrainingCurveModel(
            scheme=scheme, dataset=base.dataset, model=base.model,
            speed=tuple(speeds.get(c, 1.0) for c in range(1, n_cuts + 1)),
            acc_0=acc_shape[0], acc_inf=acc_shape[1], acc_tau=acc_shape[2], acc_kappa=acc_shape[3],
            loss_0=loss_shape[0], loss_inf=loss_shape[1],
            loss_tau=loss_shape[2], loss_kappa=loss_shape[3],
        )
        std, corr = fluctuation(model, {c: a for c, (a, _) in runs.items()})
        model = dataclasses.replace(model, acc_noise_std=std, acc_noise_corr=corr)
        existing[scheme] = model.to_dict()
        rows = []
        for cut in cuts:
            measured = measured_rounds(runs[cut][0], args.target)
            predicted = model.rounds_to(args.target, cut, horizon=max(3 * rounds, 1000))
            error = abs(predicted - measured) / measured if math.isfinite(measured) else math.nan
            rows.append({"cut": cut, "measured": measured, "predicted": predicted, "relative_error": error})
            print(f"{scheme:>7} cut {cut}: rounds to {args.target:.0%} measured {measured:g}, "
                  f"predicted {predicted:g} ({error:.1%} off)")
        report[scheme] = {"rounds": rounds, "seconds": round(time.perf_counter() - start, 1), "cuts": rows}
    payload = {
        "description": "TrainingCurveModel constants fitted to real runs by sfl_env.calibration.fit",
        "preset": args.preset, "seeds": args.seeds, "target_accuracy": args.target,
        "config": base.to_dict(), "schemes": existing,
        "report": (json.loads(out.read_text()).get("report", {}) if out.is_file() else {}) | report,
    }
    out.write_text(json.dumps(payload, indent=1, default=float) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
