"""Ray Tune sweep over any agent of the zoo on any SFL-Env task: ASHA early stopping, clusters, resume.

    python sweep.py sweeps/ddqn.yml                         # local Ray, one trial per CPU
    python sweep.py sweeps/ddqn.yml --concurrent 2 --track  # W&B: every trial in the sweep's group
    python sweep.py sweeps/ddqn.yml --address auto          # join a cluster (ray start --head; ray start --address)
    python sweep.py sweeps/ddqn.yml --resume                # continue an interrupted sweep
    python evaluate.py --mode agents --agents "sweeps-results/ddqn/runs/*"

The YAML file names the agent, the task and the search space, in the style of agents/configs:

    agent: ddqn
    env_id: SFLEnvAnalytic-v0
    env_kwargs: {preset: digits}
    total_steps: 20000
    eval_freq: 2000              # a validation every eval_freq steps: what ASHA compares
    eval_episodes: 5
    samples: 4                   # draws of the random dimensions
    seeds: [0, 1]                # a grid dimension
    search:
      learning_rate: {loguniform: [1.0e-4, 1.0e-2]}
      gamma: {choice: [0.95, 0.99]}
      batch_size: {grid: [32, 64]}
    asha: {grace_period: 2, reduction_factor: 2}

The file is checked whole before anything starts (``evaluation.sweep_spec``): every key, type and range; each
distribution's arguments (``loguniform`` and ``uniform``: ``[low, high]``, finite, low < high, loguniform
low > 0; ``randint``: two integers, high excluded; ``choice`` and ``grid``: a non-empty list); every
searched name a hyperparameter of the agent, drawn as it takes it; and the env, built once with
``env_kwargs``. A mistake exits 2 with one line naming the file, the key (``search.gamma.loguniform``)
and what is allowed, and creates nothing.

One process writes a sweep folder: ``sweep.py`` holds the lock of ``<out>/<name>`` (``.lock``, see
``sfl_env.locking``) from the moment the file is accepted until it exits, and a second ``sweep.py`` on the
same name (``--resume`` included) is refused, naming the one at work. A new sweep needs a new or
empty folder (one holding only ``.lock`` is empty); ``--resume`` one that holds a sweep (``tuner.pkl``).

Each trial is ``train_agent.py`` itself (``train_agent.main``, with the trial's hyperparameters and seed),
so it writes the same run folder, under ``<out>/<name>/runs/<trial>``, and reports each validation
return to Tune; ASHA stops the trials that trail. An interrupted sweep (``--resume``) restarts its
unfinished trials, and each continues its run folder from its last checkpoint. The sweep ends with
``trials.md`` (every trial, best first; a failed trial with its own last error line, whose last stderr
lines are in ``trial_error.txt`` in its run folder) and ``best.json`` (the best trial's configuration).
``sweep.py`` exits 1 when any trial failed, naming each one's run folder and error.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import signal
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

import agents
from evaluation.sweep_spec import (  # noqa: F401  (SPACES, SPEC, hyperparameter_names, validate_spec: re-exported)
    SPACES, SPEC, check_env, hyperparameter_names, load_spec, option_text, validate_spec)
from sfl_env.locking import LOCK_FILE, FolderLock, lock_folder
from sfl_env.storage import write_json, write_text

METRIC = "validation_return"
TRIAL_ERROR = "trial_error.txt"  # in a failed trial's run folder: the last lines of what it wrote to stderr
TUNER_STATE = "tuner.pkl"  # what Ray Tune writes first into a sweep's folder, and restores --resume from


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec", help="the sweep's YAML file (see above)")
    parser.add_argument("--name", default=None, help="the sweep's name (default: the YAML file's name)")
    parser.add_argument("--out", default="sweeps-results", help="folder of the sweeps (default sweeps-results)")
    parser.add_argument("--concurrent", type=int, default=None, help="trials at once (default: one per CPU)")
    parser.add_argument("--address", default=None, help="Ray cluster to join ('auto'); default: a local Ray")
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray (default: all)")
    parser.add_argument("--resume", action="store_true", help="continue the interrupted sweep of this name")
    parser.add_argument("--track", action="store_true", help="mirror each trial to W&B, grouped by the sweep")
    parser.add_argument("--wandb-project", default="sfl-env")
    return parser


def param_space(spec: dict[str, Any]) -> dict[str, Any]:
    """Tune's search space: one sampler per hyperparameter, the seeds as a grid."""
    from ray import tune

    def sampler(kind: str, values: Any) -> Any:
        if kind == "grid":
            return tune.grid_search(list(values))
        if kind == "choice":
            return tune.choice(list(values))
        return getattr(tune, kind)(*values)  # loguniform, uniform, randint: (low, high)

    return {"seed": tune.grid_search(list(spec["seeds"])),
            "hyperparameters": {name: sampler(*next(iter(dim.items()))) for name, dim in spec["search"].items()}}


