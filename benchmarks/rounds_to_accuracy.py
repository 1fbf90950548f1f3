"""Rounds to a target test accuracy for every scheme at its shallowest cut and for every cut of SFL-GA.

Measures the paper's claim that a smaller client-side model converges better under gradient
aggregation, on a preset (default: the tiny digits one, K=10, Dirichlet 0.5). Real training, no model
of it. (The calibration runs, ``python -m sfl_env.calibration.record``, record the same for every
scheme and cut, resumably.)

    python benchmarks/rounds_to_accuracy.py [--preset digits] [--seeds 3] [--rounds 100] [--target 0.9]
"""

from __future__ import annotations

import argparse
import csv
import statistics

from sfl_env.config import SFLConfig
from sfl_env.config import parse_overrides
from sfl_env.schemes import SCHEMES
from sfl_env.training import build_trainer


def run(config: SFLConfig, cut: int, rounds: int, seed: int) -> list[float]:
    trainer = build_trainer(config, seed=seed)
    return [trainer.run_round(cut).test_accuracy for _ in range(rounds)]


def rounds_to(curve: list[float], target: float) -> int | None:
    return next((i + 1 for i, acc in enumerate(curve) if acc >= target), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="digits")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--target", type=float, default=0.9)
    parser.add_argument("--csv", default=None, help="write every accuracy curve to this file")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    base = parse_overrides(args.set)

    runs = [(scheme, 1) for scheme in SCHEMES]
    depth = SFLConfig.from_kwargs(preset=args.preset, **base)
    n_cuts = len(build_trainer(depth).model.cuts)
    runs += [("sfl-ga", cut) for cut in range(2, n_cuts + 1)]

    rows = []
    print(f"{'scheme':>7} {'cut':>3} " + " ".join(f"{'seed ' + str(s):>7}" for s in range(args.seeds))
          + f" {'median':>7} {'final acc':>9}")
    for scheme, cut in runs:
        config = SFLConfig.from_kwargs(preset=args.preset, **(base | {"scheme": scheme}))
        curves = [run(config, cut, args.rounds, seed) for seed in range(args.seeds)]
        hits = [rounds_to(c, args.target) for c in curves]
        reached = [h for h in hits if h is not None]
        median = statistics.median(reached) if len(reached) == len(hits) else None
        final = statistics.mean(c[-1] for c in curves)
        cut_label = "-" if scheme == "fl" else str(cut)
        print(f"{scheme:>7} {cut_label:>3} " + " ".join(f"{h if h else 'never':>7}" for h in hits)
              + f" {median if median else 'never':>7} {final:>9.3f}")
        for seed, curve in enumerate(curves):
            rows += [(scheme, cut, seed, i + 1, acc) for i, acc in enumerate(curve)]
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["scheme", "cut", "seed", "round", "test_accuracy"])
            writer.writerows(rows)
        print(f"curves written to {args.csv}")


if __name__ == "__main__":
    main()
