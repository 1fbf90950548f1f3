"""Train one agent on one SFLEnv configuration, with checkpoints, local metrics and optional W&B tracking.

    python train_agent.py --agent ddqn                                   # SFLEnvAnalytic-v0, 50k steps
    python train_agent.py --agent ppo --seed 3 --n-envs 2 --total-steps 20000
    python train_agent.py --agent ddqn --env-kwargs rho=0.3 min_client_blocks=2 --track
    python train_agent.py --resume --out runs/ddqn__SFLEnvAnalytic-v0__0   # continue an interrupted run

The run folder (``--out``) holds ``config.json`` (everything resolved), ``metrics.jsonl`` (every
record; the source of truth), ``episodes.csv`` and ``evaluations.csv``, ``checkpoint/`` (the latest
resumable state), the final model (``model.pt`` or ``model.zip``), ``best_model`` (the model with the
best return on the validation episodes played every ``--eval-freq`` steps) and ``summary.json``
(return mean and std on held-out test episodes for the final and the best model, the random, oracle
and planner references on the same test seeds, the normalised scores against the planner (the oracle
where the configuration has no twin), steps, wall time, seed). With ``--track`` W&B mirrors the records (``offline`` when no API key
is configured; ``wandb sync <run>/wandb/offline-run-*`` uploads it later).

One process writes a run folder at a time: a second ``train_agent.py`` on it (a new run, or ``--resume``
while the first still runs) is refused, naming the process that holds it (an OS lock on ``.lock`` in
the folder, which the system releases however that process ends). Ctrl-C stops after the current step, saves a checkpoint and the summary so far, and exits with 130; a
second Ctrl-C aborts at once. ``--resume`` continues from the checkpoint with the same step count,
weights, optimiser and replay buffer (the episode in progress at the interruption restarts). After a kill
it first cuts the logs back to the checkpoint's step, so they hold one timeline. A write that fails (a
full disk, a read-only folder) stops the run with an error naming the file and exit code 1, keeping the
last complete checkpoint; once there is room, ``--resume`` continues from it.
"""

from __future__ import annotations

import signal
import sys

if __name__ == "__main__":  # Ctrl-C while the libraries below load: a clean exit, not a traceback
    def _stopped_while_starting(signum: int, frame: object) -> None:
        print("\nCtrl-C before training started: nothing was trained, exiting", file=sys.stderr)
        raise SystemExit(130)

    signal.signal(signal.SIGINT, _stopped_while_starting)

import argparse  # noqa: E402
import shutil  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import gymnasium as gym  # noqa: E402

import agents  # noqa: E402
import sfl_env  # noqa: E402
from evaluation.checkpoints import CHECKPOINT, latest_checkpoint, read_state  # noqa: E402
from evaluation.summary import run_summary  # noqa: E402
from evaluation.tracking import (  # noqa: E402
    WANDB_MODES, RunLog, WandbMirror, default_wandb_mode, rewind_run, versions)
from evaluation.training import Trainer, ValidationHook, make_vec_env  # noqa: E402
from sfl_env.config import parse_overrides  # noqa: E402
from sfl_env.errors import CorruptFileError  # noqa: E402
from sfl_env.locking import lock_folder  # noqa: E402
from sfl_env.storage import WriteError, write_json  # noqa: E402

DEFAULT_ENV_ID = "SFLEnvAnalytic-v0"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agent", default="ddqn", help=f"one of: {', '.join(agents.AGENTS)} (default ddqn)")
    parser.add_argument("--env-id", default=DEFAULT_ENV_ID, help=f"registered env id (default {DEFAULT_ENV_ID})")
    parser.add_argument("--env-kwargs", nargs="*", default=[], metavar="KEY=VALUE",
                        help="gym.make keywords, e.g. rho=0.3 num_clients=20 privacy=penalty")
    parser.add_argument("--hyperparams", nargs="*", default=[], metavar="KEY=VALUE",
                        help="override single hyperparameters of agents/configs/<agent>.yml")
    parser.add_argument("--total-steps", type=int, default=None,
                        help="env steps to train (default: n_timesteps of the agent's config); every agent "
                             "stops at exactly this step (with --n-envs N at the first multiple of N at or past "
                             "it), so PPO and A2C leave the rollout they were collecting untrained")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-envs", type=int, default=1,
                        help="episodes stepped at once: an analytic id steps them as arrays in its native vector env, "
                             "in this process; a real-training id runs them in subprocesses when > 1")
    parser.add_argument("--out", default=None, help="run folder (default runs/<agent>__<env-id>__<seed>)")
    parser.add_argument("--eval-freq", type=int, default=None, help="env steps between evaluations (default total/10)")
    parser.add_argument("--eval-episodes", type=int, default=5)
    parser.add_argument("--checkpoint-freq", type=int, default=10_000, help="env steps between checkpoints")
    parser.add_argument("--no-reference", action="store_true",
                        help="skip the random and oracle reference evaluation in summary.json")
    parser.add_argument("--track", action="store_true", help="mirror the run to Weights & Biases")
    parser.add_argument("--wandb-project", default="sfl-env")
    parser.add_argument("--wandb-entity", default=None)
    parser.add_argument("--wandb-group", default=None, help="W&B group of the run (sweep.py: the sweep's name)")
    parser.add_argument("--wandb-mode", choices=WANDB_MODES, default=None,
                        help="default: online with an API key configured, else offline")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    parser.add_argument("--torch-threads", type=int, default=None,
                        help="torch threads of this process (default: 1 on the analytic env, whose only "
                             "torch work is the agent's small networks; torch's default otherwise)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bar (default: when stderr is a terminal)")
    return parser


