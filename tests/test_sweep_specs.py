"""sweep.py refuses a bad sweep early and in one line, and writes a sweep folder alone.

A malformed spec (a wrong type, a value out of range, a distribution of the wrong arity, a hyperparameter
the agent does not take, env options the env refuses) exits 2 with one ``error:`` line naming the file,
the key path and what is allowed, before anything is created; hypothesis feeds the validator random
mappings, which it must accept or refuse with a ``ConfigError``. The sweep folder's lock refuses a
second writer, naming the one that holds it, and leaves its folder as it was.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import agents
import sfl_env
import sweep
from sfl_env.config import parse_overrides
from sfl_env.errors import ConfigError
from sfl_env.locking import LOCK_FILE, FolderLock

ROOT = Path(__file__).resolve().parents[1]

BASE = """agent: ddqn
env_id: SFLEnvAnalytic-v0
env_kwargs: {preset: digits, max_rounds: 30}
total_steps: 600
eval_freq: 150
eval_episodes: 1
seeds: [0]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.yml"
    path.write_text(text)
    return path


def the_error(stderr: str) -> str:
    """argparse's one ``error:`` line, which must end stderr (after the usage lines)."""
    lines = stderr.strip().splitlines()
    errors = [line for line in lines if "error:" in line]
    assert len(errors) == 1 and lines[-1] == errors[0], stderr
    return errors[0]


# (the spec, the key path its error must name)
MALFORMED = [
    ("asha: 5", "asha="),
    ("seeds: 3", "seeds="),
    ("search: [1, 2]", "search="),
    ("asha: {grace_period: abc}", "asha.grace_period="),
    ("search: {learning_rate: {loguniform: [1.0e-3]}}", "search.learning_rate.loguniform="),
    ("samples: -3", "samples="),
    ("samples: 0", "samples="),
    ("samples: true", "samples="),  # a boolean is not an integer
    ("total_steps: true", "total_steps="),
    ("total_steps: 0", "total_steps="),
    ("eval_freq: 2.5", "eval_freq="),
    ("eval_freq: 700", "eval_freq="),  # more than total_steps: no validation to compare
    ("eval_episodes: null", "eval_episodes="),
    ("checkpoint_freq: -1", "checkpoint_freq="),
    ("seeds: []", "seeds="),
    ("seeds: [0, 1.5]", "seeds[1]="),
    ("seeds: [-1]", "seeds[0]="),
    ("env_kwargs: [preset, digits]", "env_kwargs="),
    ("env_kwargs: {preset: '5'}", "env_kwargs.preset="),  # would reach the trial as the number 5
    ("search: {gamma: {uniform: [0.9]}}", "search.gamma.uniform="),
    ("search: {gamma: {uniform: [0.99, 0.9]}}", "search.gamma.uniform="),
    ("search: {gamma: {uniform: [0.9, .inf]}}", "search.gamma.uniform="),
    ("search: {learning_rate: {loguniform: [0, 0.1]}}", "search.learning_rate.loguniform="),
    ("search: {batch_size: {randint: [16, 64.5]}}", "search.batch_size.randint="),
    ("search: {batch_size: {randint: [64, 64]}}", "search.batch_size.randint="),
    ("search: {batch_size: {uniform: [16, 64]}}", "search.batch_size.uniform"),  # an integer hyperparameter
    ("search: {batch_size: {grid: [32, 64.0]}}", "search.batch_size.grid[1]="),
    ("search: {gamma: {choice: []}}", "search.gamma.choice="),
    ("search: {gamma: {grid: 0.9}}", "search.gamma.grid="),
    ("search: {gamma: {choice: [.nan]}}", "search.gamma.choice[0]="),
    ("search: {gama: {choice: [0.9]}}", "search.gama"),  # not a ddqn hyperparameter
    ("search: {n_timesteps: {choice: [100]}}", "search.n_timesteps"),
    ("search: {7: {choice: [1]}}", "search key 7"),
    ("asha: {reduction_factor: 1}", "asha.reduction_factor="),
    ("asha: {reduction_factor: true}", "asha.reduction_factor="),
    ("asha: {grace: 2}", "in asha"),
    ("env_kwargs: {preset: nope}", "env_kwargs"),  # refused by the env itself, built once before Ray
]


