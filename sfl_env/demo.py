"""Trains one SFL scheme for N rounds at a fixed cut on a preset and prints each round.

    python -m sfl_env.demo                       # SFL-GA on the default (shapes, VGG-11), K=10, cut 1
    python -m sfl_env.demo --preset digits       # the tiny preset: a few seconds
    python -m sfl_env.demo --scheme psl --cut 2 --rounds 50
    python -m sfl_env.demo --set model=mlp lr=0.1 num_clients=20
"""

from __future__ import annotations

import argparse
import sys
import time

from .config import DEFAULT_PRESET, PRESETS, EnvConfig, SFLConfig, parse_overrides
from .ledger import round_cost
from .schemes import get_scheme
from .training import build_trainer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default=DEFAULT_PRESET)
    parser.add_argument("--scheme", default=None, help="sfl-ga (default), sfl-v1, sfl-v2, psl or fl")
    parser.add_argument("--cut", type=int, default=1, help="number of blocks on the clients (default 1)")
    parser.add_argument("--rounds", type=int, default=70)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target", type=float, default=None,
                        help="report the first round at this accuracy (default: the preset's target)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="any SFLConfig option")
    args = parser.parse_args(argv)
    try:
        overrides = parse_overrides(args.set)
        if args.scheme is not None:
            overrides["scheme"] = args.scheme
        config = SFLConfig.from_kwargs(preset=args.preset, **overrides)
        if args.target is None:
            args.target = EnvConfig.from_kwargs(preset=args.preset).target_accuracy
        trainer = build_trainer(config, seed=args.seed)
        if get_scheme(config.scheme).splits_model:
            trainer.model.check_cut(args.cut)
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    model, scheme = trainer.model, get_scheme(config.scheme)
    print(f"{config.scheme} on {config.dataset}: {config.model} ({model.num_blocks} blocks), "
          f"K={config.num_clients} {config.partition}, cut {args.cut} ({model.cut_names[args.cut - 1]})")
    print(f"{'round':>5} {'loss':>8} {'test acc':>9} {'up Mbit':>9} {'down Mbit':>10} {'time s':>7}")
    reached = None
    for _ in range(args.rounds):
        start = time.perf_counter()
        cost = round_cost(trainer.profile, scheme, scheme.client_cut(args.cut, model.num_blocks),
                          trainer.cut, num_clients=config.num_clients, local_iters=config.local_iters,
                          batch_size=config.batch_size, gradient_aggregation=config.gradient_aggregation)
        outcome = trainer.run_round(args.cut)
        acc = f"{outcome.test_accuracy:.3f}" if outcome.evaluated else "-"
        print(f"{outcome.round_index:>5} {outcome.train_loss:>8.4f} {acc:>9} {cost.bits_up / 1e6:>9.2f} "
              f"{cost.bits_down / 1e6:>10.2f} {time.perf_counter() - start:>7.3f}")
        if outcome.diverged:
            print("training diverged; stopping")
            return 1
        if reached is None and outcome.test_accuracy >= args.target:
            reached = outcome.round_index
    print(f"rounds to {args.target:.0%} test accuracy: {reached if reached else f'not within {args.rounds}'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
