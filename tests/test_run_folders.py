"""Run folders as people share them: one writer at a time, no code from their files, clear errors for
foreign and mismatched folders, and a clean exit when Ctrl-C comes early."""

import base64
import json
import os
import pickle
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import agents
import evaluate
import train_agent
from evaluation.tracking import read_jsonl
from sfl_env.errors import CorruptFileError
from sfl_env.locking import FolderBusyError, FolderLock, holder_of

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
DIGITS = ["--env-kwargs", "preset=digits", "max_rounds=20", "time_budget_s=None", "privacy=penalty"]
QUICK = ["--eval-episodes", "1", "--no-progress", "--no-reference", "--torch-threads", "1"]

HOLD_LOCK = """
import sys, time
from sfl_env.locking import FolderLock
lock = FolderLock(sys.argv[1], sys.argv[2]).acquire()
print("held", flush=True)
time.sleep(120)
"""


def hold_lock(folder: Path, command: str) -> subprocess.Popen:
    """A process holding ``folder``'s lock until it is killed."""
    process = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(folder), command], cwd=ROOT, env=ENV,
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    return process


# ------------------------------------------------------------------------------------------------ the lock


def test_a_lock_is_exclusive_names_its_holder_and_dies_with_it(tmp_path):
    folder = tmp_path / "run"
    holder = hold_lock(folder, "train_agent.py")
    try:
        assert holder_of(folder)["pid"] == holder.pid
        with pytest.raises(FolderBusyError, match=rf"in use by train_agent.py \(pid {holder.pid}, since "):
            FolderLock(folder, "evaluate.py").acquire()
    finally:
        holder.send_signal(signal.SIGKILL)  # a killed writer leaves no stale lock behind
        holder.wait()
    assert holder_of(folder) is None
    with FolderLock(folder, "evaluate.py") as lock:
        assert lock.held and holder_of(folder)["command"] == "evaluate.py"
    assert holder_of(folder) is None