@pytest.mark.parametrize("line, key", MALFORMED, ids=[line for line, _ in MALFORMED])
def test_a_malformed_spec_is_one_error_line_naming_the_key_and_leaves_no_folder(tmp_path, capsys, line, key):
    path = write(tmp_path, BASE + line + "\n")
    with pytest.raises(SystemExit) as exit_info:
        sweep.main([str(path), "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert exit_info.value.code == 2, captured.err
    error = the_error(captured.err)
    assert str(path) in error and key in error and ("allowed" in error or "must be one of" in error), error
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("text, message", [
    ("[1, 2]\n", "[1, 2] is invalid; allowed: a mapping with keys agent"),
    ("agent: [\n", "is unreadable"),
    ("env_id: SFLEnvAnalytic-v0\n", "agent is required; allowed: ddqn"),
    ("agent: ppo\nsearch: {n_step: {grid: [1, 8]}}\n",
     "search.n_step: 'n_step' is not a ppo hyperparameter (did you mean 'n_steps'?)"),
    ("agent: ppo\nsearch: {policy: {uniform: [0, 1]}}\n",
     "search.policy.uniform draws numbers, but policy is not a number"),
])
def test_the_whole_file_and_the_agent_s_hyperparameters_are_checked(tmp_path, capsys, text, message):
    with pytest.raises(SystemExit) as exit_info:
        sweep.main([str(write(tmp_path, text)), "--out", str(tmp_path / "out")])
    error = the_error(capsys.readouterr().err)
    assert exit_info.value.code == 2 and message in error, error
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["", ".", "..", "a/b"])
def test_a_name_that_is_not_one_folder_is_refused(tmp_path, capsys, name):
    with pytest.raises(SystemExit) as exit_info:
        sweep.main([str(write(tmp_path, BASE)), "--out", str(tmp_path / "out"), "--name", name])
    error = the_error(capsys.readouterr().err)
    assert exit_info.value.code == 2 and "--name" in error and "allowed: a folder name" in error
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("path", ["ddqn.yml", "ppo.yml"])
def test_the_shipped_sweeps_are_valid(path):
    spec = sweep.load_spec(ROOT / "sweeps" / path)
    assert spec["search"] and spec["total_steps"] % spec["eval_freq"] == 0


# ------------------------------------------------------------------ property: the validator never crashes

LEAVES = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 70_000), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, 2, -1, 2**32, 2**64, 10**400, 1e-320, 0.5, 1.5]),
    st.integers(4300, 4400).map(lambda digits: 10**digits),  # more digits than Python prints
    st.text(max_size=6), st.sampled_from(["ddqn", "ppo", "digits", "1", "nan", "None", "[1]", "a=b"]),
)
JUNK = st.recursive(LEAVES, lambda inner: st.one_of(
    st.lists(inner, max_size=3),
    st.dictionaries(st.one_of(st.text(max_size=5), st.integers(-2, 2), st.none(), st.booleans()), inner, max_size=3),
), max_leaves=8)
NAMES = st.one_of(st.sampled_from(["learning_rate", "gamma", "batch_size", "hidden_sizes", "learning_rate_final",
                                   "n_step", "n_steps", "ent_coef", "policy", "gama", "n_timesteps"]),
                  st.text(max_size=5))
BOUNDS = st.lists(st.one_of(st.integers(-3, 100), st.floats(allow_nan=True, allow_infinity=True), JUNK), max_size=3)
DIMENSIONS = st.one_of(JUNK, st.dictionaries(st.one_of(st.sampled_from(sweep.SPACES), st.text(max_size=4)),
                                             st.one_of(BOUNDS, JUNK), min_size=1, max_size=2))
