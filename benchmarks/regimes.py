"""Which regime each preset sits in: every scheme's seconds per round, by phase, and to the target.

For each preset, prices one round of every scheme at every cut with the project's own ledger, latency
model and optimal allocation (no training), averaged over ``--draws`` independent channel and client
CPU draws, and prints seconds by phase, the round total, the rounds to the preset's target under its calibrated twin (median over its fluctuation; inf where the
twin never gets there) and their product, the estimated seconds to target, for every scheme and cut;
then each scheme's best seconds to target. The ratio FL / SFL-GA of the round latency (each at its
fastest cut) says whether split learning is the right tool there (>= 2: clearly; < 1: FL wins every
round).

    python benchmarks/regimes.py [--presets shapes,digits,mnist] [--draws 100] [--data-dir DIR]

File presets (mnist, fashion-mnist, cifar10) need ``--data-dir`` and are skipped without it.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path

import numpy as np

from sfl_env.config import FILE_DATASETS, PRESETS, EnvConfig
from sfl_env.data import load_config_dataset
from sfl_env.latency import PHASES, allocation_problem, round_latency
from sfl_env.ledger import round_cost
from sfl_env.models import build_model
from sfl_env.profiling import profile_model
from sfl_env.schemes import SCHEMES, get_scheme
from sfl_env.training.analytic import calibration_for
from sfl_env.availability import ClientDevices, CpuAvailability
from sfl_env.wireless import Channel
from solvers import solve


def seconds_per_round(config: EnvConfig, draws: int, seed: int = 0) -> dict[tuple[str, int], dict[str, float]]:
    """Mean seconds per phase (and ``total``) of one round, by (scheme, cut), over ``draws`` draws."""
    system = config.system
    data = load_config_dataset(system)
    profile = profile_model(build_model(system.model, data.input_shape, data.num_classes, **system.model_options))
    rng = np.random.default_rng(seed)
    states = []
    for _ in range(draws):
        channel = Channel(system.num_clients, config.wireless, rng)
        cpus = CpuAvailability(ClientDevices.draw(system.num_clients, config.compute, rng), config.compute, rng)
        states.append((channel.gain, cpus.cpu_hz, cpus.cycles_per_flop))
    out = {}
    for name in SCHEMES:
        scheme = get_scheme(name)
        cuts = range(1, profile.num_blocks) if scheme.splits_model else [profile.num_blocks]
        for cut in cuts:
            cost = round_cost(profile, scheme, cut, cut, num_clients=system.num_clients,
                              local_iters=system.local_iters, batch_size=system.batch_size,
                              gradient_aggregation=system.gradient_aggregation)
            totals = dict.fromkeys((*PHASES, "total"), 0.0)
            for gain, cpu_hz, per_flop in states:
                problem = allocation_problem(cost, gain, cpu_hz, config.wireless, config.compute,
                                             client_cycles_per_flop=per_flop)
                shares = solve(problem)
                latency = round_latency(cost, bandwidth_share=shares.bandwidth_share,
                                        server_cpu_share=shares.server_cpu_share, uplink_gain=gain,
                                        client_cpu_hz=cpu_hz, wireless=config.wireless, compute=config.compute,
                                        client_cycles_per_flop=per_flop)
                for phase, seconds in latency.phases.items():
                    totals[phase] += seconds / draws
                totals["total"] += latency.total_s / draws
            out[name, cut] = totals
    return out


def calibrated_rounds(config: EnvConfig, scheme: str, cut: int) -> float:
    """Median rounds to the target at a fixed cut under the calibrated twin (NaN without one)."""
    try:
        curve = calibration_for(dataclasses.replace(config.system, scheme=scheme, lr=None)).curve
    except ValueError:
        return math.nan
    return curve.rounds_to(config.target_accuracy, cut if get_scheme(scheme).splits_model else 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default=",".join(PRESETS))
    parser.add_argument("--draws", type=int, default=100)
    parser.add_argument("--data-dir", default=None, help="folder with the file presets' data (one folder per preset "
                                                         "name inside it, or the files themselves)")
    args = parser.parse_args()
    short = {"client_forward": "fwd", "uplink": "up", "server": "server", "gradient_downlink": "down",
             "client_backward": "bwd", "model_aggregation": "model", "migration": "migr"}
    for preset in args.presets.split(","):
        dataset = PRESETS[preset].get("dataset", "shapes")
        kwargs = {}
        if dataset in FILE_DATASETS:
            if args.data_dir is None:
                print(f"\n{preset}: skipped (needs --data-dir)")
                continue
            folder = Path(args.data_dir)
            kwargs["data_dir"] = str(folder / dataset if (folder / dataset).is_dir() else folder)
        config = EnvConfig.from_kwargs(preset=preset, **kwargs)
        system = config.system
        table = seconds_per_round(config, args.draws)
        print(f"\n{preset}: {system.dataset}/{system.model} (width {system.model_width:g}), K={system.num_clients}, "
              f"I={system.local_iters}, b={system.batch_size}, target {config.target_accuracy:.0%}; "
              f"mean of {args.draws} draws, optimal allocation, seconds")
        print(f"{'scheme':8s} {'cut':>3s} " + " ".join(f"{short[p]:>7s}" for p in PHASES)
              + f" {'round':>7s} {'rounds':>7s} {'to target':>9s}")
        best_round, best_time = {}, {}
        for name in SCHEMES:
            for cut in sorted(c for s, c in table if s == name):
                row = table[name, cut]
                rounds = calibrated_rounds(config, name, cut)
                seconds = rounds * row["total"]
                best_round[name] = min(best_round.get(name, math.inf), row["total"])
                if not math.isnan(seconds) and seconds < best_time.get(name, (math.inf,))[0]:
                    best_time[name] = (seconds, cut, rounds)
                label = "-" if not get_scheme(name).splits_model else str(cut)
                print(f"{name:8s} {label:>3s} " + " ".join(f"{row[p]:7.3f}" for p in PHASES)
                      + f" {row['total']:7.3f} {rounds:7.0f} {seconds:9.1f}")
        if best_time:
            print("best seconds to target: " + ", ".join(
                f"{name} {seconds:.1f} s ({f'cut {cut}, ' if get_scheme(name).splits_model else ''}{rounds:.0f} rounds)"
                for name, (seconds, cut, rounds)
                in sorted(best_time.items(), key=lambda item: item[1][0])))
        best = best_round
        print(f"FL / SFL-GA (best cut) round latency: {best['fl'] / best['sfl-ga']:.2f}")


if __name__ == "__main__":
    main()
