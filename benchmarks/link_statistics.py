"""How the simulated links vary over time, side by side with measured cellular throughput.

For each mobility (pedestrian 3 km/h, the default; vehicular 30 km/h, the vehicular task) it steps the
cell's channel through ``--seconds`` of simulated time in rounds of ``--round-s`` and prints, per client
and over clients and seeds (median and 10th-90th percentile):

- the client's uplink throughput at an equal share of the band (``B / K``): mean, CV over time, and
  autocorrelation at 1 s and 10 s (the series is read on a 1 s grid);
- the cell's worst client's throughput, which limits the broadcast downlink;
- what survives into the round: the round latency of a fixed cut under the resource solver, on the
  analytic twin with the clients' devices and governors (``--cut``).

Measured ranges it compares with (``../shared/docs/grounding.md``): LTE uplink in Mahimahi's cellular
traces (Winstein et al., NSDI 2013): CV 0.42-0.89, autocorrelation 0.40-0.89 at 1 s and 0.12-0.69 at
10 s; NYU-METS (LTE iPerf every 1 s on buses, subways, ferries and trains): CV 0.69, autocorrelation
0.86 at 1 s and 0.61 at 10 s. Both were measured in moving vehicles, so the vehicular row is the one
to hold against them; a pedestrian's shadowing moves ten times slower.

``--abstraction`` and ``--noise-figure-db`` probe a link-level abstraction in the channel rows only (the
env keeps Shannon's formula): ``truncated-dl`` / ``truncated-ul`` is 3GPP TR 36.942 A.1's attenuated,
truncated Shannon bound (alpha 0.6, at most 4.4 bit/s/Hz / alpha 0.4, at most 2.0; nothing below -10 dB),
and the noise figure raises the receiver's noise (5 dB: a base station).

``--link-trace DIR`` adds a row for the clients replaying the traces in ``DIR`` (sfl_env.link_traces):
e.g. Mahimahi's ``traces/`` folder (GPL-3.0, not shipped here: github.com/ravinet/mahimahi).

    python benchmarks/link_statistics.py [--seeds 5] [--seconds 1200] [--round-s 0.5] [--cut 0]
    python benchmarks/link_statistics.py --abstraction truncated-dl --noise-figure-db 5
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import gymnasium as gym
import numpy as np

import sfl_env  # noqa: F401  (registers the ids)
from sfl_env.config import EnvConfig
from sfl_env.link_traces import TraceChannel, load_link_traces
from sfl_env.wireless import Channel, uplink_rate_bps

MEASURED = {"cv": (0.42, 0.89), "ac_1s": (0.40, 0.89), "ac_10s": (0.12, 0.69)}
ABSTRACTIONS = {"shannon": None, "truncated-dl": (0.6, -10.0, 4.4), "truncated-ul": (0.4, -10.0, 2.0)}
MOBILITIES = {"pedestrian (3 km/h)": {"speed_km_h": 3.0}, "vehicular (30 km/h)": {"speed_km_h": 30.0}}


def on_grid(times_s: np.ndarray, values: np.ndarray, step_s: float = 1.0) -> np.ndarray:
    """The value in force at every ``step_s`` of simulated time (values[i] holds from times_s[i] on)."""
    grid = np.arange(times_s[0], times_s[-1], step_s)
    index = np.searchsorted(times_s, grid, side="right") - 1
    return values[index]


def statistics(series: np.ndarray) -> dict[str, float]:
    """Mean, CV and autocorrelation at 1 s and 10 s of a series on a 1 s grid."""
    def autocorrelation(lag: int) -> float:
        a, b = series[:-lag], series[lag:]
        return float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else float("nan")
    return {"mean": float(series.mean()), "cv": float(series.std() / series.mean()),
            "ac_1s": autocorrelation(1), "ac_10s": autocorrelation(10)}


def spectral_efficiency(snr: np.ndarray, abstraction: str) -> np.ndarray:
    """Bit/s/Hz at ``snr`` (linear): Shannon's bound, or TR 36.942 A.1's attenuated, truncated one."""
    if ABSTRACTIONS[abstraction] is None:
        return np.log2(1 + snr)
    alpha, floor_db, cap = ABSTRACTIONS[abstraction]
    return np.where(10 * np.log10(snr) < floor_db, 0.0, np.minimum(alpha * np.log2(1 + snr), cap))


def channel_series(options: dict[str, Any], seed: int, seconds: float, round_s: float,
                   link_trace: str | None = None, abstraction: str = "shannon",
                   noise_figure_db: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Per-client equal-share throughput (K, steps) on a 1 s grid and the worst client's (steps,)."""
    config = EnvConfig.from_kwargs(**options)
    wireless, num_clients = config.wireless, config.system.num_clients
    rng = np.random.default_rng(seed)
    channel = Channel(num_clients, wireless, rng) if link_trace is None \
        else TraceChannel(num_clients, wireless, rng, load_link_traces(link_trace))
    steps = int(seconds / round_s)
    rates = np.empty((steps, num_clients))
    for i in range(steps):
        if abstraction == "shannon" and noise_figure_db == 0.0:
            rates[i] = uplink_rate_bps(np.full(num_clients, 1.0 / num_clients), channel.gain,
                                       wireless.client_power_w, wireless.bandwidth_hz, wireless.noise_psd_w_per_hz)
        else:
            share_hz = wireless.bandwidth_hz / num_clients
            noise_w = share_hz * wireless.noise_psd_w_per_hz * 10 ** (noise_figure_db / 10)
            rates[i] = share_hz * spectral_efficiency(wireless.client_power_w * channel.gain / noise_w, abstraction)
        channel.step(round_s)
    times = np.arange(steps) * round_s
    per_client = np.stack([on_grid(times, rates[:, k]) for k in range(num_clients)])
    return per_client, on_grid(times, rates.min(axis=1))