COUNTS = st.one_of(st.integers(-2, 2000), st.none(), JUNK)
FIELDS = {
    "agent": st.one_of(st.sampled_from(agents.LEARNERS), JUNK),
    "env_id": st.one_of(st.sampled_from(list(sfl_env.TASK_IDS)), JUNK),
    "env_kwargs": st.one_of(st.dictionaries(st.sampled_from(["preset", "max_rounds", "x y"]), JUNK, max_size=2), JUNK),
    "total_steps": COUNTS, "eval_freq": COUNTS, "eval_episodes": COUNTS, "checkpoint_freq": COUNTS, "samples": COUNTS,
    "seeds": st.one_of(st.lists(st.one_of(st.integers(-2, 2**33), JUNK), max_size=3), JUNK),
    "search": st.one_of(st.dictionaries(NAMES, DIMENSIONS, max_size=3), JUNK),
    "asha": st.one_of(st.dictionaries(st.sampled_from(["grace_period", "reduction_factor", "grace"]),
                                      st.one_of(st.integers(-1, 5), st.floats(), JUNK), max_size=2), JUNK),
}
WELL_FORMED_DIMENSIONS = st.one_of(  # the right shape; an empty span or list is still refused
    st.builds(lambda low, span: {"loguniform": [low, low + span]}, st.floats(1e-6, 1), st.floats(0, 1)),
    st.builds(lambda low, span: {"uniform": [low, low + span]}, st.floats(-1, 1), st.floats(0, 1)),
    st.builds(lambda low, span: {"randint": [low, low + span]}, st.integers(-5, 100), st.integers(0, 50)),
    st.builds(lambda kind, values: {kind: values}, st.sampled_from(["choice", "grid"]),
              st.lists(st.one_of(st.floats(0, 1), st.integers(1, 64), LEAVES), max_size=3)),
)
WELL_FORMED = st.fixed_dictionaries({
    "agent": st.sampled_from(agents.LEARNERS), "env_id": st.sampled_from(list(sfl_env.TASK_IDS)),
    "total_steps": st.integers(100, 2000), "eval_freq": st.integers(1, 100),
    "seeds": st.lists(st.integers(0, 10), min_size=1, max_size=2),
    "search": st.one_of(st.dictionaries(st.sampled_from(["gamma", "learning_rate", "batch_size"]),
                                        WELL_FORMED_DIMENSIONS, min_size=1, max_size=3),
                        st.dictionaries(NAMES, st.one_of(WELL_FORMED_DIMENSIONS, DIMENSIONS), max_size=3)),
    "asha": st.fixed_dictionaries({}, optional={"grace_period": st.integers(1, 3),
                                                "reduction_factor": st.floats(1.01, 4)}),
})
ONE_FIELD = st.sampled_from(list(FIELDS)).flatmap(lambda key: FIELDS[key].map(lambda value: {key: value}))
SPECS = st.one_of(
    JUNK,
    WELL_FORMED,
    st.builds(lambda spec, change: spec | change, WELL_FORMED, ONE_FIELD),
    st.fixed_dictionaries({}, optional=FIELDS),
    st.builds(lambda known, extra: extra | known,  # mostly a learner: what follows the agent is checked
              st.fixed_dictionaries({"agent": st.sampled_from(agents.LEARNERS)},
                                    optional={k: v for k, v in FIELDS.items() if k != "agent"}),
              st.one_of(st.just({}), st.dictionaries(st.one_of(st.text(max_size=5), st.integers()), JUNK, max_size=1))),
)


@settings(max_examples=400, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(raw=SPECS)
def test_the_validator_accepts_a_spec_or_refuses_it_in_one_line_and_never_crashes(tmp_path, monkeypatch, raw):
    monkeypatch.chdir(tmp_path)
    try:
        spec = sweep.validate_spec(raw, "fuzz.yml")
    except ConfigError as error:  # any other exception fails the test
        message = str(error)
        assert message.startswith("fuzz.yml: ") and len(message) > len("fuzz.yml: ") and "\n" not in message
        event("refused")
    else:
        event("accepted" + (" with a search" if spec["search"] else ""))
        assert set(spec) == set(sweep.SPEC.fields) and spec["agent"] in agents.LEARNERS
        assert 1 <= spec["eval_freq"] <= spec["total_steps"] and spec["samples"] >= 1 and spec["seeds"]
        assert 1 <= spec["asha"]["grace_period"] <= spec["total_steps"] // spec["eval_freq"]
        assert spec["asha"]["reduction_factor"] > 1
        config = {"seed": spec["seeds"][0], "hyperparameters": {}}
        for name, dimension in spec["search"].items():
            [(kind, values)] = dimension.items()
            assert kind in sweep.SPACES and name in sweep.hyperparameter_names(spec["agent"])
            config["hyperparameters"][name] = values[0]
        argv = sweep.trial_argv(spec, config, tmp_path / "run")  # each trial's values reach it as themselves
        if config["hyperparameters"]:
            start = argv.index("--hyperparams") + 1
            assert parse_overrides(argv[start:start + len(config["hyperparameters"])]) == config["hyperparameters"]
    assert not any(tmp_path.iterdir())  # the validator writes nothing


# ------------------------------------------------------------------ one writer per sweep folder

HOLDER = """
import sys, time
from sfl_env.locking import FolderLock
FolderLock(sys.argv[1], "holder-test").acquire()
print("locked", flush=True)
time.sleep(300)
"""


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes() if p.is_file() else b"")
            for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("resume", [False, True])
