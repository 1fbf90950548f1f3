"""Renders the last round of an :class:`~sfl_env.env.SFLEnv`: a text table (``ansi``) or a figure
(``rgb_array``) of each client's channel, CPU and allocation, and where the model is cut."""

from __future__ import annotations

from typing import Any

import numpy as np


def render_text(last: dict[str, Any], num_clients: int) -> str:
    """The round ``last`` (what ``SFLEnv.step`` kept of it) as a text table, one line per client."""
    outcome, cost, allocation, latency = last["outcome"], last["cost"], last["allocation"], last["latency"]
    lines = [
        f"round {outcome.round_index}  scheme {cost.scheme.name}  cut {cost.cut}  reward {last['reward']:.4f}",
        f"test accuracy {outcome.test_accuracy:.4f}  train loss {outcome.train_loss:.4f}  "
        f"latency {latency.total_s:.4f} s  up {cost.bits_up / 1e6:.2f} Mbit  down {cost.bits_down / 1e6:.2f} Mbit",
        "phases: " + "  ".join(f"{k} {v:.4f}s" for k, v in latency.phases.items()),
        f"{'client':>6} {'gain dB':>8} {'cpu GHz':>8} {'band %':>7} {'server %':>9} {'up s/it':>8}",
    ]
    gain_db = 10 * np.log10(last["gain"])
    for k in range(num_clients):
        lines.append(
            f"{k:>6} {gain_db[k]:>8.1f} {last['cpu_hz'][k] / 1e9:>8.2f} {100 * allocation.bandwidth_share[k]:>7.1f} "
            f"{100 * allocation.server_cpu_share[k]:>9.1f} {latency.uplink_s[k]:>8.4f}"
        )
    return "\n".join(lines)


def render_image(last: dict[str, Any], num_clients: int, num_blocks: int) -> np.ndarray:
    """The round ``last`` as an RGB array: channel gains, the allocation, and the cut."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cost, allocation = last["cost"], last["allocation"]
    fig, axes = plt.subplots(1, 3, figsize=(9, 3), dpi=80)
    clients = np.arange(num_clients)
    axes[0].bar(clients, 10 * np.log10(last["gain"]))
    axes[0].set_title("channel gain (dB)")
    axes[1].bar(clients - 0.2, allocation.bandwidth_share, 0.4, label="band")
    axes[1].bar(clients + 0.2, allocation.server_cpu_share, 0.4, label="server")
    axes[1].set_title("allocation")
    axes[1].legend(fontsize=7)
    axes[2].barh(["model"], [cost.cut], color="tab:orange", label="clients")
    axes[2].barh(["model"], [num_blocks - cost.cut], left=[cost.cut], color="tab:blue", label="server")
    axes[2].set_xlim(0, num_blocks)
    axes[2].set_title(f"cut {cost.cut} of {num_blocks} blocks")
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return image
