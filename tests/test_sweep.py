"""sweep.py: the search-space file, each trial's train_agent.py command line, and a real 2-trial Ray Tune
sweep on a local Ray with 2 CPUs, interrupted with Ctrl-C and resumed to the end."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import sweep

ROOT = Path(__file__).resolve().parents[1]

TINY = """
agent: ddqn
env_id: SFLEnvAnalytic-v0
env_kwargs: {preset: digits, max_rounds: 30}
total_steps: 600
eval_freq: 150
eval_episodes: 1
checkpoint_freq: 150
seeds: [0, 1]
search:
  learning_rate: {loguniform: [1.0e-4, 1.0e-2]}
  learning_starts: {choice: [50]}
asha: {grace_period: 4}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.yml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, message", [
    ("agent: ddqn\nseeds: [0]\nlearning_rate: 0.1\n", "unknown key(s) ['learning_rate']"),
    ("agent: random\n", "agent 'random' is not a learner"),
    ("agent: ddqn\nsearch: {gamma: {normal: [0.9, 0.1]}}\n", "search.gamma must be one of"),
    ("agent: ddqn\ntotal_steps: 1000\neval_freq: 500\nasha: {grace_period: 3}\n",
     "asha.grace_period=3 is out of range; allowed: 1 to 2"),
    ("agent: ddqn\nenv_id: CartPole-v1\n", "env_id 'CartPole-v1' is not an SFL-Env task"),
])
def test_a_bad_sweep_file_is_named_before_ray_starts(tmp_path, capsys, text, message):
    with pytest.raises(SystemExit) as exit_info:
        sweep.main([str(write(tmp_path, text)), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_trial_is_train_agent_with_its_seed_and_hyperparameters(tmp_path):
    spec = sweep.load_spec(write(tmp_path, TINY))
    argv = sweep.trial_argv(spec, {"seed": 1, "hyperparameters": {"learning_rate": 0.001}}, tmp_path / "run")
    assert argv[argv.index("--seed") + 1] == "1" and argv[argv.index("--total-steps") + 1] == "600"
    assert argv[argv.index("--hyperparams") + 1:argv.index("--hyperparams") + 2] == ["learning_rate=0.001"]
    assert argv[argv.index("--env-kwargs") + 1:argv.index("--env-kwargs") + 3] == ["preset=digits", "max_rounds=30"]
    import train_agent

    args = train_agent.build_parser().parse_args(argv)  # train_agent.py accepts every option the sweep writes
    assert args.agent == "ddqn" and args.eval_freq == 150


@pytest.mark.parametrize("value", [None, True, False, [64, 64], {"net_arch": [32]}, 0.001, 7, "MlpPolicy"])
def test_a_trial_passes_every_kind_of_value_as_train_agent_reads_it_back(tmp_path, value):
    # None and booleans used to travel as JSON ("null", "true"), which the parser read as strings: a
    # sweep over learning_rate_final: {choice: [null, 1.0e-5]} crashed every trial that drew null
    from sfl_env.config import parse_overrides

    spec = sweep.load_spec(write(tmp_path, TINY))
    argv = sweep.trial_argv(spec, {"seed": 0, "hyperparameters": {"x": value}}, tmp_path / "run")
    assert parse_overrides([argv[argv.index("--hyperparams") + 1]]) == {"x": value}


def test_a_failed_trial_leaves_its_own_error_where_trials_md_reads_it(tmp_path):
    # a trial used to die with "Worker exits with an exit code 2": its reason was only in Ray's logs
    import train_agent

    run = tmp_path / "runs" / "trial_0"
    with pytest.raises(RuntimeError, match="unknown ddqn hyperparameter 'gama'"):
        sweep.run_trial(lambda: train_agent.main(["--agent", "ddqn", "--out", str(run), "--hyperparams", "gama=0.9",
                                                  "--no-progress"]), run)
    assert "unknown ddqn hyperparameter 'gama'" in sweep.trial_error(run)
    with pytest.raises(RuntimeError, match="invalid int value: 'abc'"):
        sweep.run_trial(lambda: train_agent.main(["--agent", "ddqn", "--total-steps", "abc"]), tmp_path / "t1")
    assert "exited with 2" in (tmp_path / "t1" / sweep.TRIAL_ERROR).read_text()
    sweep.run_trial(lambda: 0, tmp_path / "t2")  # a trial that succeeds leaves nothing
    assert not (tmp_path / "t2").exists()


@pytest.mark.slow
@pytest.mark.ray
def test_a_two_trial_sweep_interrupted_and_resumed_finishes_every_run_folder(tmp_path):
    # Trials long enough (seconds on the twin) to be interrupted after their first evaluation, before their end;
    # still four evaluations each, the ASHA grace period, so that no trial is stopped early.
    longer = TINY.replace("total_steps: 600", "total_steps: 1800").replace("eval_freq: 150", "eval_freq: 450")
    spec, out = write(tmp_path, longer), tmp_path / "sweeps"
    command = [sys.executable, str(ROOT / "sweep.py"), str(spec), "--out", str(out), "--num-cpus", "2"]
    runs = out / "spec" / "runs"
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and process.poll() is None:  # Ctrl-C once a trial has validated
            if any('"kind": "eval"' in p.read_text() for p in runs.glob("*/metrics.jsonl")):
                break
            time.sleep(0.5)
        process.send_signal(signal.SIGINT)
        _, error = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130, error[-2000:]
    assert "--resume" in error
    assert not all((run / "summary.json").is_file() for run in runs.iterdir())

    resumed = subprocess.run(command + ["--resume"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    folders = sorted(runs.iterdir())
    assert len(folders) == 2
    for run in folders:
        summary = json.loads((run / "summary.json").read_text())
        assert summary["steps"] == 1800
        episodes = [json.loads(line)["episode"] for line in (run / "metrics.jsonl").read_text().splitlines()
                    if '"kind": "episode"' in line]
        assert episodes == list(range(1, len(episodes) + 1))  # one timeline across the interruption
    table = (out / "spec" / "trials.md").read_text()
    assert all(run.name in table for run in folders) and table.count("| done |") == 2
    best = json.loads((out / "spec" / "best.json").read_text())
    assert best["trial"] in {run.name for run in folders} and "learning_rate" in best["hyperparameters"]


@pytest.mark.slow
@pytest.mark.ray
def test_a_sweep_whose_trial_fails_exits_1_naming_the_trial_and_its_error(tmp_path):
    # a batch larger than the replay buffer passes the spec's checks; DDQN refuses it when the trial builds it
    spec = write(tmp_path, TINY.replace("seeds: [0, 1]", "seeds: [0]").replace(
        "learning_starts: {choice: [50]}", "batch_size: {choice: [20000]}"))
    out = tmp_path / "sweeps"
    done = subprocess.run([sys.executable, str(ROOT / "sweep.py"), str(spec), "--out", str(out), "--num-cpus", "1"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr[-2000:]
    [run] = (out / "spec" / "runs").iterdir()
    assert f"1 of 1 trial(s) failed" in done.stderr and f"  {run.name}: " in done.stderr, done.stderr[-2000:]
    assert "batch_size" in done.stderr.split(f"  {run.name}: ")[1]
    assert f"| {run.name} |" in (out / "spec" / "trials.md").read_text()
    from sfl_env.locking import LOCK_FILE, holder_of

    assert (out / "spec" / LOCK_FILE).is_file() and holder_of(out / "spec") is None  # held while it ran, only
