"""Fault injection: a full disk, and SIGKILL at chosen points of train_agent.py and evaluate.py.

Each kill is a real ``SIGKILL`` of a real process. The process is started through :data:`KILLER`,
which wraps one named function so that its n-th call kills the process, so every point is hit
deterministically (a kill at a random time would test a different point on every run). The full
disk is a real tmpfs mount in a private mount namespace where the machine allows one (root or user
namespaces), and an injected ``ENOSPC`` otherwise.
"""

from __future__ import annotations

import csv
import errno
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import train_agent
from evaluation import checkpoints
from evaluation.tracking import read_jsonl

ROOT = Path(__file__).resolve().parents[1]

# python -c KILLER MODULE:ATTRIBUTE N SCRIPT ARGS...: runs SCRIPT with ARGS, killed by SIGKILL on the N-th
# call of MODULE.ATTRIBUTE (ATTRIBUTE may be Class.method).
KILLER = """
import importlib, os, runpy, signal, sys
target, count, script = sys.argv[1], int(sys.argv[2]), sys.argv[3]
module_name, _, path = target.partition(":")
owner = importlib.import_module(module_name)
*parents, name = path.split(".")
for parent in parents:
    owner = getattr(owner, parent)
original, calls = getattr(owner, name), [0]
def killer(*args, **kwargs):
    calls[0] += 1
    if calls[0] == count:
        os.kill(os.getpid(), signal.SIGKILL)
    return original(*args, **kwargs)
setattr(owner, name, killer)
sys.argv = [script, *sys.argv[4:]]
sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
runpy.run_path(script, run_name="__main__")
"""


def run_killed(script: str, target: str, count: int, args: list[str]) -> int:
    """Runs ``script`` with ``args``, SIGKILLed on the ``count``-th call of ``target``; returns its code."""
    process = subprocess.run([sys.executable, "-c", KILLER, target, str(count), str(ROOT / script), *args],
                             cwd=ROOT, capture_output=True, text=True, timeout=300)
    return process.returncode


# ---------------------------------------------------------------------------------------------- train_agent

TRAIN = ["--agent", "ddqn", "--total-steps", "900", "--checkpoint-freq", "300", "--eval-freq", "150",
         "--eval-episodes", "1", "--env-kwargs", "preset=digits", "max_rounds=30", "--no-progress",
         "--no-reference", "--torch-threads", "1", "--hyperparams", "learning_starts=50", "batch_size=16",
         "log_interval=100"]

# (function, call at which the process dies), one run after the other on the same folder: before the first
# checkpoint; while the second checkpoint's files are flushed; between a checkpoint's swap and the removal
# of the old one; while a resumed run cuts its logs back; as the agent starts writing a checkpoint; after
# the last checkpoint and the final model, just before the summary is written.
TRAIN_KILLS = [
    ("evaluation.tracking:RunLog.record", 9),
    ("evaluation.checkpoints:sync_tree", 2),
    ("evaluation.checkpoints:sync_folder", 1),
    ("sfl_env.storage:sync_file", 1),
    ("agents.ddqn:DDQNAgent.save_checkpoint", 1),
    ("sfl_env.storage:write_json", 2),
]


@pytest.mark.slow
def test_train_agent_killed_at_six_points_resumes_to_one_timeline(tmp_path):
    run = tmp_path / "run"
    args = [*TRAIN, "--out", str(run)]
    for number, (target, count) in enumerate(TRAIN_KILLS):
        code = run_killed("train_agent.py", target, count, args if number == 0 else ["--resume", "--out", str(run)])
        assert code == -9, f"{target} #{count} did not kill the run (exit {code})"
    assert not (run / "summary.json").exists()
    assert train_agent.main(["--resume", "--out", str(run), "--no-progress"]) == 0

    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 900
    records = read_jsonl(run / "metrics.jsonl")
    for kind in ("train", "episode", "eval"):
        steps = [r["step"] for r in records if r["kind"] == kind and r.get("split") != "test"]
        assert steps and all(a < b for a, b in zip(steps, steps[1:])), f"{kind} steps {steps}"
    episodes = [r["episode"] for r in records if r["kind"] == "episode"]
    assert episodes == list(range(1, len(episodes) + 1))
    validation = [r["step"] for r in records if r["kind"] == "eval" and r["split"] == "validation"]
    assert validation == list(range(150, 901, 150))
    # the test evaluation of the summary the last kill cut short was logged at the checkpoint's own step
    assert [r["step"] for r in records if r.get("split") == "test"] == [900]
    with (run / "episodes.csv").open() as file:
        assert [int(row["episode"]) for row in csv.DictReader(file)] == episodes
    assert not list(run.glob(".*.partial*")) and not list(run.glob("checkpoint.*"))
    best = json.loads((run / "checkpoint" / "state.json").read_text())
    assert best["best_step"] in validation and (run / "best_model.pt").is_file()


# ---------------------------------------------------------------------------------------------- evaluate

EVALUATE = ["--mode", "cuts", "--env-id", "SFLEnvAnalytic-v0", "--env-kwargs", "preset=digits", "max_rounds=12",
            "--seeds", "2", "--episodes", "2"]

# after 3 episodes are written, between an episode's trace and its row, and before the leaderboard,
# the figures and the claims are written
EVALUATE_KILLS = [
    ("evaluation.results:_row", 4),
    ("evaluation.results:_json_safe", 9),
    ("evaluation.benchmark:leaderboard_markdown", 1),
    ("evaluation.figures:write_figures", 1),
    ("evaluation.benchmark:claims_markdown", 1),
]


