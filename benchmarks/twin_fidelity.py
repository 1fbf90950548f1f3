"""How faithful the analytic twin is: twin vs real training on seeds the calibration never saw.

For a calibrated preset, reads the calibration (sfl_env/calibration/<preset>.json) and the real runs of
its held-out seeds from its run log, and prints per scheme and cut:

- rounds to the target: the median over the held-out real runs, the twin's median (with its fitted
  pace spread and fluctuation) within the same horizon as the real runs, and the relative error
  (0 when both never get there, inf when only one does);
- the round-to-round fluctuation of accuracy around each run's own paced curve (the estimator the fit
  uses): standard deviation and lag-one correlation, of the real runs and of 20 twin runs of the same
  length.

The last line is the median relative error over every scheme and cut (the acceptance bar is 15 %).

    python benchmarks/twin_fidelity.py --preset shapes
"""

from __future__ import annotations

import argparse
import math
import statistics
from pathlib import Path

import numpy as np

from sfl_env.calibration.fit import fluctuation, measured_rounds, run_paces
from sfl_env.calibration.record import read_log
from sfl_env.training.calibration import read_calibration


def round_to_round(curve_model, cut: int, rows: list[np.ndarray]) -> tuple[float, float]:
    """Std and lag-one correlation of runs around their own paced curve (the fit's estimator)."""
    runs = {cut: rows}
    return fluctuation(curve_model, runs, run_paces(curve_model, runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="shapes")
    parser.add_argument("--calibration", default=None, help="default: the shipped sfl_env/calibration/<preset>.json")
    args = parser.parse_args()
    import sfl_env.calibration as shipped

    folder = Path(shipped.__file__).parent
    calibration = read_calibration(args.calibration or str(folder / f"{args.preset}.json"))
    log = calibration.runs_log
    # The held-out runs of the calibrated configuration: every option as fitted, each scheme at its rate.
    runs = [r for r in read_log(log).values() if r["seed"] in calibration.held_out_seeds
            and r["scheme"] in calibration.lr and r["config"]["lr"] == calibration.lr[r["scheme"]]
            and all(r["config"].get(k) == v for k, v in calibration.options.items())]
    target = calibration.target_accuracy
    print(f"{args.preset}: twin vs real on held-out seeds {list(calibration.held_out_seeds)} "
          f"(fitted on {list(calibration.fit_seeds)}), rounds to {target:.0%}")
    print(f"{'scheme':8s} {'cut':>3s} {'real':>6s} {'twin':>6s} {'error':>6s}   "
          f"{'std real':>8s} {'twin':>6s}   {'lag-1 real':>10s} {'twin':>6s}")
    errors = []
    rng = np.random.default_rng(0)
    for scheme, curve_model in calibration.curves.items():
        for cut in sorted({r["cut"] for r in runs if r["scheme"] == scheme}):
            cell = [r for r in runs if r["scheme"] == scheme and r["cut"] == cut]
            rows = [np.array(r["accuracy"]) for r in cell]
            real = measured_rounds(rows, target)
            # The same horizon on both sides: a real run that never got there stopped at its max_rounds.
            twin = curve_model.rounds_to(target, cut, horizon=max(r["max_rounds"] for r in cell))
            if math.isinf(real) and math.isinf(twin):
                error = 0.0  # both never within the horizon
            else:
                error = abs(twin - real) / real if math.isfinite(real) and math.isfinite(twin) else math.inf
            errors.append((error, math.isfinite(real)))
            simulated = curve_model.sample_runs(rng, cut, 20, max(len(row) for row in rows))
            real_std, real_lag = round_to_round(curve_model, cut, rows)
            twin_std, twin_lag = round_to_round(curve_model, cut, list(np.clip(simulated, 0, 1)))
            print(f"{scheme:8s} {cut:3d} {real:6g} {twin:6g} {error:6.1%}   {real_std:8.3f} {twin_std:6.3f}   "
                  f"{real_lag:10.2f} {twin_lag:6.2f}")
    if errors:
        reached = [e for e, finite in errors if finite]
        print(f"median relative error of rounds to target: {statistics.median(e for e, _ in errors):.1%} over all "
              f"{len(errors)} scheme-cut cells; {statistics.median(reached):.1%} over the {len(reached)} where the "
              f"real runs reached the target (max {max(reached):.1%})")
    else:
        print(f"no held-out runs in {log}: record them with python -m sfl_env.calibration.record "
              f"--preset {args.preset} --seeds {','.join(map(str, calibration.held_out_seeds))}")


if __name__ == "__main__":
    main()