@pytest.mark.slow
def test_a_second_train_agent_on_a_live_run_is_refused_and_the_first_keeps_one_timeline(tmp_path):
    run = tmp_path / "run"
    steps = 8000  # long enough (~15 s on an idle machine) to outlive both tries of the second process
    first = subprocess.Popen(
        [sys.executable, str(ROOT / "train_agent.py"), "--agent", "ddqn", "--total-steps", str(steps), "--out", str(run),
         "--checkpoint-freq", "500", *DIGITS, *QUICK, "--hyperparams", "learning_starts=50", "batch_size=16"],
        cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (run / "metrics.jsonl").is_file():
        time.sleep(0.1)
    for argv in ([*DIGITS, *QUICK, "--agent", "ddqn", "--total-steps", "1500", "--out", str(run)],
                 ["--resume", "--out", str(run), "--no-progress"]):
        assert first.poll() is None, "the first run ended before the second could try"
        second = subprocess.run([sys.executable, str(ROOT / "train_agent.py"), *argv], cwd=tmp_path, env=ENV,
                                capture_output=True, text=True, timeout=120)
        assert second.returncode == 2, second.stderr
        assert f"--out {run} is in use by train_agent.py (pid {first.pid}" in second.stderr
        assert "Traceback" not in second.stderr
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    records = read_jsonl(run / "metrics.jsonl")
    episodes = [r for r in records if r["kind"] == "episode"]  # every episode once, in order, to the end
    assert [r["episode"] for r in episodes] == list(range(1, len(episodes) + 1))
    assert all(a["step"] < b["step"] for a, b in zip(episodes, episodes[1:])) and episodes[-1]["step"] > steps - 100
    assert json.loads((run / "summary.json").read_text())["steps"] == steps


@pytest.mark.slow
def test_a_second_evaluate_on_one_out_is_refused_and_the_first_writes_each_episode_once(tmp_path, capsys):
    out = tmp_path / "evaluation"
    argv = ["--mode", "cuts", "--env-id", "SFLEnvAnalytic-v0", "--env-kwargs", "preset=digits", "max_rounds=40",
            "--seeds", "20", "--episodes", "2", "--out", str(out)]
    # A tiny evaluation here first, so that the second try below starts at once (its envs built and compiled
    # kernels loaded before), while the first is still playing its seconds of episodes.
    assert evaluate.main([*argv[:-6], "--seeds", "1", "--episodes", "1", "--out", str(tmp_path / "warm")]) == 0
    capsys.readouterr()
    first = subprocess.Popen([sys.executable, str(ROOT / "evaluate.py"), *argv], cwd=tmp_path, env=ENV,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "results.csv").is_file():
        time.sleep(0.05)
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(argv)
    assert first.poll() is None, "the first evaluation ended before the second could try"
    assert exit_info.value.code == 2
    assert f"{out} is in use by evaluate.py (pid {first.pid}" in capsys.readouterr().err
    assert first.wait(timeout=300) == 0
    traces = [json.loads(line) for line in (out / "traces.jsonl").read_text().splitlines()]
    keys = [(t["agent"], t["seed_index"], t["episode"]) for t in traces]
    assert len(keys) == len(set(keys)) == 3 * 20 * 2  # 3 cuts x 20 seeds x 2 episodes, each once


def test_evaluate_names_an_out_it_cannot_write(tmp_path, capsys):
    (tmp_path / "a-file").write_text("")
    for out in (tmp_path / "a-file" / "evaluation", Path("/proc/sfl-env-evaluation")):
        with pytest.raises(SystemExit) as exit_info:
            evaluate.main(["--mode", "cuts", "--env-id", "SFLEnvAnalytic-v0", "--env-kwargs", "preset=digits",
                           "--seeds", "1", "--out", str(out)])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert f"--out {out} cannot be written: " in err and "Traceback" not in err


# ------------------------------------------------------------------------------------- no code from files


class _Payload:
    """Unpickling this makes a folder: the proof that a loader ran code from a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def _payload(marker: Path) -> bytes:
    return pickle.dumps(_Payload(marker))


def _train(tmp_path: Path, agent: str, name: str, *hyperparams: str) -> Path:
    run = tmp_path / name
    assert train_agent.main(["--agent", agent, "--total-steps", "120", "--out", str(run), "--checkpoint-freq", "60",
                             "--eval-freq", "60", *DIGITS, *QUICK, "--hyperparams", "learning_starts=20",
                             *hyperparams]) == 0
    return run


def _plant_in_sb3_zip(path: Path, marker: Path, entries: str) -> None:
    """Rewrites an SB3 model.zip with the payload in its ``data``'s pickled entries or its tensor files."""
    with zipfile.ZipFile(path) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    if entries == "data":
        data = json.loads(files["data"])
        planted = 0
        for value in data.values():
            if isinstance(value, dict) and ":serialized:" in value:
                value[":serialized:"] = base64.b64encode(_payload(marker)).decode()
                planted += 1
        assert planted >= 5  # the policy class, the spaces, the schedules, the buffers
        files["data"] = json.dumps(data).encode()
    else:
        for name in files:
            if name.endswith(".pth"):
                files[name] = _payload(marker)
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)


@pytest.mark.slow
def test_an_sb3_run_folder_with_payloads_runs_no_code(tmp_path):
    run = _train(tmp_path, "dqn", "dqn", "buffer_size=500", "batch_size=16")
    marker = tmp_path / "code-ran"
    obs = np.random.default_rng(0).random((20, json.loads((run / "config.json").read_text())["obs_dim"]),
                                        dtype=np.float32)
    before = [agents.load(run).predict(o) for o in obs]

    # the pickled entries of data: never decoded; the model is rebuilt from config.json and the tensors
    for model in (run / "model.zip", run / "best_model.zip", run / "checkpoint" / "model.zip"):
        _plant_in_sb3_zip(model, marker, "data")
    assert [agents.load(run).predict(o) for o in obs] == before
    assert [agents.load(run, model="best_model").predict(o) is not None for o in obs]
    env = gym.make("SFLEnvAnalytic-v0", preset="digits", privacy="penalty")
    agent = agents.sb3.SB3Agent("dqn", 5, **json.loads((run / "config.json").read_text())["hyperparameters"])
    agent.load_checkpoint(run / "checkpoint", env=env)
    assert agent.num_steps == 120
    np.savez(run / "checkpoint" / "replay.npz", observations=np.array([_Payload(marker)], dtype=object), pos=0, full=False)
    with pytest.raises(CorruptFileError, match=r"checkpoint/replay.npz is not a replay buffer"):
        agent.load_checkpoint(run / "checkpoint", env=env)

    # the tensor files: torch refuses them (weights only), and the error names the file
    _plant_in_sb3_zip(run / "model.zip", marker, "tensors")
    with pytest.raises(CorruptFileError, match=r"model.zip is not a readable SB3 model \(UnpicklingError"):
        agents.load(run)
    assert not marker.exists()