def _results(folder: Path) -> list[dict[str, str]]:
    with (folder / "results.csv").open(newline="") as file:
        rows = [row for row in csv.DictReader(file)]
    return sorted(({k: v for k, v in row.items() if k != "wall_s"} for row in rows),
                  key=lambda r: (r["agent"], r["seed_index"], r["episode"]))


def _traces(folder: Path) -> list[dict]:
    traces = [json.loads(line) for line in (folder / "traces.jsonl").read_text().splitlines()]
    return sorted(traces, key=lambda t: (t["agent"], t["seed_index"], t["episode"]))


@pytest.mark.slow
def test_evaluate_killed_at_five_points_resumes_to_the_uninterrupted_results(tmp_path):
    import evaluate

    reference, killed = tmp_path / "reference", tmp_path / "killed"
    assert evaluate.main([*EVALUATE, "--out", str(reference)]) == 0
    for number, (target, count) in enumerate(EVALUATE_KILLS):
        resume = ["--resume"] if number else []
        code = run_killed("evaluate.py", target, count, [*EVALUATE, "--out", str(killed), *resume])
        assert code == -9, f"{target} #{count} did not kill the evaluation (exit {code})"
    assert evaluate.main([*EVALUATE, "--out", str(killed), "--resume"]) == 0

    assert _results(killed) == _results(reference)
    assert _traces(killed) == _traces(reference)
    for name in ("leaderboard.md", "claims.md"):
        assert (killed / name).read_text() == (reference / name).read_text(), name
    assert not list(killed.glob(".*.partial*"))


# ---------------------------------------------------------------------------------------------- full disk

def _checkpoint_step(run: Path) -> int:
    return checkpoints.read_state(run / "checkpoint")["num_steps"]


@pytest.mark.slow
def test_a_failed_write_names_the_path_keeps_the_checkpoint_and_resumes(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    original, calls = checkpoints.sync_tree, []

    def disk_full_at_the_second_checkpoint(folder):
        calls.append(folder)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(Path(folder) / "replay.npz"))
        original(folder)

    monkeypatch.setattr(checkpoints, "sync_tree", disk_full_at_the_second_checkpoint)
    assert train_agent.main([*TRAIN, "--out", str(run)]) == 1
    error = capsys.readouterr().err
    assert f"cannot write {run / 'checkpoint.tmp' / 'replay.npz'}: No space left on device" in error
    assert "the last complete checkpoint (step 300) is kept" in error
    assert _checkpoint_step(run) == 300 and not (run / "checkpoint.tmp").exists()

    monkeypatch.setattr(checkpoints, "sync_tree", original)  # room again
    assert train_agent.main(["--resume", "--out", str(run), "--no-progress"]) == 0
    assert json.loads((run / "summary.json").read_text())["steps"] == 900


def _can_mount_tmpfs() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--mount", "--map-root-user", "sh", "-c",
                            "mount -t tmpfs -o size=1m tmpfs /mnt 2>/dev/null || mount -t tmpfs -o size=1m tmpfs /tmp"],
                           capture_output=True)
    return probe.returncode == 0


# Inside a private mount namespace: a 16 MB tmpfs; train until the first checkpoint, fill the disk, let the
# run fail, copy what it left, free the space and resume.
DISK_FULL = """
set -u
disk="$1"; out="$2"; shift 2
mount -t tmpfs -o size=16m tmpfs "$disk"
"$@" --out "$disk/run" > "$out/first.out" 2> "$out/first.err" &
pid=$!
while [ ! -f "$disk/run/checkpoint/state.json" ] && kill -0 "$pid" 2>/dev/null; do sleep 0.02; done
head -c 64m /dev/zero > "$disk/filler" 2>/dev/null
wait "$pid"; echo "$?" > "$out/first.code"
cp -a "$disk/run" "$out/after-failure"
rm "$disk/filler"
"$@" --out "$disk/run" --resume > "$out/resume.out" 2> "$out/resume.err"; echo "$?" > "$out/resume.code"
cp -a "$disk/run" "$out/resumed"
"""


@pytest.mark.slow
@pytest.mark.skipif(not _can_mount_tmpfs(), reason="no tmpfs mount in a private mount namespace here")
def test_a_full_disk_during_training_keeps_the_checkpoint_and_resumes_once_there_is_room(tmp_path):
    disk, out = tmp_path / "disk", tmp_path / "out"
    disk.mkdir()
    out.mkdir()
    command = [sys.executable, str(ROOT / "train_agent.py"), *TRAIN, "--checkpoint-freq", "500"]
    subprocess.run(["unshare", "--mount", "--map-root-user", "sh", "-c", DISK_FULL, "sh", str(disk), str(out),
                    *command], cwd=ROOT, check=True, timeout=300)
    error = (out / "first.err").read_text()
    assert (out / "first.code").read_text().strip() == "1", error
    assert f"cannot write {disk / 'run'}" in error and "No space left on device" in error
    assert "Traceback" not in error
    failed = out / "after-failure"
    assert _checkpoint_step(failed) == 500 and not (failed / "checkpoint.tmp").exists()
    assert not list(failed.glob(".*.partial*"))

    assert (out / "resume.code").read_text().strip() == "0", (out / "resume.err").read_text()
    assert "resuming" in (out / "resume.out").read_text() and "at step 500" in (out / "resume.out").read_text()
    resumed = out / "resumed"
    assert json.loads((resumed / "summary.json").read_text())["steps"] == 900
    episodes = [r["episode"] for r in read_jsonl(resumed / "metrics.jsonl") if r["kind"] == "episode"]
    assert episodes == list(range(1, len(episodes) + 1))
