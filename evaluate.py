"""Benchmark agents and SFL schemes on one fixed protocol: results.csv, leaderboard.md, figures, claims.md.

    python evaluate.py                                   # all three modes on the default preset (shapes)
    python evaluate.py --mode agents --agents "runs/ddqn__*",random,oracle --seeds 5
    python evaluate.py --mode schemes --agents oracle --seeds 3
    python evaluate.py --mode cuts --seeds 3 --env-kwargs max_rounds=100
    python evaluate.py --mode cuts --data-dir ~/data/mnist --env-kwargs preset=mnist

Modes (each writes into its own folder under ``--out``):
  agents   every agent of ``--agents`` (train_agent.py run folders, a glob picks several runs of one
           agent and seed i uses run i mod #runs) next to the references (random, every fixed cut,
           greedy latency, the one-round oracle, and the planner where the configuration has a
           twin), and each but random, oracle and planner again with ``allocation=equal`` (the
           paper's ablation grid: cut policy x optimal/equal resources).
           Default env: SFLEnvAnalytic-v0.
  schemes  SFL-GA, SFL-V1, SFL-V2, PSL and FL on the same seeds, each with its cut chosen by the
           first agent of ``--agents`` (default ``oracle``). Default env: SFLEnv-v0 (real training).
  cuts     every fixed cut of SFL-GA (``cut-1`` ... ``cut-L``). Default env: SFLEnv-v0.
  all      cuts, schemes and agents, then ``claims.md`` from all three.

Protocol: seed i, episode j resets the env with seed 1_000_000 + 1000 i + j for every agent, so all
agents face the same channels and data. Per agent: mean and interquartile mean (IQM) of the per-seed
mean return with 95 % stratified-bootstrap confidence intervals; the paired difference to the best
fixed cut and to the planner on the same seeds (95 % paired-bootstrap CI, probability of improvement);
and the normalised score (R - R_random) / (R_planner - R_random) per seed (the oracle where no planner
ran; none for a seed where the two ends tie).
``--resume`` skips every (agent, config, seed, episode) row already in results.csv. One process writes
an ``--out`` at a time (a lock held while it runs); a second one is refused, naming the first.

This script only parses the command line; the harness is the ``evaluation`` package (protocol,
results, leaderboard, claims, figures).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import agents
from evaluation.benchmark import run_benchmark
from evaluation.protocol import MODES, modes_to_run, plan_mode
from sfl_env.config import parse_overrides
from sfl_env.errors import CorruptFileError
from sfl_env.locking import lock_folder
from sfl_env.storage import WriteError

DEFAULT_OUT = "evaluation-results"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=MODES, default="all")
    parser.add_argument("--agents", default=None,
                        help="comma-separated run folders (globs allowed) and/or baseline names; agents mode "
                             "adds every baseline, schemes mode uses the first as the cut policy (default oracle)")
    parser.add_argument("--model", choices=("best", "final"), default="best",
                        help="which model of a run folder: the best on its validation episodes (default) or the final")
    parser.add_argument("--env-id", default=None, help="default: SFLEnvAnalytic-v0 for agents, SFLEnv-v0 otherwise")
    parser.add_argument("--env-kwargs", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--data-dir", default=None, help="folder of the MNIST / Fashion-MNIST / CIFAR-10 files")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--episodes", type=int, default=1)
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted evaluation in --out")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for name, value in (("--seeds", args.seeds), ("--episodes", args.episodes)):
        if value < 1:
            parser.error(f"{name}={value} is out of range; allowed: an integer >= 1")
    try:
        env_kwargs = parse_overrides(args.env_kwargs)
    except ValueError as error:
        parser.error(str(error))
    if args.data_dir is not None:
        env_kwargs["data_dir"] = args.data_dir
    if args.env_id is not None:
        try:
            agents.check_env_id(args.env_id)
        except ValueError as error:
            parser.error(f"--env-id {error}")

    plan = []
    for mode in modes_to_run(args.mode):
        try:
            plan.append((mode, plan_mode(mode, args.agents, args.env_id, env_kwargs, args.model)))
        except (ValueError, TypeError, FileNotFoundError) as error:
            parser.error(f"{mode}: {error}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        parser.error(f"--out {out} is a file; allowed: a folder (new, or an evaluation to --resume)")
    # one writer per --out; the run folders it plays are only read
    lock = lock_folder(out, "evaluate.py", parser.error, check_write=True)
    try:
        run_benchmark(plan, args.seeds, args.episodes, out, args.resume)
    except (FileExistsError, CorruptFileError) as error:
        parser.error(str(error))
    except WriteError as error:  # a full disk or a read-only folder: the rows written so far are kept
        print(f"error: {error}; the episodes written so far are kept, make room and continue with --resume",
              file=sys.stderr)
        return 1
    finally:
        lock.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())