@pytest.mark.slow
def test_a_ddqn_run_folder_with_payloads_runs_no_code(tmp_path):
    run = _train(tmp_path, "ddqn", "ddqn", "batch_size=16")
    marker = tmp_path / "code-ran"
    payload = _Payload(marker)
    for model in (run / "model.pt", run / "best_model.pt", run / "checkpoint" / "model.pt"):
        torch.save({"weights": payload}, model)
    with pytest.raises(Exception, match="model.pt"):
        agents.load(run)
    with pytest.raises(Exception, match="best_model.pt"):
        agents.load(run, model="best_model")
    np.savez(run / "checkpoint" / "replay.npz", observations=np.array([payload], dtype=object))
    with pytest.raises(SystemExit):
        train_agent.main(["--resume", "--out", str(run), "--no-progress"])
    assert not marker.exists()


# ----------------------------------------------------------------------------- foreign and mismatched runs


@pytest.mark.parametrize("content, message", [
    ({"name": "resnet", "epochs": 90}, "key 'agent' is missing; a run's config.json holds agent, env_id"),
    ({"agent": "ddqn", "env_id": "SFLEnvAnalytic-v0", "env_kwargs": {}, "seed": 0},
     "key 'n_actions' is missing"),
    ({"agent": "ddqn", "env_id": "SFLEnvAnalytic-v0", "env_kwargs": {}, "seed": "zero", "n_actions": 5},
     "seed='zero' is not a int"),
    ({"agent": "alphago", "env_id": "SFLEnvAnalytic-v0", "env_kwargs": {}, "seed": 0, "n_actions": 5},
     "unknown agent 'alphago'"),
    ([1, 2, 3], "it holds a list, not a mapping"),
])
def test_a_foreign_or_incomplete_config_gets_one_line_everywhere(tmp_path, capsys, content, message):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(content))
    with pytest.raises(CorruptFileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        agents.load(run)
    for main, argv in ((evaluate.main, ["--mode", "agents", "--agents", str(run), "--seeds", "1",
                                        "--out", str(tmp_path / "evaluation")]),
                       (train_agent.main, ["--resume", "--out", str(run)])):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and "KeyError" not in err
    assert not (tmp_path / "evaluation").exists()


@pytest.mark.slow
def test_a_run_played_on_an_env_of_another_shape_names_the_options_it_was_trained_with(tmp_path, capsys):
    run = _train(tmp_path, "ddqn", "ddqn", "batch_size=16")
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(["--mode", "agents", "--agents", str(run), "--seeds", "1", "--out", str(tmp_path / "e")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert (f"{run} was trained on SFLEnvAnalytic-v0 with env options preset=digits max_rounds=20 "
            "time_budget_s=None privacy=penalty (3 cuts, 28 observations); this env has 5 cuts") in err
    assert "pass --env-id SFLEnvAnalytic-v0 --env-kwargs preset=digits max_rounds=20" in err
    with pytest.raises(ValueError, match="was trained on SFLEnvAnalytic-v0 with env options preset=digits"):
        agents.load(run, env=gym.make("SFLEnvAnalytic-v0"))


# ---------------------------------------------------------------------------------------------- Ctrl-C


def test_ctrl_c_while_train_agent_starts_exits_130_without_a_traceback(tmp_path):
    process = subprocess.Popen([sys.executable, str(ROOT / "train_agent.py"), "--out", str(tmp_path / "run")],
                               cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)  # inside the imports of torch and gymnasium
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert "Ctrl-C before training started" in err