def trial_argv(spec: dict[str, Any], config: dict[str, Any], run: Path) -> list[str]:
    """``train_agent.py``'s command line for one trial."""
    argv = ["--agent", spec["agent"], "--env-id", spec["env_id"], "--seed", str(config["seed"]),
            "--total-steps", str(spec["total_steps"]), "--eval-freq", str(spec["eval_freq"]),
            "--eval-episodes", str(spec["eval_episodes"]), "--out", str(run), "--no-progress",
            "--torch-threads", "1"]  # a trial holds one CPU
    if spec["checkpoint_freq"]:
        argv += ["--checkpoint-freq", str(spec["checkpoint_freq"])]
    if spec["env_kwargs"]:
        argv += ["--env-kwargs", *(f"{k}={option_text(v)}" for k, v in spec["env_kwargs"].items())]
    if config["hyperparameters"]:
        argv += ["--hyperparams", *(f"{k}={option_text(v)}" for k, v in config["hyperparameters"].items())]
    return argv


def make_trainable(spec: dict[str, Any], runs: Path, tracking: list[str]):
    """The Tune function trainable: one train_agent.py run that reports every validation."""

    def trial(config: dict[str, Any]) -> None:
        from ray import tune

        import train_agent

        run = runs / tune.get_context().get_trial_name()
        resuming = (run / agents.RUN_CONFIG).is_file()  # a restored sweep: continue the run folder
        argv = ["--resume", "--out", str(run)] if resuming else trial_argv(spec, config, run)

        def report(step: int, means: dict[str, float]) -> None:
            tune.report({METRIC: means["mean_return"], "step": step})

        run_trial(lambda: train_agent.main(argv + tracking, on_validation=report), run)

    return trial


