"""Trials per hour of one Ray Tune sweep run with 1 and with 2 concurrent trials on this machine.

    python benchmarks/sweep_scaling.py                      # 8 trials of DDQN on the digits twin
    python benchmarks/sweep_scaling.py --trials 8 --steps 4000

The same sweep (8 short DDQN trials on SFLEnvAnalytic-v0 with preset=digits, a learning-rate grid, no
early stopping) runs through sweep.py twice, into a fresh folder each time: with ``--concurrent 1``
and with ``--concurrent 2``, on a local Ray with 2 CPUs. A trial holds one CPU and one torch thread,
so on 2 cores two trials run side by side. The wall time of each sweep (Ray's start included) gives
trials per hour; the last line is ``speedup: <trials per hour with 2 / with 1>``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def spec(trials: int, steps: int) -> str:
    rates = ", ".join(f"{1e-4 * 2 ** i:.6g}" for i in range(trials))
    return f"""agent: ddqn
env_id: SFLEnvAnalytic-v0
env_kwargs: {{preset: digits}}
total_steps: {steps}
eval_freq: {steps // 2}
eval_episodes: 5
seeds: [0]
search:
  learning_rate: {{grid: [{rates}]}}
asha: {{grace_period: 2}}
"""


def run_sweep(folder: Path, concurrent: int) -> float:
    """Seconds for the whole sweep with ``concurrent`` trials at once."""
    path = folder / "scaling.yml"
    start = time.perf_counter()
    subprocess.run([sys.executable, str(ROOT / "sweep.py"), str(path), "--out", str(folder / f"c{concurrent}"),
                    "--concurrent", str(concurrent), "--num-cpus", "2"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--steps", type=int, default=4000, help="env steps per trial")
    args = parser.parse_args()
    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "scaling.yml").write_text(spec(args.trials, args.steps))
        for concurrent in (1, 2):
            seconds = run_sweep(folder, concurrent)
            rates[concurrent] = args.trials / seconds * 3600
            print(f"{concurrent} concurrent: {args.trials} trials of {args.steps} steps in {seconds:.1f} s, "
                  f"{rates[concurrent]:.0f} trials per hour")
    print(f"speedup: {rates[2] / rates[1]:.2f}")


if __name__ == "__main__":
    main()
