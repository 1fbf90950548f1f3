"""Overhead of split training: one SFL-GA round vs plain training of the same model on the same samples.

A round of SFL-GA with K clients runs ``local_iters`` iterations, each on K batches of ``batch_size``.
The reference is ordinary unsplit training of the same architecture on exactly those samples,
concatenated into one batch of K * batch_size, for the same number of optimizer steps. Test
evaluation is excluded from both. Prints the median wall time of each and their ratio per cut.

    python benchmarks/round_overhead.py [--rounds 20] [--scheme sfl-ga] [--set model=vgg11 ...]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from sfl_env.config import SFLConfig
from sfl_env.config import parse_overrides
from sfl_env.models import build_model
from sfl_env.schemes import get_scheme
from sfl_env.training import build_trainer
from sfl_env.training.real import per_sample_loss

TARGET = 1.5


class RecordingSampler:
    """Wraps the trainer's sampler and keeps every batch it hands out, for the plain-training replay."""

    def __init__(self, inner):
        self.inner, self.batches = inner, []

    def next_batch(self):
        batch = self.inner.next_batch()
        self.batches.append(batch)
        return batch


def time_split_round(trainer, cut: int) -> float:
    start = time.perf_counter()
    trainer.run_round(cut)
    return time.perf_counter() - start


def time_plain_round(model, optimizer, x, y, batches) -> float:
    start = time.perf_counter()
    for idx in batches:
        idx = idx.reshape(-1)
        optimizer.zero_grad(set_to_none=True)
        per_sample_loss(model(x[idx]), y[idx]).mean().backward()  # a label, or a window of next tokens
        optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--scheme", default="sfl-ga")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    config = SFLConfig.from_kwargs(**({"scheme": args.scheme, "eval_every": 10**9} | parse_overrides(args.set)))

    trainer = build_trainer(config, seed=0)
    sampler = trainer.sampler = RecordingSampler(trainer.sampler)
    plain = build_model(config.model, trainer.model.input_shape, trainer.model.num_classes,
                        **config.model_options).to(trainer.device)
    optimizer = torch.optim.SGD(plain.parameters(), lr=config.lr)
    print(f"{config.scheme}: {config.model} on {config.dataset}, K={config.num_clients}, "
          f"batch {config.batch_size} per client, {config.local_iters} local iterations, "
          f"{torch.get_num_threads()} torch threads")
    print(f"{'cut':>4} {'split round ms':>15} {'plain ms':>9} {'ratio':>6}")
    worst = 0.0
    cuts = trainer.model.cuts if get_scheme(config.scheme).splits_model else (trainer.model.num_blocks,)
    for cut in cuts:
        split, reference = [], []
        for i in range(args.warmup + args.rounds):
            sampler.batches.clear()
            t_split = time_split_round(trainer, cut)
            t_plain = time_plain_round(plain, optimizer, trainer.x_train, trainer.y_train, sampler.batches)
            if i >= args.warmup:
                split.append(t_split)
                reference.append(t_plain)
        ratio = statistics.median(split) / statistics.median(reference)
        worst = max(worst, ratio)
        print(f"{cut:>4} {statistics.median(split) * 1e3:>15.2f} {statistics.median(reference) * 1e3:>9.2f} "
              f"{ratio:>6.2f}")
    print(f"worst ratio {worst:.2f} (target <= {TARGET}): {'met' if worst <= TARGET else 'NOT met'}")


if __name__ == "__main__":
    main()
