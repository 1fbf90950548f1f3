"""Tunes each scheme's learning rate on a preset, with the same budget for every scheme.

For every scheme and every rate of the grid, records real runs on validation seeds (never the seeds
that calibration fits or that evaluation reports) at the scheme's middle cut, each for at most
``--max-rounds`` rounds (a run stops early once past the target: sfl_env.calibration.record). The rate
with the fewest median rounds to the target wins (a run that never gets there, or diverges, counts as infinite;
ties, including "never", go to the higher mean test accuracy over the last 10 rounds). Prints the
table; ``--write`` records the winners (with the grid, seeds and scores) in
sfl_env/calibration/learning_rates.json, where ``lr=None`` (the default) reads them. Resumable: runs
already in the log are reused.

    python benchmarks/tune_lr.py --preset shapes [--grid 0.01,0.03,0.1] [--seeds 100] [--jobs 2] [--write]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

import sfl_env.calibration.record as recorder
from sfl_env.config import EnvConfig, SFLConfig, parse_overrides
from sfl_env.schemes import SCHEMES
from sfl_env.storage import write_text


def score(cell: list[dict], target: float) -> tuple[float, float]:
    """(median rounds to the target, minus the last 10 rounds' mean accuracy): lower is better. A rate whose
    run diverges, even after reaching the target, is not a usable rate: its rounds count as infinite."""
    hits = statistics.median(math.inf if run["diverged"] else recorder.first_round_at(run["accuracy"], target) for run in cell)
    tail = statistics.mean(statistics.mean(run["accuracy"][-10:]) for run in cell)
    return hits, -tail


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="shapes")
    parser.add_argument("--schemes", default=",".join(SCHEMES))
    parser.add_argument("--grid", default="0.01,0.03,0.1")
    parser.add_argument("--seeds", default="100")
    parser.add_argument("--max-rounds", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--log", default=None)
    parser.add_argument("--write", action="store_true", help="record the winners in learning_rates.json")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="training options, e.g. data_dir=...")
    args = parser.parse_args()

    overrides = parse_overrides(args.set)
    target = EnvConfig.from_kwargs(preset=args.preset, **overrides).target_accuracy
    log = Path(args.log) if args.log else Path(recorder.__file__).with_name("runs") / f"{args.preset}-lr-tuning.jsonl"
    grid = [float(v) for v in args.grid.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    jobs, cells = [], {}
    for scheme in args.schemes.split(","):
        for lr in grid:
            config = SFLConfig.from_kwargs(preset=args.preset, scheme=scheme, lr=lr, **overrides)
            cuts = recorder.scheme_cuts(config)
            cut = cuts[(len(cuts) - 1) // 2]
            cells[scheme, lr] = [recorder.Job(config, cut, seed, target, args.max_rounds) for seed in seeds]
            jobs += cells[scheme, lr]
    runs = {run["key"]: run for run in recorder.record(jobs, log, workers=args.jobs)}

    print(f"\n{args.preset}: median rounds to {target:.0%} (and mean accuracy of the last 10 rounds), "
          f"seeds {args.seeds}, at most {args.max_rounds} rounds")
    print(f"{'scheme':8s} " + " ".join(f"{'lr ' + format(lr, 'g'):>16s}" for lr in grid) + "   best")
    best, table = {}, {}
    for scheme in args.schemes.split(","):
        scores = {}
        for lr in grid:
            scores[lr] = score([runs[job.key] for job in cells[scheme, lr]], target)
        best[scheme] = min(grid, key=lambda lr: scores[lr])
        table[scheme] = {str(lr): {"median_rounds_to_target": scores[lr][0], "last10_accuracy": -scores[lr][1]}
                         for lr in grid}
        print(f"{scheme:8s} " + " ".join(f"{scores[lr][0]:>7g} ({-scores[lr][1]:.3f})" for lr in grid)
              + f"   {best[scheme]:g}")
    model = SFLConfig.from_kwargs(preset=args.preset, **overrides)
    print(f"\nbest learning rates on {model.dataset}/{model.model}: {best}")
    if args.write:
        path = Path(recorder.__file__).with_name("learning_rates.json")
        entries = json.loads(path.read_text()) if path.is_file() else {}
        entries[args.preset] = {
            "dataset": model.dataset, "model": model.model, "lr": best, "grid": grid, "seeds": seeds,
            "max_rounds": args.max_rounds, "target_accuracy": target, "cut": "middle cut of each scheme",
            "scores": json.loads(json.dumps(table).replace("Infinity", "null")),
        }
        write_text(path, json.dumps(entries, indent=1) + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
