"""Train an RLlib algorithm (new API stack) on one SFL-Env task; the run folder plays in evaluate.py.

    python train_rllib.py --algorithm rllib-ppo --iterations 20                      # masked PPO, analytic twin
    python train_rllib.py --algorithm rllib-dqn --env-kwargs privacy=penalty --iterations 20
    python train_rllib.py --algorithm rllib-ppo --env-runners 2 --address auto       # on a Ray cluster
    python evaluate.py --mode agents --agents runs/rllib-ppo__SFLEnvAnalytic-v0__0

RLlib builds the env by name in each of its env runners (``sfl_env.rllib.register``), with
``--env-kwargs`` as its ``env_config``. PPO reads the action mask (``agents.masked_ppo``), so it
never sends a forbidden cut; RLlib's DQN has no masking module, so it needs ``privacy=penalty``.

The run folder (``--out``) holds ``config.json``, ``metrics.jsonl`` (one ``train`` record per
iteration: env steps, mean episode return and length) and ``rl_module/`` (the trained module, which
``evaluate.py`` loads through ``agents.rllib.RLlibAgent``). Needs ``pip install 'sfl-env[rllib]'``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import gymnasium as gym

import agents
import sfl_env
from agents.rllib import MODULE_FOLDER, RLLIB_ALGORITHMS, algorithm_config
from evaluation.tracking import RunLog, versions
from sfl_env.config import parse_overrides
from sfl_env.storage import write_json


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algorithm", choices=RLLIB_ALGORITHMS, default="rllib-ppo")
    parser.add_argument("--env-id", default="SFLEnvAnalytic-v0", choices=list(sfl_env.TASK_IDS), metavar="ENV_ID",
                        help="an SFL-Env task id (default SFLEnvAnalytic-v0)")
    parser.add_argument("--env-kwargs", nargs="*", default=[], metavar="KEY=VALUE", help="gym.make keywords")
    parser.add_argument("--training", nargs="*", default=[], metavar="KEY=VALUE",
                        help="AlgorithmConfig.training options, e.g. lr=3e-4 train_batch_size_per_learner=1000")
    parser.add_argument("--iterations", type=int, default=20, help="RLlib training iterations")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--env-runners", type=int, default=0, help="remote env runners (0: sample in the driver)")
    parser.add_argument("--address", default=None, help="Ray cluster to join ('auto'); default: a local Ray")
    parser.add_argument("--out", default=None, help="run folder (default runs/<algorithm>__<env-id>__<seed>)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for name, value, low in (("--iterations", args.iterations, 1), ("--env-runners", args.env_runners, 0)):
        if value < low:
            parser.error(f"{name}={value} is out of range; allowed: an integer >= {low}")
    try:
        env_kwargs, training = parse_overrides(args.env_kwargs), parse_overrides(args.training)
        probe = gym.make(args.env_id, **env_kwargs)  # options are checked here, before Ray starts
        probe.reset(seed=0)
        config = algorithm_config(args.algorithm, args.env_id, env_kwargs, seed=args.seed,
                                  num_env_runners=args.env_runners, **training)
    except (ValueError, TypeError) as error:
        parser.error(str(error))
    except ImportError as error:
        parser.error(f"{error}")
    run = Path(args.out or f"runs/{args.algorithm}__{args.env_id}__{args.seed}")
    if (run / agents.RUN_CONFIG).exists():
        parser.error(f"--out {run} already holds a run; choose another folder")

    import ray

    ray.init(address=args.address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    start = time.perf_counter()
    algorithm = config.build_algo()
    write_json(run / agents.RUN_CONFIG, {
        "agent": args.algorithm, "env_id": args.env_id, "env_kwargs": env_kwargs, "training": training,
        "seed": args.seed, "iterations": args.iterations, "env_runners": args.env_runners,
        "n_actions": int(probe.action_space.n), "obs_dim": int(probe.observation_space.shape[0]),
        "run_name": run.name, "versions": versions() | {"ray": ray.__version__},
    }, indent=2)
    log = RunLog(run)
    try:
        for iteration in range(1, args.iterations + 1):
            result = algorithm.train()
            runners = result.get("env_runners", {})
            steps = int(runners.get("num_env_steps_sampled_lifetime", 0))
            record = {"iteration": iteration, "episode_return_mean": runners.get("episode_return_mean", math.nan),
                      "episode_len_mean": runners.get("episode_len_mean", math.nan),
                      "wall_s": time.perf_counter() - start}
            log.record("train", steps, record)
            print(f"iteration {iteration}: {steps} env steps, mean return {record['episode_return_mean']:.3f}")
        partial = run / f".{MODULE_FOLDER}.partial"  # swapped in whole, like every other model
        algorithm.get_module().save_to_path(str(partial.resolve()))
        partial.rename(run / MODULE_FOLDER)
    finally:
        log.close()
        algorithm.stop()
        ray.shutdown()
    print(f"run folder: {run}; play it with: python evaluate.py --mode agents --agents {run}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
