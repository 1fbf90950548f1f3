"""Is the task learnable? Trains agents on a task with train_agent.py, then compares them with the best
fixed cut and the planner on paired test seeds with evaluate.py, for their final and best models.

    python benchmarks/learnability.py --env-id SFLEnvBudgetAnalytic-v0 --agents ddqn,dqn,ppo \\
        --seeds 5 --total-steps 100000 --out runs/learnability

Each (agent, seed) trains into ``OUT/<agent>__<seed>`` (two at a time, one core each); a finished run
(its summary.json written) is skipped and an interrupted one resumes from its checkpoint, so the script
can be rerun until it is done. Then ``evaluate.py --mode agents`` plays every agent's runs (seed i
uses run i mod the number of runs) with ``--model final`` and ``--model best`` into
``OUT/eval-final`` and ``OUT/eval-best``, and this prints each agent's paired difference to the best
fixed cut and to the planner.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def train(agent: str, seed: int, args: argparse.Namespace) -> str:
    run = Path(args.out) / f"{agent}__{seed}"
    if (run / "summary.json").is_file():
        return f"{run}: done before"
    command = [sys.executable, str(ROOT / "train_agent.py"), "--agent", agent, "--env-id", args.env_id,
               "--seed", str(seed), "--total-steps", str(args.total_steps), "--out", str(run),
               "--torch-threads", "1", "--no-progress"]
    if (run / "checkpoint").is_dir():
        command = [sys.executable, str(ROOT / "train_agent.py"), "--resume", "--out", str(run), "--no-progress"]
    elif run.exists():
        shutil.rmtree(run)  # started but never checkpointed
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        return f"{run}: FAILED ({done.returncode})\n{done.stderr[-2000:]}"
    return done.stdout.strip().splitlines()[0]


def evaluate(agents: list[str], model: str, args: argparse.Namespace) -> Path:
    out = Path(args.out) / f"eval-{model}"
    spec = ",".join(f"{args.out}/{agent}__*" for agent in agents)
    command = [sys.executable, str(ROOT / "evaluate.py"), "--mode", "agents", "--env-id", args.env_id,
               "--agents", spec, "--model", model, "--seeds", str(args.eval_seeds), "--out", str(out)]
    if out.exists():
        command.append("--resume")
    subprocess.run(command, check=True, capture_output=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env-id", default="SFLEnvBudgetAnalytic-v0")
    parser.add_argument("--agents", default="ddqn,dqn,ppo")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--total-steps", type=int, default=100_000)
    parser.add_argument("--eval-seeds", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default="runs/learnability")
    args = parser.parse_args()
    agents = args.agents.split(",")
    jobs = [(agent, seed) for agent in agents for seed in range(args.seeds)]
    with ThreadPoolExecutor(args.workers) as pool:
        for line in pool.map(lambda job: train(*job, args), jobs):
            print(line, flush=True)
    for model in ("final", "best"):
        out = evaluate(agents, model, args)
        board = (out / "leaderboard.md").read_text()
        print(f"\n## {model} models ({out / 'leaderboard.md'})\n")
        print("\n".join(line for line in board.splitlines() if line.startswith("|")))
    json.dump(vars(args), open(Path(args.out) / "learnability.json", "w"), indent=1)


if __name__ == "__main__":
    main()