def round_series(options: dict[str, Any], seed: int, seconds: float, cut: int) -> np.ndarray:
    """Round latency of a fixed cut on the twin (no budget, an unreachable target) on a 1 s grid."""
    env = gym.make("SFLEnvAnalytic-v0", **options, target_accuracy=1.0, time_budget_s=None, max_rounds=100_000)
    env.reset(seed=seed)
    times, latency = [0.0], []
    while times[-1] < seconds:
        _, _, terminated, truncated, info = env.step(cut)
        latency.append(info["latency_s"])
        times.append(info["elapsed_s"])
        if terminated or truncated:
            break
    env.close()
    return on_grid(np.array(times[:-1]), np.array(latency))


def summary(rows: list[dict[str, float]]) -> dict[str, tuple[float, float, float]]:
    return {key: tuple(np.nanpercentile([row[key] for row in rows], [50, 10, 90])) for key in rows[0]}


def print_row(label: str, stats: dict[str, tuple[float, float, float]], unit: float = 1e6) -> None:
    def cell(key: str, scale: float = 1.0) -> str:
        median, low, high = (value / scale for value in stats[key])
        inside = "" if key not in MEASURED else (" in" if MEASURED[key][0] <= median <= MEASURED[key][1] else " OUT")
        return f"{median:.2f} [{low:.2f}, {high:.2f}]{inside}"
    print(f"| {label} | {cell('mean', unit)} | {cell('cv')} | {cell('ac_1s')} | {cell('ac_10s')} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1200.0, help="simulated seconds per seed")
    parser.add_argument("--round-s", type=float, default=0.5, help="round length for the channel rows")
    parser.add_argument("--cut", type=int, default=0, help="the fixed cut index of the round-latency row (0: cut 1)")
    parser.add_argument("--round-seconds", type=float, default=300.0, help="simulated seconds of the twin rows")
    parser.add_argument("--link-trace", default=None, help="a folder of traces to add as a row")
    parser.add_argument("--abstraction", choices=list(ABSTRACTIONS), default="shannon",
                        help="link-level abstraction of the channel rows (the env uses shannon)")
    parser.add_argument("--noise-figure-db", type=float, default=0.0, help="receiver noise figure of the channel rows")
    args = parser.parse_args()
    start = time.perf_counter()
    lo, hi = MEASURED["cv"], MEASURED["ac_1s"]
    print(f"Measured LTE uplink (Mahimahi): CV {lo[0]}-{lo[1]}, autocorrelation {hi[0]}-{hi[1]} at 1 s, "
          f"{MEASURED['ac_10s'][0]}-{MEASURED['ac_10s'][1]} at 10 s; NYU-METS: 0.69, 0.86, 0.61.")
    print(f"Simulated: median [10th, 90th percentile] over clients x {args.seeds} seeds; 'in' / 'OUT': the "
          "median against the Mahimahi range.\n")
    print("| series | mean (Mbit/s; round: s) | CV | autocorrelation 1 s | autocorrelation 10 s |")
    print("|---|---|---|---|---|")
    cases = [(name, options, None) for name, options in MOBILITIES.items()]
    if args.link_trace is not None:
        cases.append((f"traces in {args.link_trace}", {}, args.link_trace))
    for name, options, trace in cases:
        clients, worst, rounds = [], [], []
        for seed in range(args.seeds):
            per_client, cell_worst = channel_series(options, seed, args.seconds, args.round_s, trace,
                                                    args.abstraction, args.noise_figure_db)
            clients.extend(statistics(series) for series in per_client)
            worst.append(statistics(cell_worst))
            if trace is None:
                rounds.append(statistics(round_series(options, seed, args.round_seconds, args.cut)))
        print_row(f"{name}: one client, equal share", summary(clients))
        print_row(f"{name}: worst client of the cell", summary(worst))
        if rounds:
            print_row(f"{name}: round latency at cut index {args.cut}, solver", summary(rounds), unit=1.0)
    print(f"\n({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
