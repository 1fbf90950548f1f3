"""train_rllib.py's run folders under stress: malformed --training options (refused in one line before Ray
starts, and fuzzed), one writer per folder, a SIGKILL mid-run then --resume to one timeline, and a run
folder whose files carry pickle payloads (playing it runs none of them).

Only the tests marked ``ray`` start Ray (the kill-and-resume test runs train_rllib.py twice as a
subprocess); the others run without it, and without Ray installed except where they build a module.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import agents
import train_rllib
from agents.rllib import (MODULE_FOLDER, MODULE_INFO, MODULE_WEIGHTS, RLLIB_ALGORITHMS, TRAINING_OPTIONS, RLlibAgent,
                          check_training, parse_training)
from sfl_env.errors import ConfigError, CorruptFileError
from sfl_env.locking import FolderLock

ROOT = Path(__file__).resolve().parents[1]
MASKED = {"preset": "digits", "min_client_blocks": 2, "max_rounds": 20}  # cut 1 is forbidden
TINY = {"train_batch_size_per_learner": 20, "minibatch_size": 10, "num_epochs": 1}
HAS_RAY = importlib.util.find_spec("ray") is not None
needs_rllib = pytest.mark.skipif(importlib.util.find_spec("ray.rllib") is None if HAS_RAY else True,
                                 reason="Ray's RLlib is not installed")


def kv(mapping: dict) -> list[str]:
    return [f"{k}={v}" for k, v in mapping.items()]


@pytest.fixture
def ray_must_not_start(monkeypatch):
    """Fails the test if anything calls ray.init (where Ray is installed at all)."""
    if HAS_RAY:
        import ray

        monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("ray.init was called"))


def error_line(capsys) -> str:
    """argparse's error line (the last of stderr); the test fails on a traceback or a multi-line error."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert ": error: " in lines[-1] and sum(": error: " in line for line in lines) == 1, err
    return lines[-1]


# ---------------------------------------------------------------------------------------------- --training


@pytest.mark.parametrize(("algorithm", "training", "expected"), [
    ("rllib-ppo", ["lr=abc"], "--training lr='abc' is invalid (not a number); allowed: a number > 0"),
    ("rllib-ppo", ["train_batch_size_per_learner=0"], "train_batch_size_per_learner='0' is invalid (out of range); "
                                                      "allowed: an integer >= 1"),
    ("rllib-ppo", ["lrr=0.1"], "unknown --training option 'lrr' for rllib-ppo (did you mean 'lr'?); allowed: "
                               "clip_param, entropy_coeff, gamma"),
    ("rllib-ppo", ["gamma=2"], "gamma='2' is invalid (out of range); allowed: a number in (0, 1]"),
    ("rllib-ppo", ["minibatch_size=True"], "minibatch_size='True' is invalid (booleans are not numbers)"),
    ("rllib-ppo", ["lr=nan"], "lr='nan' is invalid (not finite)"),
    ("rllib-ppo", ["num_epochs=1.5"], "num_epochs='1.5' is invalid (not an integer); allowed: an integer >= 1"),
    ("rllib-ppo", ["lr"], "--training 'lr' is malformed; expected KEY=VALUE"),
    ("rllib-ppo", ["lr=0.1", "lr=0.2"], "--training lr is given twice"),
    ("rllib-ppo", ["dueling=true"], "unknown --training option 'dueling' for rllib-ppo (dueling is an option of "
                                    "rllib-dqn)"),
    ("rllib-ppo", ["minibatch_size=64", "train_batch_size_per_learner=32"],
     "minibatch_size=64 is larger than train_batch_size_per_learner=32"),
    ("rllib-dqn", ["double_q=1"], "double_q='1' is invalid (not a boolean); allowed: true or false"),
    ("rllib-dqn", ["n_step=0"], "n_step='0' is invalid (out of range); allowed: an integer >= 1"),
    ("rllib-dqn", ["td_error_loss_fn=l1"], "allowed: one of huber, mse"),
])
def test_malformed_training_is_a_one_line_error_before_ray_starts(tmp_path, capsys, ray_must_not_start, algorithm,
                                                                  training, expected):
    run = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        train_rllib.main(["--algorithm", algorithm, "--env-kwargs", "privacy=penalty", "--out", str(run),
                          "--training", *training])
    assert exit_info.value.code == 2
    assert expected in error_line(capsys)
    assert not run.exists()  # refused before anything is written