def test_a_second_sweep_on_a_folder_in_use_is_refused_naming_its_writer(tmp_path, capsys, resume):
    root = tmp_path / "out" / "spec"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(root)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        (root / sweep.TUNER_STATE).write_bytes(b"the live sweep's state")
        before = snapshot(root)
        with pytest.raises(SystemExit) as exit_info:
            sweep.main([str(write(tmp_path, BASE)), "--out", str(tmp_path / "out"), *(["--resume"] if resume else [])])
        error = the_error(capsys.readouterr().err)
        assert exit_info.value.code == 2
        assert f"{root} is in use by holder-test (pid {holder.pid}" in error and "one process writes" in error, error
        assert snapshot(root) == before
    finally:
        holder.kill()
        holder.wait()


def test_a_folder_that_holds_only_a_lock_takes_a_new_sweep(tmp_path):
    root = tmp_path / "out" / "spec"
    FolderLock(root, "a finished sweep.py").acquire().release()  # left .lock behind, as every writer does
    (root / "runs").mkdir()  # and an empty runs/: no trial started
    lock = sweep.take_folder(root, False, sweep.build_parser())
    try:
        assert lock.held and sorted(p.name for p in root.iterdir()) == [LOCK_FILE, "runs"]
    finally:
        lock.release()


@pytest.mark.parametrize("files, resume, message", [
    ([sweep.TUNER_STATE, "runs/trial_0/config.json"], False, "already holds a sweep; pass --resume"),
    (["notes.txt"], False, "holds ['notes.txt'] but no sweep to resume (no tuner.pkl)"),
    (["runs/trial_0/config.json"], False, "holds ['runs'] but no sweep to resume"),
    (["notes.txt"], True, "--resume: {root} holds no sweep to resume"),
])
def test_a_folder_that_holds_something_else_is_refused(tmp_path, capsys, files, resume, message):
    root = tmp_path / "spec"
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("x")
    with pytest.raises(SystemExit) as exit_info:
        sweep.take_folder(root, resume, sweep.build_parser())
    error = the_error(capsys.readouterr().err)
    assert exit_info.value.code == 2 and message.format(root=root) in error, error
    assert FolderLock(root, "test").acquire().held  # refused, it let the lock go


def test_resume_of_a_missing_sweep_creates_nothing(tmp_path, capsys):
    with pytest.raises(SystemExit):
        sweep.take_folder(tmp_path / "out" / "spec", True, sweep.build_parser())
    assert "--resume" in capsys.readouterr().err and not (tmp_path / "out").exists()


# ------------------------------------------------------------------ failed trials

def test_the_exit_message_names_each_failed_trial_and_its_error(tmp_path):
    runs = tmp_path / "runs"
    for trial in ("trial_a_00000", "trial_a_00001"):
        (runs / trial).mkdir(parents=True)
    (runs / "trial_a_00001" / sweep.TRIAL_ERROR).write_text("Traceback ...\nValueError: batch_size=20000 is too big\n"
                                                             "train_agent.py exited with 2\n")
    results = [SimpleNamespace(path=str(tmp_path / "trial_a_00000_0_seed=0_2025"), config={"seed": 0},
                               metrics={sweep.METRIC: 1.0, "step": 150}, error=None),
               SimpleNamespace(path=str(tmp_path / "trial_a_00001_1_seed=1_2025"), config={"seed": 1},
                               metrics={}, error=RuntimeError("Ray's own wording"))]
    rows = sweep.trial_rows(results, runs)
    table, best = sweep.trials_table(rows)
    assert best["trial"] == "trial_a_00000" and "| trial_a_00001 |" in table
    report = sweep.failure_report(rows)
    assert report.splitlines()[0].startswith("1 of 2 trial(s) failed")
    assert "  trial_a_00001: ValueError: batch_size=20000 is too big" in report.splitlines()
    assert sweep.failure_report(rows[:1]) is None
