"""Effective training throughput of phone CPUs, from measured on-device training times.

A client's compute is usually modelled as its peak: frequency x FLOPs per cycle (1-2 GHz x 16 = 16-32
GFLOP/s for a NEON core). Measured training runs far below that. This script derives the effective
figure the way the grounded compute model needs it: it counts the training FLOPs of each measured
workload with torch's FLOP counter (forward plus backward, the project's own profiler's method), then
divides by the measured time of one training iteration.

Measurements (read from the trace folder, ``../shared/data/traces`` beside the repository by default):

- FLASH (Yang et al., "Characterizing Impacts of Heterogeneity in Federated Learning upon Large-Scale
  Smartphone Data", WWW 2021; BSD-2-Clause): per-batch training time of LEAF's FEMNIST CNN with DL4J on
  three phones (``flash/train_time_per_batch_ms.csv``). Assumed: batch 10 (FLASH's default) and
  LEAF's "same" padding; the README of the trace folder says why.
- MNN on-device training benchmark (Cai et al., "Towards Ubiquitous Learning: A First Measurement of
  On-Device Training Performance", EMDL 2021; Apache-2.0): ms per training iteration by batch size of
  LeNet on a Xiaomi Mi 9 (default governor) and a Meizu 16T pinned at 1.7088 GHz
  (``ondevice_training_mnn/*/time_table_Lenet.csv``).

    python benchmarks/device_throughput.py [--traces ../shared/data/traces]
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

DEFAULT_TRACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "traces"
FLASH_BATCH = 10  # FLASH's default batch size; not stated next to the measured times
PEAK_GFLOPS = (16.0, 32.0)  # 1-2 GHz x 16 FP32 FLOPs per cycle (two 128-bit NEON FMA pipelines)


def femnist_cnn() -> nn.Module:
    """LEAF's FEMNIST CNN (28x28x1 -> 62 classes), the workload FLASH measured."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(7 * 7 * 64, 2048), nn.ReLU(), nn.Linear(2048, 62),
    )


def lenet() -> nn.Module:
    """Caffe's LeNet (28x28x1 -> 10 classes: conv 20, pool, conv 50, pool, fc 500, fc 10), MNN's LeNet."""
    return nn.Sequential(
        nn.Conv2d(1, 20, 5), nn.MaxPool2d(2), nn.Conv2d(20, 50, 5), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(4 * 4 * 50, 500), nn.ReLU(), nn.Linear(500, 10),
    )


def training_flops_per_sample(model: nn.Module, input_shape: tuple[int, ...], batch: int = 4) -> float:
    """Forward plus backward FLOPs of one sample, counted by torch's FLOP counter."""
    x = torch.randn(batch, *input_shape)
    with FlopCounterMode(display=False) as counter:
        model(x).sum().backward()
    return counter.get_total_flops() / batch


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        return list(csv.DictReader(line for line in file if not line.startswith("#")))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--traces", type=Path, default=DEFAULT_TRACES, help="the measured traces folder")
    args = parser.parse_args(argv)
    flash = args.traces / "flash" / "train_time_per_batch_ms.csv"
    mnn = args.traces / "ondevice_training_mnn"
    if not flash.is_file() or not mnn.is_dir():
        print(f"error: no measured traces in {args.traces} (expected flash/ and ondevice_training_mnn/)",
              file=sys.stderr)
        return 2

    torch.manual_seed(0)
    femnist = training_flops_per_sample(femnist_cnn(), (1, 28, 28))
    print(f"FEMNIST CNN: {femnist / 1e6:.1f} MFLOP per training sample (counted); FLASH, DL4J, batch {FLASH_BATCH}")
    print(f"{'device':26s} {'ms/batch':>9s} {'std':>6s} {'GFLOP/s':>8s} {'of peak':>9s}")
    for row in _rows(flash):
        if row["workload"] != "femnist_cnn":
            continue
        ms, std = float(row["mean_ms"]), float(row["std_ms"])
        gflops = femnist * FLASH_BATCH / (ms / 1000.0) / 1e9
        print(f"{row['device']:26s} {ms:9.0f} {std:6.1f} {gflops:8.2f} "
              f"{100 * gflops / PEAK_GFLOPS[1]:4.0f}-{100 * gflops / PEAK_GFLOPS[0]:.0f} %")

    per_sample = training_flops_per_sample(lenet(), (1, 28, 28))
    print(f"\nLeNet: {per_sample / 1e6:.2f} MFLOP per training sample (counted); MNN, GFLOP/s by batch size")
    print(f"{'device':26s} " + " ".join(f"{'b=' + str(b):>7s}" for b in (1, 4, 16, 32)))
    for folder, name in (("XIAOMI", "Xiaomi Mi 9"), ("MEIZU_Freq_1708800", "Meizu 16T @1.71 GHz")):
        path = mnn / folder / "time_table_Lenet.csv"
        if not path.is_file():
            continue
        by_batch = {int(r["batchsize"]): float(r["expr_train"]) for r in _rows(path)}
        cells = [f"{per_sample * b / (by_batch[b] / 1000.0) / 1e9:7.2f}" if b in by_batch else f"{'-':>7s}"
                 for b in (1, 4, 16, 32)]
        print(f"{name:26s} " + " ".join(cells))
    print(f"\npeak NEON, the model's current clients: {PEAK_GFLOPS[0]:.0f}-{PEAK_GFLOPS[1]:.0f} GFLOP/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