def test_the_options_of_the_brief_are_accepted_with_their_types():
    ppo = parse_training("rllib-ppo", ["lr=3e-4", "gamma=1", "train_batch_size_per_learner=64", "minibatch_size=32",
                                       "num_epochs=2", "entropy_coeff=0", "clip_param=0.2", "lambda_=0.95",
                                       "vf_loss_coeff=1", "grad_clip=None"])
    assert ppo == {"lr": 3e-4, "gamma": 1.0, "train_batch_size_per_learner": 64, "minibatch_size": 32, "num_epochs": 2,
                   "entropy_coeff": 0.0, "clip_param": 0.2, "lambda_": 0.95, "vf_loss_coeff": 1.0, "grad_clip": None}
    assert type(ppo["gamma"]) is float and type(ppo["num_epochs"]) is int
    dqn = parse_training("rllib-dqn", ["lr=1e-3", "gamma=0.99", "train_batch_size_per_learner=32",
                                       "target_network_update_freq=100", "n_step=3", "double_q=true", "dueling=False"])
    assert dqn["double_q"] is True and dqn["dueling"] is False and dqn["n_step"] == 3
    assert check_training("rllib-dqn", dqn) == dqn
    with pytest.raises(ConfigError, match=r"training option n_step=True is invalid \(booleans are not numbers\)"):
        check_training("rllib-dqn", {"n_step": True})  # config.json is checked with the same table


