"""A probe, not a model: how much time the next decisions could save over the best fixed common cut.

With grounded devices and links the common cut of the default task has little headroom
(``benchmarks/headroom.py``). This probe estimates, on the same cell (the preset's devices, governor,
shadowing and fading, stepped through an episode's states), what three richer decisions could gain over
the best fixed common cut, in seconds per unit of the twin's progress:

- **adaptive common cut**: the cut with the least latency per unit of progress in each round (the
  myopic rule of the grounded-dynamics issue);
- **per-client cuts**: each client its own cut in each round, the assignment with the least latency per
  unit of progress (exhaustive over the cuts given by ``--cuts``);
- **client selection**: each round, only the ``n`` clients that finish first take part, with ``n``
  chosen per round.

Everything the twin does not model is an assumption of the probe, stated here and printed:

- rounds are priced under an equal split of the band and the server (no solver), for every decision
  alike;
- a round with per-client cuts broadcasts one aggregated gradient per distinct cut (each over the whole
  downlink) and lasts ``I (max_k [t_F + t_U + t_S] + broadcasts + max_k t_B) + max_k`` (model
  aggregation at its cut); its progress is the mean of the clients' cut speeds;
- a round with ``n`` of ``K`` clients makes ``(n / K)^alpha`` of the progress, for ``alpha`` in
  ``--alphas`` (1: progress in proportion to the data seen; 0.5: diminishing returns of a larger batch);
- time to target is proportional to seconds per unit of progress, averaged over the episode's states.

    python benchmarks/decision_probe.py [--preset shapes] [--seeds 20] [--rounds 100] [--cuts 1,2]
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np

from sfl_env.availability import ClientDevices, CpuAvailability
from sfl_env.config import EnvConfig
from sfl_env.data import dataset_shape
from sfl_env.latency import round_latency
from sfl_env.ledger import round_cost
from sfl_env.models import build_model
from sfl_env.profiling import profile_model
from sfl_env.schemes import get_scheme
from sfl_env.training.calibration import calibration_for
from sfl_env.wireless import Channel


def cut_seconds(config: EnvConfig, profile, cut: int, gain, cpu_hz, per_flop) -> dict[str, np.ndarray | float]:
    """Per-client seconds of one round at ``cut`` under an equal split (stage 1 and client backward per
    iteration, the gradient broadcast, and the round's model aggregation)."""
    system, scheme = config.system, get_scheme(config.system.scheme)
    cost = round_cost(profile, scheme, cut, cut, num_clients=system.num_clients, local_iters=system.local_iters,
                      batch_size=system.batch_size, gradient_aggregation=system.gradient_aggregation)
    k = system.num_clients
    latency = round_latency(cost, bandwidth_share=np.full(k, 1 / k), server_cpu_share=np.full(k, 1 / k),
                            uplink_gain=gain, client_cpu_hz=cpu_hz, wireless=config.wireless,
                            compute=config.compute, client_cycles_per_flop=per_flop)
    return {"first": latency.client_forward_s + latency.uplink_s + latency.server_s,
            "broadcast": float(latency.gradient_downlink_s.max()), "backward": latency.client_backward_s,
            "aggregation": latency.phases["model_aggregation"], "total": latency.total_s}


def round_with_cuts(seconds: dict[int, dict], assignment: tuple[int, ...], iters: int) -> float:
    """Seconds of a round where client k trains at ``assignment[k]`` (the probe's assumption above)."""
    first = max(seconds[c]["first"][k] for k, c in enumerate(assignment))
    backward = max(seconds[c]["backward"][k] for k, c in enumerate(assignment))
    broadcasts = sum(seconds[c]["broadcast"] for c in set(assignment))
    return iters * (first + broadcasts + backward) + max(seconds[c]["aggregation"] for c in set(assignment))


def probe(preset: str, seeds: int, rounds: int, cuts: list[int], alphas: list[float]) -> dict[str, list[float]]:
    config = EnvConfig.from_kwargs(preset=preset)
    system = config.system
    profile = profile_model(build_model(system.model, *dataset_shape(system), **system.model_options))
    speed = {cut: calibration_for(system).curve.speed[cut - 1] for cut in cuts}
    k, iters = system.num_clients, system.local_iters
    assignments = list(itertools.product(cuts, repeat=k))
    results: dict[str, list[float]] = {f"fixed cut {c}": [] for c in cuts}
    results |= {"adaptive common cut": [], "per-client cuts": []}
    results |= {f"client selection, alpha {a}": [] for a in alphas}
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        channel = Channel(k, config.wireless, rng)
        cpus = CpuAvailability(ClientDevices.draw(k, config.compute, rng), config.compute, rng)
        per_round = {name: [] for name in results}
        for _ in range(rounds):
            seconds = {c: cut_seconds(config, profile, c, channel.gain, cpus.cpu_hz, cpus.cycles_per_flop)
                       for c in cuts}
            common = {c: seconds[c]["total"] / speed[c] for c in cuts}
            for c in cuts:
                per_round[f"fixed cut {c}"].append(common[c])
            per_round["adaptive common cut"].append(min(common.values()))
            per_round["per-client cuts"].append(min(
                round_with_cuts(seconds, a, iters) / np.mean([speed[c] for c in a]) for a in assignments))
            best = min(cuts, key=common.get)
            finish = iters * (seconds[best]["first"] + seconds[best]["backward"])
            order = np.argsort(finish)
            for alpha in alphas:
                options = []
                for n in range(1, k + 1):
                    chosen = order[:n]
                    latency = iters * (seconds[best]["first"][chosen].max() + seconds[best]["broadcast"]
                                       + seconds[best]["backward"][chosen].max()) + seconds[best]["aggregation"]
                    options.append(latency / (speed[best] * (n / k) ** alpha))
                per_round[f"client selection, alpha {alpha}"].append(min(options))
            channel.step(seconds[cuts[0]]["total"])
            cpus.step()
        for name, values in per_round.items():
            results[name].append(float(np.mean(values)))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="shapes")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--cuts", default="1,2", help="the cuts each decision may choose from")
    parser.add_argument("--alphas", default="1,0.5")
    args = parser.parse_args()
    start = time.perf_counter()
    cuts = [int(c) for c in args.cuts.split(",")]
    results = probe(args.preset, args.seeds, args.rounds, cuts, [float(a) for a in args.alphas.split(",")])
    fixed = {name: np.mean(v) for name, v in results.items() if name.startswith("fixed")}
    best = min(fixed, key=fixed.get)
    reference = np.array(results[best])
    print(f"# Decision probe on {args.preset}: seconds per unit of progress, {args.seeds} seeds x {args.rounds} "
          f"rounds, cuts {cuts}\n")
    print(f"Best fixed common cut: {best}. Saving = 1 - (decision's seconds per unit of progress) / (best fixed "
          "cut's), per seed; mean [min, max] over seeds.\n")
    print("| decision | s per unit of progress | saving over the best fixed cut |")
    print("|---|---|---|")
    for name, values in results.items():
        saving = 1.0 - np.array(values) / reference
        print(f"| {name} | {np.mean(values):.3f} | {100 * saving.mean():+.1f} % "
              f"[{100 * saving.min():+.1f}, {100 * saving.max():+.1f}] |")
    print(f"\n({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