# ---------------------------------------------------------------------------------------------- config


# options that define a run: a --resume keeps the run's own values and refuses different ones
RUN_DEFINING = {"agent": "agent", "env_id": "env_id", "env_kwargs": "env_kwargs", "hyperparams": "hyperparameters",
                "seed": "seed", "n_envs": "n_envs", "eval_freq": "eval_freq", "eval_episodes": "eval_episodes",
                "checkpoint_freq": "checkpoint_freq"}


def given_options(argv: list[str] | None) -> set[str]:
    """The destinations of the options written on the command line (not left to their defaults)."""
    probe = build_parser()
    for action in probe._actions:
        action.default = argparse.SUPPRESS
    return set(vars(probe.parse_args(argv)))


def check_resume_options(args: argparse.Namespace, parser: argparse.ArgumentParser, config: dict[str, Any],
                         given: set[str]) -> None:
    """Refuses a --resume whose run-defining options differ from the run's config.json."""
    for dest in sorted(given & set(RUN_DEFINING)):
        key, value = RUN_DEFINING[dest], getattr(args, dest)
        try:
            if dest in ("env_kwargs", "hyperparams"):
                value = parse_overrides(value)
                same = all(config[key].get(k) == v for k, v in value.items())
            else:
                same = config.get(key) == value
        except ValueError as error:
            parser.error(str(error))
        if not same:
            option = "--" + dest.replace("_", "-")
            parser.error(f"--resume: {option} {value!r} contradicts the run's {agents.RUN_CONFIG} ({key} "
                         f"{config.get(key)!r}); a resumed run keeps its settings (only --total-steps and the "
                         f"tracking options may change): drop {option}, or start a new run in another --out")


