"""Recording real runs, fitting the twin to them, and the twin refusing what it was not fitted on."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sfl_env.calibration.record import Job, read_log, record, run_key
from sfl_env.config import SFLConfig
from sfl_env.errors import ConfigError
from sfl_env.training.calibration import calibration_for

ROOT = Path(__file__).resolve().parents[1]
TINY = {"dataset": "digits", "model": "cnn", "model_width": 1.0, "momentum": 0.0, "num_clients": 2,
        "num_train": 200, "num_test": 100, "local_iters": 1}


def jobs(scheme="sfl-ga", cuts=(1, 2), seeds=(0,), max_rounds=4, **options):
    config = SFLConfig(scheme=scheme, **(TINY | options))
    return [Job(config, cut, seed, target=0.99, max_rounds=max_rounds) for seed in seeds for cut in cuts]


def test_a_recording_resumes_where_it_stopped_and_keys_ignore_free_options(tmp_path, capsys):
    log = tmp_path / "runs.jsonl"
    first = list(record(jobs(cuts=(1,)), log))
    assert len(first) == 1 and len(first[0]["accuracy"]) == 4 and first[0]["config"]["data_dir"] is None
    with log.open("a") as file:  # a run torn by a kill: half a line
        file.write('{"key": "torn')
    again = list(record(jobs(cuts=(1, 2)), log))
    assert len(again) == 2 and "1 of 2 runs already in" in capsys.readouterr().err
    assert len(read_log(log)) == 2, "the first run was not trained twice and the torn line is ignored"
    config = SFLConfig(**TINY)
    assert run_key(config, 1, 0) == run_key(SFLConfig(**TINY, eval_every=3, device="cpu"), 1, 0)
    assert run_key(config, 1, 0) != run_key(SFLConfig(**(TINY | {"lr": 0.2})), 1, 0)


def test_a_run_stops_after_the_target_plus_a_tail(tmp_path):
    config = SFLConfig(scheme="fl", **TINY)
    run = next(record([Job(config, 1, 0, target=0.05, max_rounds=200)], tmp_path / "runs.jsonl"))
    assert len(run["accuracy"]) == 11, "hit at round 1, then a tail of max(10, 25 %) rounds"


@pytest.mark.slow
def test_fit_writes_a_calibration_that_covers_its_runs_and_refuses_other_options(tmp_path):
    log, out = tmp_path / "runs.jsonl", tmp_path / "tiny.json"
    all_jobs = [j for scheme in ("sfl-ga", "sfl-v1", "sfl-v2", "psl", "fl")
                for j in jobs(scheme, cuts=(1, 2, 3) if scheme in ("sfl-ga", "sfl-v2", "psl") else (1,),
                              seeds=(0, 1), max_rounds=6)]
    list(record(all_jobs, log))
    subprocess.run([sys.executable, "-m", "sfl_env.calibration.fit", "--preset", "tiny", "--log", str(log),
                    "--out", str(out), "--fit-seeds", "0", "--held-out-seeds", "1"], check=True, cwd=ROOT,
                   capture_output=True)
    payload = json.loads(out.read_text())
    assert payload["fit_seeds"] == [0] and payload["held_out_seeds"] == [1]
    assert payload["options"]["num_clients"] == 2 and set(payload["lr"]) == {"sfl-ga", "sfl-v1", "sfl-v2", "psl", "fl"}
    assert payload["schemes"]["sfl-v1"]["speed"] == [1.0, 1.0, 1.0], "the cut cannot change sfl-v1's learning"
    assert all(curve["pace_log_std"] >= 0 and curve["acc_noise_std"] > 0 for curve in payload["schemes"].values())
    assert all(0 <= curve[k] <= 1 for curve in payload["schemes"].values() for k in ("acc_0", "acc_inf")), \
        "six rounds do not pin an asymptote: the fit keeps it an accuracy"
    covered = SFLConfig(scheme="sfl-ga", **TINY)
    assert calibration_for(covered, path=out).curve.scheme == "sfl-ga"
    with pytest.raises(ConfigError, match=r"not calibrated for num_clients=3 \(calibrated: num_clients=2\)"):
        calibration_for(SFLConfig(scheme="sfl-ga", **(TINY | {"num_clients": 3})), path=out)


def _write_split(folder: Path, train: int, test: int) -> None:
    import numpy as np

    from sfl_env.calibration.split_mnist import write_idx

    rng = np.random.default_rng(0)
    for split, n in (("train", train), ("t10k", test)):
        write_idx(folder / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(folder / f"{split}-labels-idx1-ubyte.gz", (np.arange(n) % 10).astype(np.uint8))


def test_a_file_preset_twin_refuses_data_of_other_sizes(tmp_path):
    import gymnasium as gym

    _write_split(tmp_path, 30, 10)
    with pytest.raises(ConfigError, match="data_dir holds 30 training and 10 test samples, but the 'mnist' twin "
                                          "was fitted on 8000 and 2000"):
        gym.make("SFLEnvAnalytic-v0", preset="mnist", data_dir=str(tmp_path))


def test_the_mnist_twin_runs_on_the_split_it_was_fitted_on(tmp_path, real_mnist_dir):
    import gymnasium as gym

    subprocess.run([sys.executable, "-m", "sfl_env.calibration.split_mnist", str(real_mnist_dir), str(tmp_path)],
                   check=True, cwd=ROOT, capture_output=True)
    env = gym.make("SFLEnvAnalytic-v0", preset="mnist", data_dir=str(tmp_path))
    env.reset(seed=0)
    assert env.unwrapped.config.system.model == "lenet5" and env.action_space.n == 4
    env.step(0)


def test_lr_tuning_never_picks_a_rate_whose_run_diverged():
    import importlib.util

    spec = importlib.util.spec_from_file_location("tune_lr", ROOT / "benchmarks" / "tune_lr.py")
    tune_lr = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tune_lr)
    fast_then_diverged = {"accuracy": [0.5, 0.95, float("nan")], "diverged": True}
    slow = {"accuracy": [0.5, 0.6, 0.7, 0.95], "diverged": False}
    assert tune_lr.score([fast_then_diverged], 0.9)[0] == float("inf")
    assert tune_lr.score([slow], 0.9) < tune_lr.score([fast_then_diverged], 0.9)
