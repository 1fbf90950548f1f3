"""train_agent.py end to end: run folder, offline W&B, Ctrl-C and resume, and its error messages."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import agents
import train_agent
from evaluation.tracking import read_jsonl, rewind_run

ROOT = Path(__file__).resolve().parents[1]
# No time budget: every episode lasts its 20 rounds whatever cuts an untrained agent tries.
SHORT_EPISODES = ["--env-kwargs", "max_rounds=20", "time_budget_s=None"]
QUIET = ["--eval-episodes", "2", "--no-progress"]
FAST = [*SHORT_EPISODES, *QUIET, "--hyperparams", "learning_starts=50", "batch_size=16", "log_interval=100"]


@pytest.mark.slow
def test_run_folder_holds_config_metrics_model_summary_and_offline_wandb(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = tmp_path / "run"
    code = train_agent.main(["--agent", "ddqn", "--total-steps", "400", "--out", str(run), "--seed", "2",
                             "--track", "--wandb-mode", "offline", "--checkpoint-freq", "200", *FAST])
    assert code == 0
    config = json.loads((run / "config.json").read_text())
    assert config["agent"] == "ddqn" and config["env_kwargs"] == {"max_rounds": 20, "time_budget_s": None}
    assert config["hyperparameters"]["batch_size"] == 16 and config["hyperparameters"]["gamma"] == 0.99

    records = read_jsonl(run / "metrics.jsonl")
    kinds = {r["kind"] for r in records}
    assert {"episode", "eval", "train"} <= kinds
    episodes = [r for r in records if r["kind"] == "episode"]
    assert [r["step"] for r in episodes] == [20 * (i + 1) for i in range(len(episodes))]
    assert all(np.isfinite(r["return"]) and r["length"] == 20 for r in episodes)
    assert (run / "episodes.csv").read_text().count("\n") == len(episodes) + 1

    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 400 and summary["seed"] == 2 and not summary["interrupted"]
    assert summary["eval_episodes"] == 2 and np.isfinite(summary["eval_std_return"])
    assert summary["random_mean_return"] < summary["oracle_mean_return"]
    assert summary["score_reference"] == "planner" and np.isfinite(summary["planner_mean_return"])
    assert np.isfinite(summary["normalised_score"])
    best = summary["best_model"]
    assert best["step"] % 40 == 0 and np.isfinite(best["normalised_score"])
    evals = [r for r in records if r["kind"] == "eval"]
    assert {r["split"] for r in evals} == {"validation", "test"}
    assert best["validation_return"] == max(r["mean_return"] for r in evals if r["split"] == "validation")
    assert agents.load(run, model="best_model").predict(np.zeros(config["obs_dim"], np.float32)) in (0, 1, 2)

    offline = list((run / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(offline) == 1
    logged = offline[0].read_bytes()
    assert b"validation/mean_return" in logged and b"test/mean_return" in logged and b"rollout/return" in logged and b"train/loss" in logged

    agent = agents.load(run)
    assert isinstance(agent, agents.DDQNAgent) and agent.num_steps == 400
    assert agent.predict(np.zeros(config["obs_dim"], np.float32), np.array([False, False, True, False, False])) == 2


def test_an_unreachable_wandb_host_falls_back_to_offline_at_once(tmp_path, monkeypatch):
    # W&B used to wait about 100 s on a dead host before its warning
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # the discard port: nothing listens
    run = tmp_path / "run"
    start = time.perf_counter()
    with pytest.warns(RuntimeWarning, match=r"W&B host unreachable \(127.0.0.1:9: Connection refused\)"):
        assert train_agent.main(["--agent", "random", "--total-steps", "20", "--out", str(run), "--track",
                                 "--wandb-mode", "online", "--no-reference", *SHORT_EPISODES, *QUIET]) == 0
    assert time.perf_counter() - start < 60
    assert list((run / "wandb").glob("offline-run-*/run-*.wandb"))


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_and_resume_reaches_the_same_total(tmp_path):
    run = tmp_path / "run"
    command = [sys.executable, str(ROOT / "train_agent.py"), "--agent", "ddqn", "--total-steps", "200000",
               "--out", str(run), "--checkpoint-freq", "100000", "--eval-freq", "100000", *FAST]
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=os.environ | {"PYTHONPATH": str(ROOT)})
    deadline = time.time() + 120
    while time.time() < deadline and not _episodes_logged(run, 5):
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "--resume" in out
    state = json.loads((run / "checkpoint" / "state.json").read_text())
    interrupted_at = state["num_steps"]
    assert 100 <= interrupted_at < 200_000
    summary = json.loads((run / "summary.json").read_text())
    assert summary["interrupted"] and summary["steps"] == interrupted_at

    total = interrupted_at + 300
    assert train_agent.main(["--resume", "--out", str(run), "--total-steps", str(total), "--no-progress"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == total and not summary["interrupted"]
    assert agents.load(run).num_steps == total
    steps = [r["step"] for r in read_jsonl(run / "metrics.jsonl") if r["kind"] == "episode"]
    assert steps == sorted(steps) and steps[-1] <= total


def _episodes_logged(run: Path, count: int) -> bool:
    path = run / "metrics.jsonl"
    return path.is_file() and sum(1 for r in read_jsonl(path) if r["kind"] == "episode") >= count


@pytest.mark.parametrize("argv, message", [
    (["--agent", "dqnn"], "unknown agent 'dqnn' (did you mean 'dqn'?)"),
    (["--env-id", "SFLEnvAnalytic-v9"], "--env-id 'SFLEnvAnalytic-v9' is not registered (did you mean"),
    (["--env-kwargs", "rho"], "override 'rho' is malformed; expected key=value"),
    (["--env-kwargs", "rho=7"], "rho=7"),
    (["--env-kwargs", "colour=red"], "colour"),
    (["--hyperparams", "gama=0.5"], "unknown ddqn hyperparameter 'gama'"),
    (["--n-envs", "0"], "--n-envs=0 is out of range"),
    (["--resume", "--out", "nowhere"], "nothing to resume"),
    # each of these used to be accepted, then failed (or silently changed the run) after setup
    (["--eval-freq", "0"], "--eval-freq=0 is out of range; allowed: an integer >= 1"),
    (["--eval-freq", "-5"], "--eval-freq=-5 is out of range"),
    (["--env-id", "CartPole-v1"], "--env-id 'CartPole-v1' is not an SFL-Env task; allowed: SFLEnv-v0"),
    (["--hyperparams", "learning_rate=abc"], "--hyperparams learning_rate='abc' is invalid; allowed: a number"),
    (["--env-kwargs", "min_client_blocks=100"], "min_client_blocks=100"),  # found by the probe reset
    (["--out", "a-file"], "--out a-file is a file"),
])
def test_bad_arguments_exit_with_a_clear_message(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(SystemExit) as exit_info:
        train_agent.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_refuses_to_overwrite_an_existing_run(tmp_path, capsys):
    run = tmp_path / "run"
    assert train_agent.main(["--agent", "random", "--total-steps", "20", "--out", str(run), *SHORT_EPISODES, *QUIET]) == 0
    with pytest.raises(SystemExit):
        train_agent.main(["--agent", "random", "--total-steps", "20", "--out", str(run), *SHORT_EPISODES, *QUIET])
    assert "already holds a run; pass --resume" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("agent", ["ddqn", "ppo"])
def test_subprocess_vector_env_trains_with_two_workers(tmp_path, agent):
    run = tmp_path / "run"
    hyper = ["--hyperparams", "learning_starts=50", "batch_size=16"] if agent == "ddqn" else \
        ["--hyperparams", "n_steps=32", "batch_size=32", "n_epochs=1"]
    assert train_agent.main(["--agent", agent, "--n-envs", "2", "--total-steps", "128", "--out", str(run),
                             "--no-reference", *SHORT_EPISODES, *QUIET,
                             *hyper]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 128 and "normalised_score" not in summary
    episodes = [r for r in read_jsonl(run / "metrics.jsonl") if r["kind"] == "episode"]
    assert len(episodes) >= 2 and all(r["length"] == 20 for r in episodes)


@pytest.mark.parametrize("agent, hyper", [
    ("ppo", ["n_steps=64", "batch_size=32", "n_epochs=1"]),
    ("a2c", ["n_steps=7"]),
    ("dqn", ["learning_starts=20", "train_freq=8"]),
    ("ddqn", ["learning_starts=20", "batch_size=16"]),
])
def test_every_agent_stops_at_exactly_the_total_steps(tmp_path, agent, hyper):
    # PPO used to finish its rollout: 2500 requested, 3072 done (and 2883 after an interruption)
    run = tmp_path / "run"
    argv = ["--agent", agent, "--total-steps", "100", "--out", str(run), "--no-reference", *SHORT_EPISODES, *QUIET,
            "--hyperparams", *hyper]
    assert train_agent.main(argv) == 0
    assert json.loads((run / "summary.json").read_text())["steps"] == 100
    assert train_agent.main(["--resume", "--out", str(run), "--total-steps", "150", "--no-progress",
                             "--no-reference"]) == 0
    assert json.loads((run / "summary.json").read_text())["steps"] == 150


@pytest.mark.parametrize("option, message", [
    (["--agent", "ppo"], "--agent 'ppo' contradicts the run's config.json (agent 'ddqn')"),
    (["--seed", "3"], "--seed 3 contradicts the run's config.json (seed 0)"),
    (["--env-kwargs", "max_rounds=30"], "--env-kwargs {'max_rounds': 30} contradicts the run's config.json"),
    (["--hyperparams", "gamma=0.5"], "--hyperparams {'gamma': 0.5} contradicts"),
    (["--eval-freq", "7"], "--eval-freq 7 contradicts"),
])
def test_a_resume_refuses_options_that_contradict_the_run(tmp_path, capsys, option, message):
    # --resume used to ignore a different --agent, --seed or --env-kwargs without a word
    run = tmp_path / "run"
    assert train_agent.main(["--agent", "ddqn", "--total-steps", "40", "--out", str(run), "--no-reference",
                             *FAST]) == 0
    with pytest.raises(SystemExit) as exit_info:
        train_agent.main(["--resume", "--out", str(run), "--total-steps", "60", *option])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    # the run's own values may be repeated
    assert train_agent.main(["--resume", "--out", str(run), "--total-steps", "60", "--agent", "ddqn",
                             "--env-kwargs", "max_rounds=20", "--no-progress", "--no-reference"]) == 0


def test_an_unexpected_failure_keeps_a_resumable_checkpoint(tmp_path, monkeypatch, capsys):
    from agents.ddqn import DDQNAgent

    original = DDQNAgent._update
    calls = {"n": 0}

    def failing_update(self):
        calls["n"] += 1
        if calls["n"] == 100:
            raise RuntimeError("injected backend failure")
        return original(self)

    monkeypatch.setattr(DDQNAgent, "_update", failing_update)
    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match="injected"):
        train_agent.main(["--agent", "ddqn", "--total-steps", "400", "--out", str(run), *FAST])
    assert "a checkpoint is saved" in capsys.readouterr().err
    state = json.loads((run / "checkpoint" / "state.json").read_text())
    # Learning starts after 50 steps; the 100th update fails in step 150, whose transition is stored.
    assert state["num_steps"] == 150
    monkeypatch.setattr(DDQNAgent, "_update", original)
    assert train_agent.main(["--resume", "--out", str(run), "--no-progress"]) == 0
    assert json.loads((run / "summary.json").read_text())["steps"] == 400


def test_a_learner_that_refuses_its_settings_names_the_error_and_leaves_the_folder_reusable(tmp_path, capsys):
    # used to end in "'NoneType' object has no attribute 'save'" and leave config.json behind, so a
    # rerun said the folder "already holds a run" and --resume failed the same way
    run = tmp_path / "run"
    argv = ["--agent", "ppo", "--total-steps", "64", "--out", str(run), "--no-reference", *SHORT_EPISODES, *QUIET]
    with pytest.raises(SystemExit) as exit_info:
        train_agent.main([*argv, "--hyperparams", "n_steps=0"])
    assert exit_info.value.code == 2
    assert "ppo could not start: `n_steps * n_envs` must be greater than 1" in capsys.readouterr().err
    assert not (run / "config.json").exists() and not (run / "checkpoint.tmp").exists()
    assert train_agent.main([*argv, "--hyperparams", "n_steps=32", "batch_size=16"]) == 0


@pytest.mark.parametrize("torn", ["state.json", "replay.npz"])
def test_a_corrupt_checkpoint_is_named_on_resume(tmp_path, capsys, torn):
    run = tmp_path / "run"
    argv = ["--agent", "ddqn", "--total-steps", "200", "--out", str(run), "--checkpoint-freq", "100", *FAST]
    assert train_agent.main(argv) == 0
    path = run / "checkpoint" / torn
    assert path.is_file()
    path.write_bytes(path.read_bytes()[:10])
    with pytest.raises(SystemExit) as exit_info:
        train_agent.main(["--resume", "--out", str(run), "--total-steps", "300", "--no-progress"])
    assert exit_info.value.code == 2
    assert f"the checkpoint {run / 'checkpoint'} is unreadable" in capsys.readouterr().err


def test_a_corrupt_run_config_is_named_on_resume(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text('{"agent": "dd')
    with pytest.raises(SystemExit):
        train_agent.main(["--resume", "--out", str(run)])
    assert f"{run / 'config.json'} is corrupt" in capsys.readouterr().err


def test_the_best_model_comes_back_with_its_checkpoint(tmp_path):
    run, checkpoint = tmp_path / "run", tmp_path / "run" / "checkpoint"
    checkpoint.mkdir(parents=True)
    (run / "best_model.pt").write_text("found after the checkpoint, then lost")
    (checkpoint / "best_model.pt").write_text("the best when the checkpoint was written")
    (run / "metrics.jsonl").write_text('{"kind": "eval", "step": 10}\n{"kind": "eval", "step": 30}\n{"kind": "ev')
    rewind_run(run, checkpoint, {"num_steps": 20})  # a checkpoint without line counts: cut by step
    assert (run / "best_model.pt").read_text() == "the best when the checkpoint was written"
    assert [r["step"] for r in read_jsonl(run / "metrics.jsonl")] == [10]
    rewind_run(run, None, None)  # resuming without a checkpoint starts clean
    assert not (run / "best_model.pt").exists() and not (run / "metrics.jsonl").exists()
