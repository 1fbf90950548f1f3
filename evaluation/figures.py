"""PNG figures of evaluation episodes: accuracy, latency, communication and cut choices per agent.

``evaluate.py`` hands over plain data, so every figure can be drawn (and tested) without an
environment. An episode trace is a dict::

    {"agent": str, "seed_index": int, "episode": int,
     "cuts": [int, ...],                 # cut chosen each round
     "accuracy": [float | None, ...],    # test accuracy each round; None/NaN when not evaluated
     "latency_s": [float, ...],          # simulated seconds each round
     "bits_up": [float, ...], "bits_down": [float, ...]}   # bits each round

(``bits_up_per_round``/``bits_down_per_round``, the names of ``evaluation.rollout.Episode.traces()``,
are accepted too.) Every line is one agent: the mean over that agent's episodes, with a band from the
lowest to the highest episode. Episodes may differ in length; each round (or moment) is averaged over
the episodes still running then, so the mean moves when an episode ends. Accuracy is carried forward
through rounds without an evaluation.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from sfl_env.storage import replacing

Trace = Mapping[str, Any]

BAND_ALPHA = 0.2
ALIASES = {"bits_up": "bits_up_per_round", "bits_down": "bits_down_per_round"}


def accuracy_vs_round(traces: Sequence[Trace], path: str | Path, target: float | None = None) -> Path:
    """Test accuracy against the training round, per agent; ``target`` draws a dashed line."""
    with _figure(path) as (fig, (ax,)):
        for agent, episodes in _by_agent(traces).items():
            mean, low, high = _band([_accuracy(t) for t in episodes])
            _line(ax, np.arange(1, mean.size + 1), mean, low, high, agent)
        _target_line(ax, target)
        ax.set(xlabel="round", ylabel="test accuracy", title="Test accuracy per round")
        _legend(ax)
    return Path(path)


def accuracy_vs_latency(traces: Sequence[Trace], path: str | Path, target: float | None = None) -> Path:
    """Test accuracy against cumulative simulated seconds, per agent.

    Each episode is a step function of time (the accuracy of its last finished round); the
    agent's episodes are averaged at every moment one of them finishes a round.
    """
    with _figure(path) as (fig, (ax,)):
        for agent, episodes in _by_agent(traces).items():
            clocks = [np.cumsum(_series(t, "latency_s")) for t in episodes]
            grid = np.unique(np.concatenate(clocks)) if clocks else np.empty(0)
            rows = [_at_times(clock, _accuracy(t), grid) for clock, t in zip(clocks, episodes)]
            mean, low, high = _band(rows, length=grid.size)
            _line(ax, grid, mean, low, high, agent, drawstyle="steps-post", step="post")
        _target_line(ax, target)
        ax.set(xlabel="simulated time (s)", ylabel="test accuracy", title="Test accuracy against simulated time")
        _legend(ax)
    return Path(path)


def cumulative_bits(traces: Sequence[Trace], path: str | Path) -> Path:
    """Cumulative uplink and downlink traffic in Mbit against the round, one panel each."""
    panels = (("bits_up", "Uplink (clients to server)"), ("bits_down", "Downlink (server to clients)"))
    with _figure(path, nrows=2, sharex=True, figsize=(7, 6.5)) as (fig, axes):
        for ax, (key, title) in zip(axes, panels):
            for agent, episodes in _by_agent(traces).items():
                mean, low, high = _band([np.cumsum(_series(t, key)) / 1e6 for t in episodes])
                _line(ax, np.arange(1, mean.size + 1), mean, low, high, agent)
            ax.set(ylabel="cumulative Mbit", title=title)
            _legend(ax)
        axes[-1].set_xlabel("round")
    return Path(path)


def cuts_over_rounds(traces: Sequence[Trace], path: str | Path) -> Path:
    """The cut per round: per agent, the mean cut over its running episodes, banded by their range."""
    from matplotlib.ticker import MaxNLocator

    with _figure(path) as (fig, (ax,)):
        for agent, episodes in _by_agent(traces).items():
            mean, low, high = _band([_series(t, "cuts") for t in episodes])
            _line(ax, np.arange(1, mean.size + 1), mean, low, high, agent, drawstyle="steps-mid", step="mid")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(xlabel="round", ylabel="cut (client-side blocks)", title="Cut chosen per round")
        _legend(ax)
    return Path(path)


def cut_sweep(rows: Sequence[Mapping[str, float]], path: str | Path) -> Path:
    """Fixed-cut sweep: rounds and seconds to the target, and final accuracy, against the cut.

    ``rows`` hold ``cut``, ``rounds_to_target`` and ``seconds_to_target`` (NaN if never reached) and
    ``final_accuracy``, one per seed/episode. The times to target are means over the rows that reached
    it, with their range as error bars and "k/n" where only k of n did; a cross near the top marks a
    cut that never reached it. Final accuracy is the mean over all rows, with its range.
    """
    cuts = sorted({int(r["cut"]) for r in rows})
    panels = (
        ("rounds_to_target", "rounds to target"),
        ("seconds_to_target", "simulated s to target"),
        ("final_accuracy", "final test accuracy"),
    )
    with _figure(path, nrows=3, sharex=True, figsize=(7, 8)) as (fig, axes):
        for ax, (key, label) in zip(axes, panels):
            values = [np.array([r[key] for r in rows if int(r["cut"]) == c], dtype=float) for c in cuts]
            _sweep_panel(ax, cuts, values, mark_missing=key != "final_accuracy")
            ax.set_ylabel(label)
        axes[0].set_title("Fixed-cut sweep")
        axes[-1].set_xlabel("cut (client-side blocks)")
        axes[-1].set_xticks(cuts)
    return Path(path)


def write_figures(
    mode: str, folder: str | Path, traces: Sequence[Trace], rows: Sequence[Mapping[str, Any]]
) -> list[Path]:
    """The figures of one evaluation mode in ``folder``: the four per-round figures of ``traces``, and
    for ``mode == "cuts"`` the sweep of ``rows`` (results.csv rows whose agent is ``cut-<n>``)."""
    folder = Path(folder)
    paths = [
        accuracy_vs_round(traces, folder / "accuracy_vs_round.png"),
        accuracy_vs_latency(traces, folder / "accuracy_vs_latency.png"),
        cumulative_bits(traces, folder / "cumulative_bits.png"),
        cuts_over_rounds(traces, folder / "cuts_over_rounds.png"),
    ]
    if mode == "cuts":
        sweep = [{"cut": int(r["agent"].removeprefix("cut-")), "rounds_to_target": r["rounds_to_target"],
                  "seconds_to_target": r["seconds_to_target"], "final_accuracy": r["final_accuracy"]} for r in rows]
        paths.append(cut_sweep(sweep, folder / "cut_sweep.png"))
    return paths


def _sweep_panel(ax: Any, cuts: list[int], values: list[np.ndarray], mark_missing: bool) -> None:
    reached = [v[~np.isnan(v)] for v in values]
    has = [c for c, v in zip(cuts, reached) if v.size]
    means = np.array([v.mean() for v in reached if v.size])
    lows = np.array([v.min() for v in reached if v.size])
    highs = np.array([v.max() for v in reached if v.size])
    if has:
        ax.errorbar(has, means, yerr=[means - lows, highs - means], marker="o", capsize=3, label="mean (range)")
    for cut, v, total in zip(cuts, reached, values):
        if mark_missing and 0 < v.size < total.size:
            label = f"{v.size}/{total.size} reached"
            ax.annotate(label, (cut, v.mean()), textcoords="offset points", xytext=(5, 5), fontsize=8)
    never = [c for c, v in zip(cuts, reached) if not v.size]
    if mark_missing and never:
        # x in data units, y in axes units: the crosses sit near the top whatever the scale.
        ax.plot(
            never, [0.95] * len(never), "x", color="tab:red", markersize=9,
            transform=ax.get_xaxis_transform(), label="never reached target",
        )
    _legend(ax)


@contextmanager
def _figure(
    path: str | Path, nrows: int = 1, sharex: bool = False, figsize: tuple[float, float] = (7, 4.5)
) -> Iterator[tuple[Any, np.ndarray]]:
    """A figure with ``nrows`` stacked axes, saved to ``path`` as PNG and always closed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(nrows, 1, sharex=sharex, squeeze=False, figsize=figsize, dpi=100)
    try:
        yield fig, axes[:, 0]
        for ax in axes[:, 0]:
            ax.grid(alpha=0.3)
        fig.tight_layout()
        with replacing(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)