def resolve_config(args: argparse.Namespace, parser: argparse.ArgumentParser,
                   given: set[str] | None = None) -> dict[str, Any]:
    """Everything the run depends on, validated; on ``--resume`` the run folder's own config."""
    if args.resume:
        if args.out is None:
            parser.error("--resume needs --out RUN_FOLDER")
        path = Path(args.out) / agents.RUN_CONFIG
        if not path.is_file():
            parser.error(f"--resume: {path} does not exist; nothing to resume")
        try:
            config = agents.read_run_config(args.out, resumable=True)
        except CorruptFileError as error:
            parser.error(f"--resume: {error}; it cannot be resumed")
        if config["agent"] not in agents.AGENTS and not config["agent"].startswith("cut-"):
            parser.error(f"--resume: {path} is a {config['agent']} run; train_agent.py resumes the runs it "
                         f"trained ({', '.join(agents.AGENTS)})")
        check_resume_options(args, parser, config, given or set())
        if args.total_steps is not None:
            if args.total_steps < 1:
                parser.error(f"--total-steps={args.total_steps} is out of range; allowed: an integer >= 1")
            config["total_steps"] = args.total_steps
        return config

    try:
        agents.check_name(args.agent)
        env_kwargs = parse_overrides(args.env_kwargs)
        overrides = parse_overrides(args.hyperparams)
    except ValueError as error:
        parser.error(str(error))
    try:
        agents.check_env_id(args.env_id)
    except ValueError as error:
        parser.error(f"--env-id {error}")
    ours = list(sfl_env.TASK_IDS)
    if args.env_id.split(":")[-1] not in ours:
        parser.error(f"--env-id {args.env_id!r} is not an SFL-Env task; allowed: {', '.join(ours)}")
    for name, value in (("--n-envs", args.n_envs), ("--eval-episodes", args.eval_episodes),
                        ("--checkpoint-freq", args.checkpoint_freq),
                        ("--eval-freq", 1 if args.eval_freq is None else args.eval_freq)):
        if value < 1:
            parser.error(f"{name}={value} is out of range; allowed: an integer >= 1")
    defaults = agents.hyperparameters(args.agent, args.env_id)
    for key, value in overrides.items():
        default = defaults.get(key)
        if value is None and key in agents.nullable(args.agent):
            continue
        if isinstance(default, (int, float)) and not isinstance(default, bool) and (
                isinstance(value, bool) or not isinstance(value, (int, float))):
            parser.error(f"--hyperparams {key}={value!r} is invalid; allowed: a number (the default is {default!r})")
    hyperparameters = defaults | overrides
    total_steps = args.total_steps if args.total_steps is not None else int(hyperparameters.get("n_timesteps", 50_000))
    if total_steps < 1:
        parser.error(f"--total-steps={total_steps} is out of range; allowed: an integer >= 1")
    hyperparameters.pop("n_timesteps", None)
    out = Path(args.out or f"runs/{args.agent}__{args.env_id}__{args.seed}")
    return {
        "agent": args.agent,
        "env_id": args.env_id,
        "env_kwargs": env_kwargs,
        "hyperparameters": hyperparameters,
        "seed": args.seed,
        "total_steps": total_steps,
        "n_envs": args.n_envs,
        "eval_freq": args.eval_freq or max(1, total_steps // 10),
        "eval_episodes": args.eval_episodes,
        "checkpoint_freq": args.checkpoint_freq,
        "run_name": out.name,
        "wandb_id": f"{out.name}-{int(time.time())}".replace("/", "_"),
        "versions": versions(),
    }


def main(argv: list[str] | None = None, on_validation: ValidationHook | None = None) -> int:
    """Runs the command line ``argv``; ``on_validation`` (as sweep.py passes) hears every validation."""
    parser = build_parser()
    args = parser.parse_args(argv)
    config = resolve_config(args, parser, given_options(argv))
    if args.torch_threads is not None and args.torch_threads < 1:
        parser.error(f"--torch-threads={args.torch_threads} is out of range; allowed: an integer >= 1")
    run = Path(args.out or f"runs/{config['run_name']}")
    if run.exists() and not run.is_dir():
        parser.error(f"--out {run} is a file; allowed: a folder (new, or a run to --resume)")
    lock = lock_folder(run, "train_agent.py", parser.error, check_write=True)  # the run's only writer
    try:
        if not args.resume and (run / agents.RUN_CONFIG).exists():
            parser.error(f"--out {run} already holds a run; pass --resume to continue it, or choose another folder")
        return train(args, parser, config, run, on_validation)
    except WriteError as error:  # a full disk or a read-only folder: what is on disk stays consistent
        checkpoint = latest_checkpoint(run)
        kept = (f"the last complete checkpoint (step {read_state(checkpoint)['num_steps']}) is kept; make room, "
                f"then continue with: python train_agent.py --resume --out {run}") if checkpoint else \
            "there is no checkpoint yet; make room and run again with --resume"
        print(f"error: {error}; {kept}", file=sys.stderr)
        return 1
    finally:
        lock.release()


def train(args: argparse.Namespace, parser: argparse.ArgumentParser, config: dict[str, Any], run: Path,
          on_validation: ValidationHook | None = None) -> int:
    """Trains, checkpoints and summarises the run in ``run`` (after main's checks); returns the exit code."""
    try:
        eval_env = gym.make(config["env_id"], **config["env_kwargs"])
        analytic = eval_env.spec.kwargs.get("training") == "analytic"  # spec.kwargs includes the make kwargs
        eval_env.reset(seed=0)  # a probe: what only a reset can check fails here, before any work
    except (ValueError, TypeError) as error:
        parser.error(f"--env-kwargs: {error}")
    threads = args.torch_threads or (1 if analytic else None)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    vec_env = make_vec_env(config)
    try:
        agent = agents.make(config["agent"], vec_env, seed=config["seed"], env_id=config["env_id"],
                            **config["hyperparameters"])
    except (ValueError, TypeError) as error:
        vec_env.close()
        parser.error(str(error))
    config["n_actions"] = int(eval_env.action_space.n)
    config["obs_dim"] = int(eval_env.observation_space.shape[0])
    config["data"] = eval_env.unwrapped.data_metadata  # a text corpus's Python version and SHA-256

    state = {"num_steps": 0, "episodes": 0, "wall_s": 0.0}
    checkpoint = latest_checkpoint(run) if args.resume else None
    if checkpoint is not None:
        try:
            agent.load_checkpoint(checkpoint, env=vec_env)
            state = read_state(checkpoint)
        except Exception as error:  # a torn or foreign file: name the checkpoint, never a bare traceback
            vec_env.close()
            parser.error(f"--resume: the checkpoint {checkpoint} is unreadable ({type(error).__name__}: {error}); "
                         f"remove it to start {run} again from step 0")
        rewind_run(run, checkpoint, state)
        print(f"resuming {run} at step {state['num_steps']} of {config['total_steps']}")
    elif args.resume:
        rewind_run(run, None, None)
        print(f"{run} has no checkpoint yet; starting clean from step 0")
    write_json(run / agents.RUN_CONFIG, config, indent=2)

    mirror = None
    if args.track:
        mode = args.wandb_mode or default_wandb_mode()
        mirror = WandbMirror(project=args.wandb_project, entity=args.wandb_entity, mode=mode, folder=run,
                             name=config["run_name"], run_id=config["wandb_id"], config=config,
                             group=args.wandb_group)
    log = RunLog(run, mirror)
    progress = args.progress if args.progress is not None else sys.stderr.isatty()
    trainer = Trainer(run, config, log, eval_env, progress, state, on_validation)

    def request_stop(signum, frame):  # first Ctrl-C: stop cleanly; the second one aborts
        trainer.stop_requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print("\nCtrl-C: stopping after this step and saving a checkpoint (Ctrl-C again to abort)", file=sys.stderr)

    # Ctrl-C is the main thread's to catch; in a sweep's worker thread the sweep handles it
    in_main = threading.current_thread() is threading.main_thread()
    previous_handler = signal.signal(signal.SIGINT, request_stop) if in_main else None
    start_steps = agent.num_steps
    try:
        agent.learn(vec_env, config["total_steps"], callback=trainer)
    except Exception as error:
        if agent.num_steps == start_steps:  # it failed before learning anything: a setup error
            if checkpoint is None:  # a new run: leave no half-made run folder that blocks a rerun
                for name in (agents.RUN_CONFIG, "metrics.jsonl", "episodes.csv", "evaluations.csv"):
                    (run / name).unlink(missing_ok=True)
                shutil.rmtree(run / f"{CHECKPOINT}.tmp", ignore_errors=True)
            if isinstance(error, (ValueError, TypeError, AssertionError)):  # the learner refused its settings
                log.close()
                parser.error(f"{config['agent']} could not start: {error}")
            raise
        if agent.learns and not isinstance(error, WriteError):  # keep what was learned, then report the failure
            try:
                trainer.checkpoint(agent)
                print(f"training failed at step {trainer.state['num_steps']}; a checkpoint is saved, continue with: "
                      f"python train_agent.py --resume --out {run}", file=sys.stderr)
            except Exception as save_error:
                print(f"training failed at step {trainer.state['num_steps']} and its checkpoint could not be saved "
                      f"({save_error}); the last complete checkpoint in {run} is kept", file=sys.stderr)
        raise
    finally:
        if in_main:
            signal.signal(signal.SIGINT, previous_handler)
        trainer.close()
    interrupted = trainer.stop_requested and trainer.state["num_steps"] < config["total_steps"]
    trainer.checkpoint(agent)
    if agent.learns:
        agent.save(run / "model")
    episodes = trainer.play_split(agent, trainer.state["num_steps"], split="test")
    summary = run_summary(config, run, eval_env, episodes, trainer.state, trainer.wall_s(),
                          reference=not args.no_reference, interrupted=interrupted)
    write_json(run / "summary.json", summary, indent=2)
    if mirror is not None:
        mirror.summary(summary)
        mirror.finish()
    log.close()
    vec_env.close()
    eval_env.close()

    line = f"{config['agent']} on {config['env_id']}: {summary['steps']} steps in {summary['wall_time_s']:.0f} s, " \
           f"eval return {summary['eval_mean_return']:.3f} +- {summary['eval_std_return']:.3f}"
    if "normalised_score" in summary:
        line += f", normalised score {summary['normalised_score']:.3f} (random 0, {summary['score_reference']} 1)"
    if "normalised_score" in summary.get("best_model", {}):
        best = summary["best_model"]
        line += f"; best validated model (step {best['step']}): score {best['normalised_score']:.3f}"
    print(line)
    print(f"run folder: {run}")
    if interrupted:
        print(f"interrupted; continue with: python train_agent.py --resume --out {run}")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