KNOWN_KEYS = sorted({key for table in TRAINING_OPTIONS.values() for key in table})
RAW_VALUES = st.one_of(
    st.text(max_size=10),
    st.sampled_from(["0", "1", "-1", "0.5", "1e-4", "1e999", "-1e999", "nan", "inf", "True", "false", "TRUE", "None",
                     "null", "1.5", "2", "1_000", " 3 ", "0x10", "", "[1, 2]", "{'a': 1}", "huber", "global_norm",
                     "9" * 5000, "1e", "--1", "\u0663"]),
    st.integers(-(10**30), 10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)
ITEMS = st.lists(st.one_of(st.tuples(st.one_of(st.sampled_from(KNOWN_KEYS), st.text(max_size=12)), RAW_VALUES)
                           .map(lambda pair: f"{pair[0]}={pair[1]}"), st.text(max_size=8)), max_size=5)


@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(algorithm=st.sampled_from(RLLIB_ALGORITHMS), items=ITEMS)
@example(algorithm="rllib-ppo", items=["lr=abc"])
@example(algorithm="rllib-ppo", items=["train_batch_size_per_learner=0"])
@example(algorithm="rllib-dqn", items=["train_batch_size_per_learner=True", "gamma=2"])
def test_the_training_validator_accepts_or_raises_a_config_error(algorithm, items):
    """Property: any --training list is either accepted (typed, in range) or a one-line ConfigError."""
    try:
        training = parse_training(algorithm, items)
    except ConfigError as error:  # the project's ValueError; anything else fails the test
        message = str(error)
        assert message and "\n" not in message
        return
    assert check_training(algorithm, training) == training
    for key, value in training.items():
        option = TRAINING_OPTIONS[algorithm][key]
        if value is None:
            assert option.nullable
        elif option.kind == "bool":
            assert isinstance(value, bool)
        elif option.kind == "choice":
            assert value in option.choices
        else:
            assert not isinstance(value, bool) and isinstance(value, int if option.kind == "int" else float)
            assert math.isfinite(value) and option.problem(value) is None


# ---------------------------------------------------------------------------------------------- one writer


HOLD_LOCK = ("import sys, time\nfrom sfl_env.locking import FolderLock\n"
             "FolderLock(sys.argv[1], 'train_rllib.py').acquire()\nprint('held', flush=True)\ntime.sleep(120)\n")


@needs_rllib
def test_a_second_writer_is_refused_with_the_locks_message(tmp_path, capsys, ray_must_not_start):
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        args = ["--out", str(run), "--env-kwargs", *kv(MASKED), "--training", *kv(TINY)]
        with pytest.raises(SystemExit) as exit_info:
            train_rllib.main(args)
        assert exit_info.value.code == 2
        line = error_line(capsys)
        assert f"{run} is in use by train_rllib.py (pid {holder.pid}" in line and "one process writes" in line
        (run / "config.json").write_text(json.dumps({"agent": "rllib-ppo", "env_id": "SFLEnvAnalytic-v0",
                                                     "env_kwargs": MASKED, "training": TINY, "seed": 0,
                                                     "env_runners": 0, "iterations": 4}))
        with pytest.raises(SystemExit):  # a --resume while the first writer lives: the same refusal
            train_rllib.main(["--resume", "--out", str(run)])
        assert f"is in use by train_rllib.py (pid {holder.pid}" in error_line(capsys)
        assert sorted(p.name for p in run.iterdir()) == [".lock", "config.json"]  # nothing else written
    finally:
        holder.kill()
        holder.wait()
    with FolderLock(run, "test"):  # the holder's end released it
        pass


@pytest.mark.parametrize(("args", "expected"), [
    (["--seed", "3"], "--resume: --seed 3 contradicts the run's config.json (seed 0)"),
    (["--algorithm", "rllib-dqn"], "--resume: --algorithm 'rllib-dqn' contradicts the run's config.json"),
    (["--training", "lr=0.1"], "--resume: --training {'lr': 0.1} contradicts the run's config.json"),
    (["--training", "lr=abc"], "--training lr='abc' is invalid (not a number)"),
    (["--env-kwargs", "preset=mnist"], "--resume: --env-kwargs {'preset': 'mnist'} contradicts"),
])
def test_a_resume_keeps_the_runs_settings(tmp_path, capsys, ray_must_not_start, args, expected):
    run = tmp_path / "run"
    write_config(run, "rllib-ppo", MASKED, TINY)
    with pytest.raises(SystemExit) as exit_info:
        train_rllib.main(["--resume", "--out", str(run), "--training", *kv(TINY), *args])
    assert exit_info.value.code == 2 and expected in error_line(capsys)
    with pytest.raises(SystemExit):
        train_rllib.main(["--resume", "--out", str(tmp_path / "none")])
    assert "none/config.json does not exist; nothing to resume" in error_line(capsys)
    assert not (tmp_path / "none").exists()


# ---------------------------------------------------------------------------------------------- playing a run


class Payload:
    """Unpickled, it creates ``marker`` (what a hostile file in a shared run folder would do, less harmful)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def plant(path: Path, marker: Path, kind: str = "pickle") -> None:
    if kind == "torch":
        import torch

        torch.save({"encoder.weight": Payload(marker)}, path)
    else:
        path.write_bytes(pickle.dumps(Payload(marker)))


def write_config(run: Path, algorithm: str, env_kwargs: dict, training: dict) -> None:
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.json").write_text(json.dumps({"agent": algorithm, "env_id": "SFLEnvAnalytic-v0", "seed": 0,
                                                 "env_kwargs": env_kwargs, "training": training, "n_actions": 3,
                                                 "env_runners": 0, "iterations": 2}))


def check_plays_safely(run: Path, victim: Path, marker: Path) -> str:
    """Loads ``run``'s module after ``victim`` got a pickle payload: no code runs, and the load either
    works from the weights or names the file. Returns "loaded" or the error."""
    try:
        agent = agents.load(run)
        outcome = "loaded"
    except CorruptFileError as error:
        outcome = str(error)
        assert str(victim) in outcome and "\n" not in outcome
    assert not marker.exists(), f"unpickling {victim} ran code"
    if outcome == "loaded":
        env = gym.make("SFLEnvAnalytic-v0", **json.loads((run / "config.json").read_text())["env_kwargs"])
        obs, _ = env.reset(seed=0)
        assert 0 <= agent.predict(obs, env.unwrapped.action_masks()) < 3
    return outcome


def test_the_payload_runs_code_when_unpickled_plainly(tmp_path):
    marker = tmp_path / "marker"
    plant(tmp_path / "payload.pkl", marker)
    pickle.loads((tmp_path / "payload.pkl").read_bytes())
    assert marker.exists()  # so the absence of the marker below means: nothing was unpickled


@needs_rllib
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch, about the planted payload
@pytest.mark.parametrize(("algorithm", "env_kwargs", "training"), [
    ("rllib-ppo", MASKED, TINY), ("rllib-dqn", MASKED | {"privacy": "penalty"}, {"dueling": False, "n_step": 2})])
def test_a_saved_module_loads_from_its_weights_and_never_unpickles(tmp_path, algorithm, env_kwargs, training):
    import numpy as np

    from agents.rllib import build_module, save_module

    run, marker = tmp_path / "run", tmp_path / "marker"
    write_config(run, algorithm, env_kwargs, training)
    module = build_module(algorithm, "SFLEnvAnalytic-v0", env_kwargs, training)
    save_module(module, run / MODULE_FOLDER, algorithm, iteration=2)
    env = gym.make("SFLEnvAnalytic-v0", **env_kwargs)
    obs, _ = env.reset(seed=1)
    loaded = RLlibAgent.load(run / MODULE_FOLDER, algorithm, 3)
    np.testing.assert_array_equal(loaded.action_scores(obs), RLlibAgent(module, algorithm, 3).action_scores(obs))

    # RLlib's own module files, planted next to the weights: never read
    for name in ("class_and_ctor_args.pkl", "module_state.pkl", "default_policy/module_state.pkl"):
        (run / MODULE_FOLDER / name).parent.mkdir(exist_ok=True)
        plant(run / MODULE_FOLDER / name, marker)
    assert check_plays_safely(run, run / MODULE_FOLDER / "class_and_ctor_args.pkl", marker) == "loaded"
    # the weights themselves: a raw pickle, a torch file holding an object, each with or without a matching SHA-256
    info = json.loads((run / MODULE_FOLDER / MODULE_INFO).read_text())
    weights = run / MODULE_FOLDER / MODULE_WEIGHTS
    for kind in ("pickle", "torch"):
        for fix_sha in (False, True):
            plant(weights, marker, kind)
            if fix_sha:
                from agents.rllib import _sha256

                (run / MODULE_FOLDER / MODULE_INFO).write_text(json.dumps(info | {"sha256": _sha256(weights)}))
            outcome = check_plays_safely(run, weights, marker)
            assert outcome != "loaded" and "--resume --out" in outcome
            if fix_sha:
                assert "holds more than tensors" in outcome
    plant(run / MODULE_FOLDER / MODULE_INFO, marker)
    assert "is not readable as an RL module description" in check_plays_safely(run, run / MODULE_FOLDER / MODULE_INFO,
                                                                                marker)


def test_a_run_stopped_before_its_module_is_a_one_line_error_in_evaluate(tmp_path, capsys):
    import evaluate

    run = tmp_path / "killed"
    write_config(run, "rllib-ppo", MASKED, TINY)
    with pytest.raises(CorruptFileError, match=rf"{run} has no trained RL module .*python train_rllib.py --resume "
                                               rf"--out {run}$"):
        agents.load(run)
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(["--mode", "agents", "--agents", str(run), "--seeds", "1", "--out", str(tmp_path / "eval"),
                       "--env-kwargs", *kv(MASKED)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"train_rllib.py --resume --out {run}" in err.strip().splitlines()[-1]
    (run / MODULE_FOLDER).mkdir()  # torn: the folder without its files
    with pytest.raises(CorruptFileError, match=rf"{run / MODULE_FOLDER / MODULE_INFO} is missing; .*--resume"):
        agents.load(run)


# ---------------------------------------------------------------------------------------------- kill, resume


def train_command(run: Path, *extra: str) -> list[str]:
    return [sys.executable, str(ROOT / "train_rllib.py"), "--out", str(run), *extra]


def wait_for_checkpoint(process: subprocess.Popen, run: Path, iteration: int, log: Path, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            done = json.loads((run / "checkpoint" / "state.json").read_text())["iteration"]
        except (OSError, ValueError, KeyError):
            done = 0
        if done >= iteration:
            return done
        if process.poll() is not None:
            pytest.fail(f"train_rllib.py ended (rc {process.returncode}) before checkpointing iteration {iteration}:\n"
                        f"{log.read_text()[-3000:]}")
        time.sleep(0.05)
    pytest.fail(f"no checkpoint of iteration {iteration} within {timeout_s} s:\n{log.read_text()[-3000:]}")


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL the training process alone (the crash), then what is left of its session (Ray's helpers)."""
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.mark.ray
@needs_rllib
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_a_killed_run_resumes_to_one_timeline_and_a_playable_module(tmp_path, capsys):
    run, log = tmp_path / "run", tmp_path / "train.log"
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    with log.open("w") as out:
        first = subprocess.Popen(train_command(run, "--iterations", "40", "--checkpoint-freq", "1",
                                               "--env-kwargs", *kv(MASKED), "--training", *kv(TINY)),
                                 cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            at_kill = wait_for_checkpoint(first, run, 2, log, timeout_s=240)
        finally:
            kill_group(first)
    assert 2 <= at_kill < 6 and not (run / MODULE_FOLDER).exists()
    with (run / "metrics.jsonl").open("a") as metrics:  # logged after the checkpoint, then torn by the kill
        metrics.write(json.dumps({"kind": "train", "step": 10**6, "iteration": at_kill + 1}) + '\n{"kind": "tr')

    # the killed run: a one-line error naming it, a refusal to start over in it; --resume continues it
    with pytest.raises(CorruptFileError, match=rf"{run} has no trained RL module.*--resume --out {run}"):
        agents.load(run)
    with pytest.raises(SystemExit):
        train_rllib.main(["--out", str(run), "--env-kwargs", *kv(MASKED), "--training", *kv(TINY)])
    assert "already holds a run; pass --resume" in error_line(capsys)

    resumed = subprocess.run(train_command(run, "--resume", "--iterations", "6"), cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=400, start_new_session=True)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert f"resuming {run} from iteration " in resumed.stdout

    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records if r["kind"] == "train"] == [1, 2, 3, 4, 5, 6]  # each once, in order
    steps = [r["step"] for r in records]
    assert steps == sorted(steps) and len(set(steps)) == len(steps)
    assert json.loads((run / "config.json").read_text())["iterations"] == 6
    assert json.loads((run / "checkpoint" / "state.json").read_text())["iteration"] == 6
    assert json.loads((run / MODULE_FOLDER / MODULE_INFO).read_text())["iteration"] == 6

    agent = agents.load(run)
    play = gym.make("SFLEnvAnalytic-v0", **MASKED)
    for seed in range(5):
        obs, _ = play.reset(seed=seed)
        assert agent.predict(obs, play.unwrapped.action_masks()) != 0  # cut 1 is forbidden

    # every file of the saved module and of the checkpoint, each in turn a pickle payload: no code runs
    marker = tmp_path / "marker"
    files = sorted(p.relative_to(run) for folder in (MODULE_FOLDER, "checkpoint")
                   for p in (run / folder).rglob("*") if p.is_file())
    assert any(p.suffix == ".pkl" for p in files) and Path(MODULE_FOLDER, MODULE_WEIGHTS) in files
    outcomes = {}
    for relative in files:
        copy = tmp_path / "poisoned"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(run, copy)
        plant(copy / relative, marker)
        outcomes[str(relative)] = check_plays_safely(copy, copy / relative, marker)
    assert {name for name, outcome in outcomes.items() if outcome != "loaded"} == {
        str(Path(MODULE_FOLDER, MODULE_WEIGHTS)), str(Path(MODULE_FOLDER, MODULE_INFO))}