class _Tee(io.TextIOBase):
    """Writes to a stream and keeps a copy."""

    def __init__(self, stream: Any) -> None:
        self.stream, self.copy = stream, io.StringIO()

    def write(self, text: str) -> int:
        self.copy.write(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()

    def fileno(self) -> int:  # libraries that write to the descriptor itself (W&B's console capture)
        return self.stream.fileno()

    def isatty(self) -> bool:
        return self.stream.isatty()


def run_trial(train: Any, run: Path, lines: int = 20) -> None:
    """Runs one trial's ``train()`` (train_agent.main); if it fails (an exception, an exit, a non-zero
    code), writes the last ``lines`` lines of its stderr and the reason to ``run/trial_error.txt``, where
    trials.md finds them, and raises with the reason."""
    tee = _Tee(sys.stderr)
    try:
        with contextlib.redirect_stderr(tee):
            code = train()
        reason = None if code == 0 else f"train_agent.py exited with {code}"
    except SystemExit as error:  # argparse refusing an option exits 2
        reason = f"train_agent.py exited with {error.code}"
    except Exception as error:  # noqa: BLE001 (any failure is the trial's to report)
        tee.copy.write(traceback.format_exc())
        reason = f"{type(error).__name__}: {error}"
    if reason is None:
        return
    tail = [line for line in tee.copy.getvalue().splitlines() if line.strip()][-lines:]
    run.mkdir(parents=True, exist_ok=True)
    write_text(run / TRIAL_ERROR, "\n".join([*tail, reason]) + "\n")
    raise RuntimeError(tail[-1] if tail else reason)


def trial_error(trial: Path | None) -> str:
    """A failed trial's own last error line (from its run folder), or '' if it left none."""
    path = trial / TRIAL_ERROR if trial is not None else None
    if path is None or not path.is_file():
        return ""
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    return lines[-2] if len(lines) > 1 else (lines[0] if lines else "")


def trial_rows(results: Any, runs: Path) -> list[dict[str, Any]]:
    """One row per trial of Tune's ``results``, named by its run folder in ``runs``, best validation
    return first; a failed trial's status is ``error: `` and its own last error line."""
    rows = []
    for result in results:
        name = Path(result.path).name if result.path else "?"
        trial = next((p for p in runs.iterdir() if name == p.name or name.startswith(p.name + "_")), None) \
            if runs.is_dir() else None
        summary_path = trial / "summary.json" if trial is not None else None
        summary = json.loads(summary_path.read_text()) if summary_path and summary_path.is_file() else {}
        metrics = result.metrics or {}
        rows.append({"trial": trial.name if trial else name, "seed": result.config.get("seed"),
                     "hyperparameters": result.config.get("hyperparameters", {}),
                     METRIC: metrics.get(METRIC, math.nan), "step": metrics.get("step"),
                     "test_return": summary.get("eval_mean_return", math.nan),
                     "status": f"error: {trial_error(trial) or result.error}".replace("|", "/").replace("\n", " ")
                     if result.error else ("done" if summary else "stopped")})
    rows.sort(key=lambda r: -r[METRIC] if math.isfinite(r[METRIC]) else math.inf)
    return rows


def trials_table(rows: list[dict[str, Any]]) -> tuple[str, dict[str, Any] | None]:
    """trials.md's table of :func:`trial_rows` and the best trial's row (None if none validated)."""
    lines = [f"| trial | seed | hyperparameters | last {METRIC} | at step | test return | status |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['trial']} | {r['seed']} | `{json.dumps(r['hyperparameters'], sort_keys=True)}` | "
              f"{r[METRIC]:.3f} | {r['step']} | {r['test_return']:.3f} | {r['status']} |" for r in rows]
    return "\n".join(lines) + "\n", (rows[0] if rows and math.isfinite(rows[0][METRIC]) else None)


def failure_report(rows: list[dict[str, Any]]) -> str | None:
    """What sweep.py says when trials failed: each failed trial's run folder and its error; None if none did."""
    failed = [row for row in rows if row["status"].startswith("error")]
    if not failed:
        return None
    return "\n".join([f"{len(failed)} of {len(rows)} trial(s) failed (each one's error is in trials.md, and the last "
                      f"lines it wrote in {TRIAL_ERROR} in its run folder):",
                      *(f"  {row['trial']}: {row['status'].removeprefix('error: ')}" for row in failed)])


def folder_leftovers(root: Path) -> list[str]:
    """What ``root`` holds that a new sweep would mix with: everything but its lock and an empty runs/."""
    if not root.is_dir():
        return []
    return sorted(entry.name for entry in root.iterdir() if entry.name != LOCK_FILE
                  and not (entry.name == "runs" and entry.is_dir() and not any(entry.iterdir())))


def take_folder(root: Path, resume: bool, parser: argparse.ArgumentParser) -> FolderLock:
    """The lock of the sweep folder ``root``, held until released: the one writer of it. Refuses (through
    ``parser``) a folder another process writes, naming it; with ``resume``, a folder that holds no
    sweep; without, one that holds anything but a lock and an empty runs/. The lock is taken before the
    folder is read, so a live sweep is reported as such; it creates ``root`` only when it is missing and
    a new sweep starts there (a refused existing folder keeps its lock file)."""
    if resume and not root.is_dir():
        parser.error(f"--resume: {root} holds no sweep to resume")
    lock = lock_folder(root, "sweep.py", parser.error, option="")
    try:
        leftovers = folder_leftovers(root)
        if resume and not (root / TUNER_STATE).is_file():
            parser.error(f"--resume: {root} holds no sweep to resume (no {TUNER_STATE})")
        if not resume and TUNER_STATE in leftovers:
            parser.error(f"{root} already holds a sweep; pass --resume to continue it, or choose another --name")
        if not resume and leftovers:
            parser.error(f"{root} holds {leftovers!r} but no sweep to resume (no {TUNER_STATE}); allowed: a "
                         f"new or empty folder: remove those, or choose another --name")
    except BaseException:
        lock.release()
        raise
    return lock


def catch_ctrl_c() -> threading.Event:
    """An event set by Ctrl-C, which then asks Tune to save the sweep and stop (through SIGUSR1, which Tune
    always hears), so that the sweep can say it was interrupted and how to resume it."""
    interrupted = threading.Event()
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"

    def on_ctrl_c(signum: int, frame: Any) -> None:
        interrupted.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C aborts
        os.kill(os.getpid(), signal.SIGUSR1)

    signal.signal(signal.SIGINT, on_ctrl_c)
    return interrupted


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for option, value in (("--concurrent", args.concurrent), ("--num-cpus", args.num_cpus)):
        if value is not None and value < 1:
            parser.error(f"{option}={value} is out of range; allowed: an integer >= 1")
    name = args.name if args.name is not None else Path(args.spec).stem
    if name in ("", ".", "..") or "/" in name or os.sep in name:
        parser.error(f"--name {name!r} is invalid; allowed: a folder name (no '/'), the sweep's folder in --out")
    try:  # the whole spec, and the env it builds, before anything is created
        spec = load_spec(Path(args.spec))
        check_env(spec, args.spec)
    except ValueError as error:
        parser.error(str(error))
    root = Path(args.out).resolve() / name
    lock = take_folder(root, args.resume, parser)
    try:
        return run_sweep(args, spec, name, root)
    finally:
        lock.release()


def run_sweep(args: argparse.Namespace, spec: dict[str, Any], name: str, root: Path) -> int:
    """Runs (or with ``args.resume`` continues) the sweep ``spec`` in ``root``, which the caller holds
    locked; returns the exit code."""
    runs = root / "runs"
    tracking = ["--track", "--wandb-project", args.wandb_project, "--wandb-group", name] if args.track else []

    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    ray.init(address=args.address, num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False,
             ignore_reinit_error=True, runtime_env={"env_vars": {"PYTHONPATH": str(Path(__file__).parent)}})
    trainable = tune.with_resources(make_trainable(spec, runs, tracking), {"cpu": 1})
    if args.resume:
        tuner = tune.Tuner.restore(str(root), trainable, resume_unfinished=True, resume_errored=True)
    else:
        # one report per validation; a trial that survives every rung finishes its run (summary included)
        validations = max(1, spec["total_steps"] // spec["eval_freq"])
        asha = ASHAScheduler(time_attr="training_iteration", max_t=validations + 1, **spec["asha"])
        tuner = tune.Tuner(  # writes tuner.pkl: from here on the folder is a sweep that --resume continues
            trainable, param_space=param_space(spec),
            tune_config=tune.TuneConfig(metric=METRIC, mode="max", scheduler=asha, num_samples=spec["samples"],
                                        max_concurrent_trials=args.concurrent),
            run_config=tune.RunConfig(name=name, storage_path=str(root.parent), verbose=1))
        runs.mkdir(exist_ok=True)
    interrupted = catch_ctrl_c()
    results = tuner.fit()
    rows = trial_rows(results, runs)
    table, best = trials_table(rows)
    write_text(root / "trials.md", f"# Sweep {name}: {spec['agent']} on {spec['env_id']}\n\n" + table)
    if best is not None:
        write_json(root / "best.json", best | {"spec": spec}, indent=2, default=str)
    print(table)
    print(f"best: {json.dumps(best, default=str) if best else 'no trial reported a validation'}")
    print(f"trials.md, best.json and the run folders in {root}")
    ray.shutdown()
    failures = failure_report(rows)
    if failures:
        print(failures, file=sys.stderr)
        return 1
    if interrupted.is_set():
        print(f"interrupted before every trial ended; continue with: python sweep.py {args.spec} --resume"
              + (f" --name {args.name}" if args.name else "") + f" --out {args.out}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
