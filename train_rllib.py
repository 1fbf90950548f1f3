"""Train an RLlib algorithm (new API stack) on one SFL-Env task; the run folder plays in evaluate.py.

    python train_rllib.py --algorithm rllib-ppo --iterations 20                      # masked PPO, analytic twin
    python train_rllib.py --algorithm rllib-dqn --env-kwargs privacy=penalty --iterations 20
    python train_rllib.py --algorithm rllib-ppo --training lr=3e-4 train_batch_size_per_learner=1000
    python train_rllib.py --algorithm rllib-ppo --env-runners 2 --address auto       # on a Ray cluster
    python train_rllib.py --resume --out runs/rllib-ppo__SFLEnvAnalytic-v0__0        # continue a stopped run
    python train_rllib.py --resume --out runs/rllib-ppo__SFLEnvAnalytic-v0__0 --iterations 40   # train further
    python evaluate.py --mode agents --agents runs/rllib-ppo__SFLEnvAnalytic-v0__0

RLlib builds the env by name in each of its env runners (``sfl_env.rllib.register``), with
``--env-kwargs`` as its ``env_config``. PPO reads the action mask (``agents.masked_ppo``), so it
never sends a forbidden cut; RLlib's DQN has no masking module, so it needs ``privacy=penalty``.

``--training`` takes ``AlgorithmConfig.training`` options as ``KEY=VALUE``; the keys each algorithm
accepts, their types and ranges are ``agents.rllib.TRAINING_OPTIONS`` (for PPO: lr, gamma,
train_batch_size_per_learner, minibatch_size, num_epochs, entropy_coeff, clip_param, lambda_,
vf_loss_coeff, grad_clip, ...; for DQN: lr, gamma, train_batch_size_per_learner,
target_network_update_freq, n_step, double_q, dueling, ...). Every option is checked before Ray
starts; a mistake stops the command with a one-line error (exit status 2).

The run folder (``--out``) holds ``config.json`` (the run's settings), ``metrics.jsonl`` (one
``train`` record per iteration: env steps, mean episode return and length), ``checkpoint/`` (RLlib's
own state of the algorithm, every ``--checkpoint-freq`` iterations and at the end, swapped in whole)
and, at the end, ``rl_module/`` (the trained module as ``weights.pt``, a torch state dict, and
``module.json``), which ``evaluate.py`` loads through ``agents.rllib.RLlibAgent`` without unpickling
anything. ``checkpoint/`` holds RLlib's pickle files, which ``--resume`` loads: resume only runs you
trust (your own); ``evaluate.py`` never reads it.

``--resume --out RUN`` continues a stopped (killed, interrupted) run from its latest checkpoint to
``--iterations`` (default: the run's own), with the run's own settings from ``config.json``; an
option that contradicts them is refused. What the stopped run logged after its checkpoint is cut from
``metrics.jsonl`` first, so the log holds one timeline (each iteration once). One process writes a run
folder at a time (``sfl_env.locking``): a second ``train_rllib.py`` on a folder in use is refused.
Needs ``pip install 'sfl-env[rllib]'``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym

import agents
import sfl_env
from agents.rllib import (MODULE_FOLDER, RLLIB_ALGORITHMS, algorithm_config, check_training, parse_training,
                          save_module, saved_module_iteration)
from evaluation.checkpoints import latest_checkpoint, read_state, write_checkpoint
from evaluation.tracking import RunLog, rewind_run, versions
from sfl_env.config import parse_overrides
from sfl_env.locking import lock_folder
from sfl_env.storage import WriteError, write_json

DEFAULT_ITERATIONS = 20
DEFAULT_CHECKPOINT_FREQ = 5
ALGORITHM_STATE = "algorithm"  # RLlib's save_to_path folder inside checkpoint/
# options that define a run: a --resume keeps the run's own values and refuses different ones
RUN_DEFINING = {"algorithm": "agent", "env_id": "env_id", "env_kwargs": "env_kwargs", "training": "training",
                "seed": "seed", "env_runners": "env_runners", "envs_per_runner": "envs_per_runner",
                "checkpoint_freq": "checkpoint_freq"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algorithm", choices=RLLIB_ALGORITHMS, default="rllib-ppo")
    parser.add_argument("--env-id", default="SFLEnvAnalytic-v0", choices=list(sfl_env.TASK_IDS), metavar="ENV_ID",
                        help="an SFL-Env task id (default SFLEnvAnalytic-v0)")
    parser.add_argument("--env-kwargs", nargs="*", default=[], metavar="KEY=VALUE", help="gym.make keywords")
    parser.add_argument("--training", nargs="*", default=[], metavar="KEY=VALUE",
                        help="AlgorithmConfig.training options, e.g. lr=3e-4 train_batch_size_per_learner=1000 "
                             "(the allowed keys: agents.rllib.TRAINING_OPTIONS)")
    parser.add_argument("--iterations", type=int, default=None,
                        help=f"RLlib training iterations (default {DEFAULT_ITERATIONS}; on --resume, the run's own)")
    parser.add_argument("--checkpoint-freq", type=int, default=None,
                        help=f"iterations between checkpoints (default {DEFAULT_CHECKPOINT_FREQ}); one is always "
                             f"written at the end")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--env-runners", type=int, default=0, help="remote env runners (0: sample in the driver)")
    parser.add_argument("--envs-per-runner", type=int, default=None,
                        help="episodes each runner steps at once (default 1); an analytic id's in its native vector "
                             "env, as arrays")
    parser.add_argument("--address", default=None, help="Ray cluster to join ('auto'); default: a local Ray")
    parser.add_argument("--out", default=None, help="run folder (default runs/<algorithm>__<env-id>__<seed>)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its latest checkpoint, with its own settings")
    return parser


def given_options(argv: list[str] | None) -> set[str]:
    """The destinations of the options written on the command line (not left to their defaults)."""
    probe = build_parser()
    for action in probe._actions:
        action.default = argparse.SUPPRESS
    return set(vars(probe.parse_args(argv)))


def new_settings(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """The settings of a new run, every option checked (nothing is written, Ray is not started)."""
    try:
        env_kwargs = parse_overrides(args.env_kwargs)
        training = parse_training(args.algorithm, args.training)
    except ValueError as error:
        parser.error(str(error))
    out = Path(args.out or f"runs/{args.algorithm}__{args.env_id}__{args.seed}")
    return {"agent": args.algorithm, "env_id": args.env_id, "env_kwargs": env_kwargs, "training": training,
            "seed": args.seed, "iterations": args.iterations or DEFAULT_ITERATIONS, "env_runners": args.env_runners,
            "envs_per_runner": args.envs_per_runner or 1,
            "checkpoint_freq": args.checkpoint_freq or DEFAULT_CHECKPOINT_FREQ, "run_name": out.name}


def resume_settings(args: argparse.Namespace, parser: argparse.ArgumentParser, run: Path,
                    given: set[str]) -> dict[str, Any]:
    """The run's own settings from its ``config.json``; a given option that contradicts them is refused."""
    path = run / agents.RUN_CONFIG
    try:
        config = json.loads(path.read_text())
        if not isinstance(config, dict):
            raise ValueError("not a JSON object")
        if config.get("agent") not in RLLIB_ALGORITHMS:
            raise ValueError(f"agent {config.get('agent')!r} is not one of {', '.join(RLLIB_ALGORITHMS)}; "
                             f"resume a train_agent.py run with train_agent.py --resume")
        check_training(config["agent"], config.get("training", {}))
        for key in ("env_id", "seed", "env_runners"):
            if key not in config:
                raise ValueError(f"{key} is missing")
    except (OSError, ValueError) as error:
        parser.error(f"--resume: {path} is corrupt or foreign ({error}); it cannot be resumed")
    config.setdefault("env_kwargs", {})
    config.setdefault("training", {})
    config.setdefault("envs_per_runner", 1)  # runs from before the option stepped one episode per runner
    config.setdefault("checkpoint_freq", args.checkpoint_freq or DEFAULT_CHECKPOINT_FREQ)
    for dest in sorted(given & set(RUN_DEFINING)):
        key, value = RUN_DEFINING[dest], getattr(args, dest)
        try:
            if dest == "env_kwargs":
                value = parse_overrides(value)
            elif dest == "training":
                value = parse_training(config["agent"], value)
        except ValueError as error:
            parser.error(str(error))
        same = all(config[key].get(k) == v for k, v in value.items()) if isinstance(value, dict) \
            else config.get(key) == value
        if not same:
            option = "--" + dest.replace("_", "-")
            parser.error(f"--resume: {option} {value!r} contradicts the run's {agents.RUN_CONFIG} ({key} "
                         f"{config.get(key)!r}); a resumed run keeps its settings (only --iterations and --address "
                         f"may change): drop {option}, or start a new run in another --out")
    if args.iterations is not None:
        config["iterations"] = args.iterations
    return config


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for name, value, low in (("--iterations", args.iterations, 1), ("--env-runners", args.env_runners, 0),
                             ("--envs-per-runner", args.envs_per_runner, 1), ("--checkpoint-freq", args.checkpoint_freq, 1)):
        if value is not None and value < low:
            parser.error(f"{name}={value} is out of range; allowed: an integer >= {low}")
    if args.resume:
        if args.out is None:
            parser.error("--resume needs --out RUN_FOLDER")
        run = Path(args.out)
        if not (run / agents.RUN_CONFIG).is_file():
            parser.error(f"--resume: {run / agents.RUN_CONFIG} does not exist; nothing to resume")
        settings: dict[str, Any] = {}
    else:  # everything a new run can check is checked before the lock, which creates the folder
        settings = new_settings(args, parser)
        run = Path(args.out or f"runs/{settings['run_name']}")
        prepared = prepare(settings, parser)
    if run.exists() and not run.is_dir():
        parser.error(f"--out {run} is a file; allowed: a folder (new, or a run to --resume)")
    lock = lock_folder(run, "train_rllib.py", parser.error)
    try:  # the only writer of run until main returns (or the process ends, however it ends)
        if args.resume:
            settings = resume_settings(args, parser, run, given_options(argv))
            prepared = prepare(settings, parser)
        elif (run / agents.RUN_CONFIG).exists():
            parser.error(f"--out {run} already holds a run; pass --resume to continue it, or choose another folder")
        return train(args, parser, settings, run, *prepared)
    finally:
        lock.release()