def _by_agent(traces: Sequence[Trace]) -> dict[str, list[Trace]]:
    """Traces grouped by agent label, in order of first appearance."""
    groups: dict[str, list[Trace]] = {}
    for trace in traces:
        groups.setdefault(str(trace["agent"]), []).append(trace)
    return groups


def _series(trace: Trace, key: str) -> np.ndarray:
    if key not in trace and key in ALIASES:
        key = ALIASES[key]
    return np.array([np.nan if v is None else v for v in trace[key]], dtype=float)


def _accuracy(trace: Trace) -> np.ndarray:
    """Per-round accuracy, carried forward through rounds without an evaluation (NaN before the first)."""
    accuracy = _series(trace, "accuracy")
    evaluated = np.where(np.isnan(accuracy), 0, np.arange(accuracy.size))
    last = np.maximum.accumulate(evaluated) if accuracy.size else evaluated
    return accuracy[last]


def _at_times(clock: np.ndarray, values: np.ndarray, times: np.ndarray) -> np.ndarray:
    """``values`` of the last round finished by each of ``times``; NaN before the first and after the end."""
    index = np.searchsorted(clock, times, side="right") - 1
    out = values[np.clip(index, 0, None)] if values.size else np.full(times.size, np.nan)
    running = (index >= 0) & (times <= (clock[-1] if clock.size else -np.inf))
    return np.where(running, out, np.nan)


def _band(rows: list[np.ndarray], length: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, min and max over rows of different lengths, ignoring NaN; NaN where no row has a value."""
    length = max((r.size for r in rows), default=0) if length is None else length
    grid = np.full((len(rows), length), np.nan)
    for i, row in enumerate(rows):
        grid[i, : row.size] = row
    present = ~np.isnan(grid)
    count = present.sum(axis=0)
    total = np.where(present, grid, 0.0).sum(axis=0)
    mean = np.divide(total, count, out=np.full(length, np.nan), where=count > 0)
    low = np.where(count > 0, np.where(present, grid, np.inf).min(axis=0, initial=np.inf), np.nan)
    high = np.where(count > 0, np.where(present, grid, -np.inf).max(axis=0, initial=-np.inf), np.nan)
    return mean, low, high


def _line(
    ax: Any,
    x: np.ndarray,
    mean: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    label: str,
    drawstyle: str = "default",
    step: str | None = None,
) -> None:
    (line,) = ax.plot(x, mean, label=label, drawstyle=drawstyle)
    ax.fill_between(x, low, high, color=line.get_color(), alpha=BAND_ALPHA, linewidth=0, step=step)


def _target_line(ax: Any, target: float | None) -> None:
    if target is not None:
        ax.axhline(target, color="0.4", linestyle="--", linewidth=1, label=f"target {target:g}")


def _legend(ax: Any) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
