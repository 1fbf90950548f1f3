"""Measured throughput traces replayed as the clients' uplinks (``link_trace=<folder>``).

A trace says how many bits one phone's link delivered over time. Two formats, told apart by the file's
suffix; every other file in the folder is ignored (so are Mahimahi's ``*.down`` files: the env's
downlink is the server's transmission, priced from the uplink gains by reciprocity):

- ``*.up``: Mahimahi's (Netravali et al., USENIX ATC 2015): one line per 1500-byte delivery
  opportunity, the line being its millisecond timestamp (non-decreasing). The trace repeats with a
  period of its last timestamp, as Mahimahi replays it.
- ``*.csv``: a header ``time_s,mbps``, then one row per sample: the rate in Mbit/s holds from the row's
  time to the next row's; the last row's holds for the interval before it. Times strictly increase.

Each client replays one trace (a random permutation of the traces, repeated when there are fewer
traces than clients) from its own random offset, and the channel's clock advances by each round's
simulated seconds. A round's throughput is the trace's mean over the ``TRACE_WINDOW_S`` that follow the
clock; where fewer than one packet's bits arrive in the window, it is one packet over the time the
trace takes to deliver it (the link is out: the round waits). The throughput ``R`` is the rate the
client would get over the whole band ``B``, and it sets the client's gain as the SNR that Shannon's
formula needs for it, ``g = (2^(R/B) - 1) B N0 / p``; the solver then shares the band as with the radio
model. Path loss, shadowing and fading are not applied on top: the trace holds them.

The project ships no trace; ``benchmarks/link_statistics.py`` says where public ones are.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ConfigError
from .hardware import WirelessConfig

TRACE_WINDOW_S = 1.0  # seconds of trace a round's throughput averages over
PACKET_BITS = 1500 * 8  # one Mahimahi delivery opportunity
SUFFIXES = (".up", ".csv")


@dataclass(frozen=True)
class ThroughputTrace:
    """One trace as cumulative bits over one period: piecewise linear through ``(times_s, bits)``."""

    name: str
    times_s: np.ndarray
    bits: np.ndarray

    @property
    def period_s(self) -> float:
        return float(self.times_s[-1])

    @property
    def bits_per_period(self) -> float:
        return float(self.bits[-1] - self.bits[0])

    @property
    def mean_bps(self) -> float:
        return self.bits_per_period / self.period_s

    def cumulative_bits(self, t: np.ndarray) -> np.ndarray:
        """Bits delivered from time 0 to ``t`` (any t >= 0: the trace repeats)."""
        laps, within = np.divmod(np.asarray(t, dtype=np.float64), self.period_s)
        return laps * self.bits_per_period + np.interp(within, self.times_s, self.bits)

    def time_to_deliver(self, t: np.ndarray, bits: float) -> np.ndarray:
        """Seconds from ``t`` until the trace has delivered ``bits`` more bits."""
        target = self.cumulative_bits(t) + bits
        laps, left = np.divmod(target - self.bits[0], self.bits_per_period)
        left = left + self.bits[0]
        index = np.clip(np.searchsorted(self.bits, left, side="left"), 1, len(self.bits) - 1)
        low_t, high_t = self.times_s[index - 1], self.times_s[index]
        low_b, high_b = self.bits[index - 1], self.bits[index]
        within = low_t + (high_t - low_t) * (left - low_b) / np.maximum(high_b - low_b, 1e-300)
        return laps * self.period_s + within - np.asarray(t, dtype=np.float64)

    def rate_bps(self, t: np.ndarray, window_s: float = TRACE_WINDOW_S) -> np.ndarray:
        """The throughput at ``t``: the mean over the window that follows, or one packet over the time to
        deliver it where the window holds less than a packet."""
        t = np.asarray(t, dtype=np.float64)
        delivered = self.cumulative_bits(t + window_s) - self.cumulative_bits(t)
        waiting = PACKET_BITS / self.time_to_deliver(t, PACKET_BITS)
        return np.where(delivered >= PACKET_BITS, delivered / window_s, waiting)


def _fail(path: Path, line: int | None, message: str) -> ConfigError:
    where = f"{path}, line {line}" if line is not None else str(path)
    return ConfigError(f"link trace {where}: {message}")


def read_mahimahi(path: Path) -> ThroughputTrace:
    """A Mahimahi trace: one millisecond timestamp per 1500-byte delivery opportunity."""
    stamps: list[int] = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        text = line.strip()
        if not text:
            continue
        if not text.isdigit():
            raise _fail(path, number, f"{text!r} is not a timestamp; allowed: one integer number of "
                                      "milliseconds per line (Mahimahi's format)")
        if stamps and int(text) < stamps[-1]:
            raise _fail(path, number, f"timestamp {text} is earlier than the line before ({stamps[-1]}); "
                                      "allowed: non-decreasing timestamps")
        stamps.append(int(text))
    if not stamps or stamps[-1] <= 0:
        raise _fail(path, None, "holds no delivery after time 0; allowed: at least one timestamp > 0 ms "
                                "(the last timestamp is the trace's period)")
    times, counts = np.unique(np.array(stamps, dtype=np.float64) / 1000.0, return_counts=True)
    cumulative = np.cumsum(counts) * float(PACKET_BITS)
    if times[0] > 0:
        times, cumulative = np.concatenate([[0.0], times]), np.concatenate([[0.0], cumulative])
    return ThroughputTrace(path.name, times, cumulative)


def read_csv(path: Path) -> ThroughputTrace:
    """A ``time_s,mbps`` trace: each row's rate holds until the next row's time."""
    lines = [(n, line.strip()) for n, line in enumerate(path.read_text().splitlines(), start=1) if line.strip()]
    if not lines or lines[0][1].replace(" ", "").lower() != "time_s,mbps":
        raise _fail(path, lines[0][0] if lines else None, "the first line must be the header 'time_s,mbps'")
    times: list[float] = []
    rates: list[float] = []
    for number, text in lines[1:]:
        fields = text.split(",")
        try:
            if len(fields) != 2:
                raise ValueError
            time_s, mbps = float(fields[0]), float(fields[1])
        except ValueError:
            raise _fail(path, number, f"{text!r} is invalid; allowed: two numbers, time_s,mbps") from None
        if not (math.isfinite(time_s) and math.isfinite(mbps) and mbps >= 0):
            raise _fail(path, number, f"{text!r} is out of range; allowed: a finite time and a rate >= 0 Mbit/s")
        if times and time_s <= times[-1]:
            raise _fail(path, number, f"time {time_s:g} s does not follow {times[-1]:g} s; allowed: strictly "
                                      "increasing times")
        times.append(time_s)
        rates.append(mbps * 1e6)
    if len(times) < 2:
        raise _fail(path, None, "needs at least two rows after the header (the last row's rate holds for "
                                "the interval before it)")
    starts = np.array(times) - times[0]
    durations = np.append(np.diff(starts), starts[-1] - starts[-2])
    cumulative = np.concatenate([[0.0], np.cumsum(np.array(rates) * durations)])
    if cumulative[-1] <= 0:
        raise _fail(path, None, "delivers nothing (every rate is 0); allowed: a trace with some throughput")
    return ThroughputTrace(path.name, np.append(starts, starts[-1] + durations[-1]), cumulative)


@functools.cache
def _load_cached(folder: str, stamp: tuple[tuple[str, int, int], ...]) -> tuple[ThroughputTrace, ...]:
    readers = {".up": read_mahimahi, ".csv": read_csv}
    return tuple(readers[Path(name).suffix](Path(folder) / name) for name, _, _ in stamp)


def load_link_traces(folder: str | Path) -> tuple[ThroughputTrace, ...]:
    """Every trace in ``folder`` (``*.up`` and ``*.csv``, by name), read once per change of the files."""
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise ConfigError(f"link_trace={str(folder)!r} is not a folder; allowed: a folder of throughput traces "
                          "(*.up in Mahimahi's format or *.csv with time_s,mbps)")
    files = sorted(p for p in path.iterdir() if p.suffix in SUFFIXES and p.is_file())
    if not files:
        raise ConfigError(f"link_trace={str(folder)!r} holds no trace; allowed: files named *.up (Mahimahi) or "
                          "*.csv (time_s,mbps)")
    stamp = tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in files)
    return _load_cached(str(path.resolve()), stamp)


def gain_for_rate(rate_bps: np.ndarray, wireless: WirelessConfig) -> np.ndarray:
    """The gain at which Shannon's formula over the whole band gives ``rate_bps``:
    ``(2^(R/B) - 1) B N0 / p``."""
    spectral = np.minimum(np.asarray(rate_bps, dtype=np.float64) / wireless.bandwidth_hz, 1000.0)
    return np.expm1(spectral * math.log(2.0)) * wireless.bandwidth_hz * wireless.noise_psd_w_per_hz \
        / wireless.client_power_w


def nominal_trace_gain(num_clients: int, wireless: WirelessConfig,
                       traces: tuple[ThroughputTrace, ...]) -> np.ndarray:
    """The gains of ``num_clients`` typical clients, drawn by no generator: client ``k`` at the mean rate
    of trace ``k mod n`` (by name)."""
    return gain_for_rate(np.array([traces[k % len(traces)].mean_bps for k in range(num_clients)]), wireless)


class TraceChannel:
    """The clients' uplinks replayed from traces: the same interface as :class:`~sfl_env.wireless.Channel`."""

    def __init__(self, num_clients: int, config: WirelessConfig, rng: np.random.Generator,
                 traces: tuple[ThroughputTrace, ...]) -> None:
        self.num_clients, self.config = num_clients, config
        order = rng.permutation(len(traces))
        self.traces = tuple(traces[order[k % len(traces)]] for k in range(num_clients))
        self._offset_s = np.array([rng.uniform(0.0, trace.period_s) for trace in self.traces])
        self._clock_s = 0.0
        self._gain = self._compute_gain()

    def step(self, elapsed_s: float) -> None:
        """Advances every client's trace by the round's ``elapsed_s`` simulated seconds."""
        if math.isfinite(elapsed_s):
            self._clock_s += elapsed_s
        self._gain = self._compute_gain()

    def sample_gains(self, rng: np.random.Generator, samples: int) -> np.ndarray:
        """(samples, K): this round's gains, held (a trace has no distribution to draw from)."""
        return np.broadcast_to(self._gain, (samples, self.num_clients)).copy()

    @property
    def rate_bps(self) -> np.ndarray:
        """Each client's full-band throughput at the clock."""
        return np.array([trace.rate_bps(self._clock_s + offset)
                         for trace, offset in zip(self.traces, self._offset_s)], dtype=np.float64)

    @property
    def gain(self) -> np.ndarray:
        return self._gain

    @property
    def path_gain(self) -> np.ndarray:
        """The gains without fading: this round's (a trace holds no separate fading)."""
        return self._gain.copy()

    def _compute_gain(self) -> np.ndarray:
        gain = gain_for_rate(self.rate_bps, self.config)
        gain.setflags(write=False)
        return gain