def prepare(settings: dict[str, Any], parser: argparse.ArgumentParser) -> tuple[gym.Env, Any]:
    """What only the env and RLlib can check (Ray is not started): the probe env and the AlgorithmConfig."""
    try:
        probe = gym.make(settings["env_id"], **settings["env_kwargs"])  # env options are checked here
        probe.reset(seed=0)
        config = algorithm_config(settings["agent"], settings["env_id"], settings["env_kwargs"], seed=settings["seed"],
                                  num_env_runners=settings["env_runners"],
                                  num_envs_per_env_runner=settings["envs_per_runner"], **settings["training"])
    except (ValueError, TypeError) as error:
        parser.error(str(error))
    except ImportError as error:
        parser.error(f"{error}")
    try:
        config.validate()  # RLlib's own checks across options (e.g. its default minibatch_size vs a small batch)
    except ValueError as error:
        parser.error(f"--training: RLlib refuses this configuration: {_first_line(error)}")
    return probe, config


def train(args: argparse.Namespace, parser: argparse.ArgumentParser, settings: dict[str, Any], run: Path,
          probe: gym.Env, config: Any) -> int:
    """Trains (from the run's checkpoint on --resume), checkpoints and saves the module; holds run's lock."""
    algorithm_name, iterations = settings["agent"], int(settings["iterations"])
    checkpoint = latest_checkpoint(run) if args.resume else None
    state = None
    if checkpoint is not None:
        try:
            state = read_state(checkpoint)
            if not isinstance(state.get("iteration"), int) or not (checkpoint / ALGORITHM_STATE).is_dir():
                raise ValueError(f"{checkpoint} is not a train_rllib.py checkpoint (no iteration, no "
                                 f"{ALGORITHM_STATE}/)")
        except ValueError as error:
            parser.error(f"--resume: {error}; start a new run in another --out")
        if state["iteration"] > iterations:
            parser.error(f"--resume: the run's checkpoint is at iteration {state['iteration']}, past "
                         f"--iterations={iterations}; allowed: --iterations >= {state['iteration']}")
        if state["iteration"] == iterations and saved_module_iteration(run / MODULE_FOLDER) == iterations:
            print(f"{run} has finished its {iterations} iterations; to train further, raise --iterations")
            return 0

    import ray

    settings = settings | {"iterations": iterations, "n_actions": int(probe.action_space.n),
                           "obs_dim": int(probe.observation_space.shape[0]), "run_name": run.name,
                           "versions": versions() | {"ray": ray.__version__}}
    probe.close()
    if args.resume:
        rewind_run(run, checkpoint, state)  # cut what was logged after the checkpoint: one timeline
        print(f"resuming {run} from iteration {state['iteration']}" if state else
              f"{run} has no checkpoint yet; starting clean from iteration 0")
    try:
        write_json(run / agents.RUN_CONFIG, settings, indent=2)
    except WriteError as error:
        parser.error(str(error))

    ray.init(address=args.address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    algorithm = log = None
    done = state["iteration"] if state else 0
    try:
        algorithm = config.build_algo()
        if checkpoint is not None:
            try:
                algorithm.restore_from_path(str((checkpoint / ALGORITHM_STATE).resolve()))
            except Exception as error:  # a torn or foreign checkpoint: name it, never a bare traceback
                parser.error(f"--resume: the checkpoint {checkpoint} is unreadable ({type(error).__name__}: "
                             f"{_first_line(error)}); start a new run in another --out")
        log = RunLog(run)
        start = time.perf_counter() - (state.get("wall_s", 0.0) if state else 0.0)
        steps = int(state["num_steps"]) if state else 0
        freq = int(settings["checkpoint_freq"])
        for iteration in range(done + 1, iterations + 1):
            result = algorithm.train()
            runners = result.get("env_runners", {})
            steps = int(runners.get("num_env_steps_sampled_lifetime", steps))
            record = {"iteration": iteration, "episode_return_mean": runners.get("episode_return_mean", math.nan),
                      "episode_len_mean": runners.get("episode_len_mean", math.nan),
                      "wall_s": time.perf_counter() - start}
            log.record("train", steps, record)
            print(f"iteration {iteration}: {steps} env steps, mean return {record['episode_return_mean']:.3f}")
            if iteration % freq == 0 or iteration == iterations:
                write_checkpoint(run, _Saver(algorithm), {"iteration": iteration, "num_steps": steps,
                                                          "log_lines": dict(log.lines), "wall_s": record["wall_s"]})
            done = iteration
        save_module(algorithm.get_module(), run / MODULE_FOLDER, algorithm_name, iteration=done, env_steps=steps)
    except WriteError as error:  # a full disk or a read-only folder: the last complete checkpoint is kept
        print(f"error: {error}; {_continue_hint(run)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\ninterrupted after iteration {done}; {_continue_hint(run)}", file=sys.stderr)
        return 130
    finally:
        if log is not None:
            log.close()
        if algorithm is not None:
            algorithm.stop()
        ray.shutdown()
    print(f"run folder: {run}; play it with: python evaluate.py --mode agents --agents {run}")
    return 0


class _Saver:
    """The algorithm as ``evaluation.checkpoints.write_checkpoint`` saves an agent (RLlib's own format)."""

    def __init__(self, algorithm: Any) -> None:
        self.algorithm = algorithm

    def save_checkpoint(self, folder: Path) -> None:
        self.algorithm.save_to_path(str((folder / ALGORITHM_STATE).resolve()))


def _continue_hint(run: Path) -> str:
    checkpoint = latest_checkpoint(run)
    try:
        at = f"the last complete checkpoint (iteration {read_state(checkpoint)['iteration']}) is kept" \
            if checkpoint else "there is no checkpoint yet"
    except (ValueError, KeyError):
        at = "the checkpoint is unreadable"
    return f"{at}; continue with: python train_rllib.py --resume --out {run}"


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


if __name__ == "__main__":
    sys.exit(main())
