"""evaluation.figures: every figure writes a PNG from plain traces, without warnings, and closes itself."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from evaluation import figures  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _trace(agent: str, seed_index: int, rounds: int, cut: int) -> dict:
    rng = np.random.default_rng(seed_index)
    accuracy: list[float | None] = list(np.minimum(0.1 + 0.08 * np.arange(rounds), 0.95))
    accuracy[0] = None  # not evaluated before the first round's end
    for r in range(2, rounds, 3):
        accuracy[r] = math.nan  # evaluated every few rounds only
    return {
        "agent": agent,
        "seed_index": seed_index,
        "episode": 0,
        "cuts": [cut + int(rng.integers(0, 2)) for _ in range(rounds)],
        "accuracy": accuracy,
        "latency_s": list(rng.uniform(0.5, 2.0, size=rounds)),
        "bits_up": list(rng.uniform(1e6, 2e6, size=rounds)),
        "bits_down": list(rng.uniform(5e5, 1e6, size=rounds)),
    }


TRACES = [
    _trace("ddqn", 0, 12, 2),
    _trace("ddqn", 1, 7, 3),
    _trace("fixed-middle", 0, 15, 4),
    _trace("fixed-middle", 1, 1, 4),
]

SWEEP = [
    {"cut": 1, "rounds_to_target": 12.0, "seconds_to_target": 30.0, "final_accuracy": 0.91},
    {"cut": 1, "rounds_to_target": 14.0, "seconds_to_target": 33.0, "final_accuracy": 0.90},
    {"cut": 2, "rounds_to_target": 10.0, "seconds_to_target": 21.0, "final_accuracy": 0.92},
    {"cut": 2, "rounds_to_target": math.nan, "seconds_to_target": math.nan, "final_accuracy": 0.85},
    {"cut": 3, "rounds_to_target": math.nan, "seconds_to_target": math.nan, "final_accuracy": 0.70},
    {"cut": 3, "rounds_to_target": math.nan, "seconds_to_target": math.nan, "final_accuracy": 0.72},
]

DRAWINGS = {
    "accuracy_vs_round": lambda path: figures.accuracy_vs_round(TRACES, path, target=0.9),
    "accuracy_vs_round_no_target": lambda path: figures.accuracy_vs_round(TRACES, path),
    "accuracy_vs_latency": lambda path: figures.accuracy_vs_latency(TRACES, path, target=0.9),
    "cumulative_bits": lambda path: figures.cumulative_bits(TRACES, path),
    "cuts_over_rounds": lambda path: figures.cuts_over_rounds(TRACES, path),
    "cut_sweep": lambda path: figures.cut_sweep(SWEEP, path),
}


@pytest.mark.parametrize("name", DRAWINGS)
def test_figure_is_a_png_drawn_without_warnings_and_closed(name, tmp_path):
    path = tmp_path / "nested" / f"{name}.png"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        written = DRAWINGS[name](path)
    assert Path(written) == path
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 1024
    assert plt.get_fignums() == []


@pytest.mark.parametrize("name", ["accuracy_vs_round", "accuracy_vs_latency", "cumulative_bits", "cuts_over_rounds"])
def test_trace_figures_accept_no_traces(name, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        getattr(figures, name)([], tmp_path / "empty.png")
    assert (tmp_path / "empty.png").read_bytes()[:8] == PNG_SIGNATURE
    assert plt.get_fignums() == []


def test_figure_is_closed_when_drawing_fails(tmp_path):
    with pytest.raises(KeyError):
        figures.accuracy_vs_round([{"agent": "a"}], tmp_path / "broken.png")
    assert plt.get_fignums() == []


def test_rollout_trace_names_are_accepted(tmp_path):
    trace = _trace("ddqn", 0, 5, 2)
    trace["bits_up_per_round"], trace["bits_down_per_round"] = trace.pop("bits_up"), trace.pop("bits_down")
    figures.cumulative_bits([trace], tmp_path / "bits.png")
    assert (tmp_path / "bits.png").is_file()


def test_accuracy_is_carried_forward_and_averaged_over_running_episodes():
    short = {"accuracy": [None, 0.5, math.nan]}
    long = {"accuracy": [0.2, math.nan, 0.4, 0.6]}
    np.testing.assert_allclose(figures._accuracy(short), [math.nan, 0.5, 0.5])
    mean, low, high = figures._band([figures._accuracy(short), figures._accuracy(long)])
    # Round 1: only the long episode has a value; round 4: only the long episode is still running.
    np.testing.assert_allclose(mean, [0.2, 0.35, 0.45, 0.6])
    np.testing.assert_allclose(low, [0.2, 0.2, 0.4, 0.6])
    np.testing.assert_allclose(high, [0.2, 0.5, 0.5, 0.6])


def test_accuracy_at_times_follows_each_episodes_clock():
    clock = np.cumsum([1.0, 2.0, 1.0])  # rounds end at 1, 3 and 4 s
    values = np.array([0.1, 0.2, 0.3])
    times = np.array([0.5, 1.0, 2.0, 3.0, 4.0, 5.0])
    np.testing.assert_allclose(
        figures._at_times(clock, values, times), [math.nan, 0.1, 0.1, 0.2, 0.3, math.nan]
    )
