"""Records real training runs, one per (config, cut, seed), into an append-only JSON-lines log.

The calibration of the analytic twin (:mod:`sfl_env.calibration.fit`), its fidelity check
(``benchmarks/twin_fidelity.py``) and the learning-rate tuning (``benchmarks/tune_lr.py``) all read
runs recorded here. A run trains a fixed cut from a seed until its test accuracy reaches the target,
then a tail of ``max(10, 25 %)`` more rounds so the curve past the target is seen too (or until
``max_rounds``, or until it diverges). Each finished run is one line, written whole and flushed, so an
interrupted recording loses at most the runs in progress; running the same command again skips every
run already in the log (its key: the full training config, the cut and the seed) and shows progress.

    python -m sfl_env.calibration.record --preset shapes --seeds 0,1,2,3 --log runs.jsonl --jobs 2
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import SFLConfig, parse_overrides
from ..schemes import SCHEMES, get_scheme

# Not part of a run's identity: evaluation period and device change no learning. The data folder is a
# machine path: keys and records hold None for it (a preset's files are named in its calibration).
_NOT_LEARNING = ("eval_every", "device")


@dataclass(frozen=True)
class Job:
    """One real run to record: a training config, a fixed cut and a seed."""

    config: SFLConfig
    cut: int
    seed: int
    target: float
    max_rounds: int

    @property
    def key(self) -> str:
        return run_key(self.config, self.cut, self.seed)


def run_key(config: SFLConfig, cut: int, seed: int) -> str:
    learning = {k: v for k, v in config.to_dict().items() if k not in _NOT_LEARNING} | {"data_dir": None}
    return json.dumps({"config": learning, "cut": cut, "seed": seed}, sort_keys=True)


def read_log(path: Path) -> dict[str, dict[str, Any]]:
    """The runs recorded in ``path`` by key (a truncated last line, from a kill, is ignored)."""
    runs: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return runs
    for line in path.read_text().splitlines():
        try:
            run = json.loads(line)
        except json.JSONDecodeError:
            continue
        runs[run["key"]] = run
    return runs


def first_round_at(accuracy: Iterable[float], target: float) -> float:
    """The first round (1-based) whose test accuracy is at or above ``target``; inf if none is."""
    return next((t + 1 for t, a in enumerate(accuracy) if a >= target), math.inf)


def model_cuts(config: SFLConfig) -> tuple[int, ...]:
    """The candidate cuts of ``config``'s model (built from the dataset's shape, nothing loaded)."""
    from ..data import dataset_shape
    from ..models import build_model

    return build_model(config.model, *dataset_shape(config), **config.model_options).cuts


def _drop_torn_tail(log: Path) -> None:
    """Cuts a last line a kill left half-written, so the next record starts on a line of its own."""
    if not log.is_file():
        return
    data = log.read_bytes()
    if data and not data.endswith(b"\n"):
        with log.open("r+b") as file:
            file.truncate(data.rfind(b"\n") + 1)


def run_job(job: Job) -> dict[str, Any]:
    """Trains ``job`` and returns its log record (test accuracy and loss after every round)."""
    import torch

    from ..data import dataset_metadata
    from ..training import build_trainer

    torch.set_num_threads(1)  # jobs run side by side, one core each
    start = time.perf_counter()
    trainer = build_trainer(job.config, seed=job.seed)
    accuracy: list[float] = []
    loss: list[float] = []
    stop_at, diverged = job.max_rounds, False
    while len(accuracy) < stop_at:
        outcome = trainer.run_round(job.cut)
        accuracy.append(round(float(outcome.test_accuracy), 5))
        loss.append(round(float(outcome.test_loss), 5) if math.isfinite(outcome.test_loss) else None)
        if outcome.diverged:
            diverged = True
            break
        if stop_at == job.max_rounds and accuracy[-1] >= job.target:
            hit = len(accuracy)
            stop_at = min(job.max_rounds, hit + max(10, math.ceil(0.25 * hit)))
    return {
        "key": job.key, "scheme": job.config.scheme, "cut": job.cut, "seed": job.seed,
        "config": {**job.config.to_dict(), "data_dir": None}, "target": job.target, "max_rounds": job.max_rounds,
        "accuracy": accuracy, "loss": loss, "diverged": diverged,
        "seconds": round(time.perf_counter() - start, 1),
        "data_sha256": dataset_metadata(job.config).get("sha256"),  # a text corpus: the text it read
    }


def scheme_cuts(config: SFLConfig) -> list[int]:
    """The cuts to record for ``config``'s scheme: every cut, or one where the scheme's learning cannot
    depend on it (fl trains the whole model; sfl-v1 FedAvgs client and server copies alike, which is
    FedAvg of the whole model at any cut)."""
    cuts = model_cuts(config)
    return list(cuts) if get_scheme(config.scheme).cut_matters else [cuts[0]]


def record(jobs: Iterable[Job], log: Path, *, workers: int = 1) -> Iterator[dict[str, Any]]:
    """Runs every job not yet in ``log``, appending each record as it finishes; yields the records of
    all jobs (recorded before or now), in completion order."""
    jobs = list(jobs)
    done = read_log(log)
    todo = [job for job in jobs if job.key not in done]
    for job in jobs:
        if job.key in done:
            yield done[job.key]
    if not todo:
        return
    log.parent.mkdir(parents=True, exist_ok=True)
    _drop_torn_tail(log)
    print(f"{len(jobs) - len(todo)} of {len(jobs)} runs already in {log}; {len(todo)} to go", file=sys.stderr)
    start, finished = time.perf_counter(), 0
    with ProcessPoolExecutor(max_workers=workers) as pool, log.open("a") as out:
        futures = {pool.submit(run_job, job): job for job in todo}
        for future in as_completed(futures):
            run = future.result()
            out.write(json.dumps(run) + "\n")
            out.flush()
            os.fsync(out.fileno())
            finished += 1
            elapsed = time.perf_counter() - start
            eta = elapsed / finished * (len(todo) - finished)
            hit = first_round_at(run["accuracy"], run["target"])
            print(f"[{finished}/{len(todo)}] {run['scheme']} cut {run['cut']} seed {run['seed']} "
                  f"lr {run['config']['lr']:g}: {len(run['accuracy'])} rounds, "
                  f"target at {hit if math.isfinite(hit) else 'never'}, "
                  f"{run['seconds']:.0f} s (eta {eta / 60:.0f} min)", file=sys.stderr, flush=True)
            yield run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="shapes")
    parser.add_argument("--schemes", default=",".join(SCHEMES))
    parser.add_argument("--seeds", default="0,1,2,3")
    parser.add_argument("--target", type=float, default=None, help="default: the preset's target accuracy")
    parser.add_argument("--max-rounds", type=int, default=300)
    parser.add_argument("--jobs", type=int, default=max(1, min(2, os.cpu_count() or 1)))
    parser.add_argument("--log", default=None, help="default: sfl_env/calibration/runs/<preset>.jsonl")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="training options")
    args = parser.parse_args()
    from ..config import EnvConfig

    env = EnvConfig.from_kwargs(preset=args.preset, **parse_overrides(args.set))
    target = args.target if args.target is not None else env.target_accuracy
    log = Path(args.log) if args.log else Path(__file__).with_name("runs") / f"{args.preset}.jsonl"
    jobs = []
    for scheme in args.schemes.split(","):
        config = SFLConfig.from_kwargs(preset=args.preset, scheme=scheme, **parse_overrides(args.set))
        jobs += [Job(config, cut, int(seed), target, args.max_rounds)
                 for seed in args.seeds.split(",") for cut in scheme_cuts(config)]
    for _ in record(jobs, log, workers=args.jobs):
        pass


if __name__ == "__main__":
    main()
