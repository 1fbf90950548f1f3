"""evaluate.py end to end on the analytic env: files, columns, aggregates, resume, claims and errors."""

import csv
import json
import math

import numpy as np
import pytest

import evaluate
from evaluation import results
from evaluation.leaderboard import leaderboard, leaderboard_markdown
from evaluation.protocol import Entry
from evaluation.results import COLUMNS
from evaluation.stats import aggregate

FAST = ["--env-id", "SFLEnvAnalytic-v0", "--env-kwargs", "max_rounds=12", "--seeds", "2", "--episodes", "2"]
FIGURES = ("accuracy_vs_round.png", "accuracy_vs_latency.png", "cumulative_bits.png", "cuts_over_rounds.png")


def read_csv(path):
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


@pytest.mark.slow
def test_agents_mode_writes_every_file_with_the_documented_columns(tmp_path):
    out = tmp_path / "eval"
    assert evaluate.main(["--mode", "agents", "--agents", "random,oracle,fixed-middle", "--out", str(out), *FAST]) == 0
    rows = read_csv(out / "results.csv")
    assert tuple(rows[0]) == COLUMNS
    labels = {r["agent"] for r in rows}
    # the references (every fixed cut among them), plus the equal-allocation ablation of every agent but
    # random, oracle and planner
    cuts = {f"cut-{c}" for c in range(1, 6)}
    assert labels == {"random", "oracle", "planner", "fixed-middle", "greedy-latency", *cuts,
                      "fixed-middle/equal", "greedy-latency/equal", *{f"{c}/equal" for c in cuts}}
    assert len(rows) == len(labels) * 2 * 2
    assert {r["allocation"] for r in rows if r["agent"].endswith("/equal")} == {"equal"}
    assert len({r["config_hash"] for r in rows}) == 2
    # paired protocol: every agent saw the same env seeds
    seeds = {label: sorted(int(r["env_seed"]) for r in rows if r["agent"] == label) for label in labels}
    assert len({tuple(v) for v in seeds.values()}) == 1 and len(seeds["oracle"]) == 4
    assert all(json.loads(r["versions"])["sfl_env"] and r["hardware"] for r in rows)
    for name in FIGURES:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    board = (out / "leaderboard.md").read_text()
    assert "| oracle | optimal |" in board and "IQM return [95% CI]" in board
    assert (out / "claims.md").is_file()

    # The leaderboard's numbers are the per-seed aggregates of results.csv.
    oracle = [r for r in rows if r["agent"] == "oracle"]
    per_seed = [np.mean([float(r["episode_return"]) for r in oracle if r["seed_index"] == s]) for s in ("0", "1")]
    expected = aggregate([per_seed])
    line = next(line for line in board.splitlines() if line.startswith("| oracle |"))
    assert f"{expected['iqm']:.3f} [{expected['iqm_low']:.3f}, {expected['iqm_high']:.3f}]" in line
    planner = next(line for line in board.splitlines() if line.startswith("| planner |"))
    assert "| 1.000 [1.000, 1.000] |" in planner  # the reference's own normalised score


@pytest.mark.slow
def test_resume_skips_finished_rows_and_completes_the_rest(tmp_path, monkeypatch):
    out = tmp_path / "eval"
    argv = ["--mode", "agents", "--agents", "random", "--out", str(out), *FAST]
    assert evaluate.main(argv) == 0
    complete = read_csv(out / "results.csv")
    # Simulate a kill: keep the header, the first 5 rows and half of the 6th.
    lines = (out / "results.csv").read_text().splitlines(keepends=True)
    (out / "results.csv").write_text("".join(lines[:6]) + lines[6][: len(lines[6]) // 2])
    played = []
    original = results.run_episode
    monkeypatch.setattr(results, "run_episode",
                        lambda agent, env, seed: played.append(seed) or original(agent, env, seed))
    assert evaluate.main(argv + ["--resume"]) == 0
    resumed = read_csv(out / "results.csv")
    assert len(played) == len(complete) - 5
    key = lambda r: (r["agent"], r["seed_index"], r["episode"])  # noqa: E731
    assert sorted(map(key, resumed)) == sorted(map(key, complete))
    # Same episodes, same numbers (baselines are rebuilt per episode, so the random draws match too).
    by_key = {key(r): r["episode_return"] for r in complete}
    assert all(by_key[key(r)] == r["episode_return"] for r in resumed)


def test_a_resume_with_fewer_seeds_reports_only_those_seeds(tmp_path):
    # the leaderboard used to aggregate the rows of every seed in the file: 3 seeds under a "2 seeds" header
    out = tmp_path / "eval"
    argv = ["--mode", "cuts", "--out", str(out), "--env-id", "SFLEnvAnalytic-v0", "--env-kwargs", "max_rounds=12",
            "--episodes", "1"]
    assert evaluate.main(argv + ["--seeds", "3"]) == 0
    assert evaluate.main(argv + ["--seeds", "2", "--resume"]) == 0
    board = (out / "leaderboard.md").read_text()
    assert "2 seeds x 1 episodes" in board
    line = next(line for line in board.splitlines() if line.startswith("| cut-1 |"))
    rows = read_csv(out / "results.csv")
    per_seed = [float(r["episode_return"]) for r in rows if r["agent"] == "cut-1" and r["seed_index"] in ("0", "1")]
    expected = aggregate([per_seed])
    assert f"{expected['iqm']:.3f} [{expected['iqm_low']:.3f}, {expected['iqm_high']:.3f}]" in line


def test_resume_repairs_a_torn_last_trace_line(tmp_path):
    # a kill mid-write used to leave a torn traces.jsonl line that every later --resume appended to, and
    # drawing the figures then crashed
    out = tmp_path / "eval"
    argv = ["--mode", "cuts", "--out", str(out), *FAST]
    assert evaluate.main(argv) == 0
    rows = (out / "results.csv").read_text().splitlines(keepends=True)
    traces = (out / "traces.jsonl").read_text().splitlines(keepends=True)
    (out / "results.csv").write_text("".join(rows[:-1]))  # the last episode's row and trace are torn
    (out / "traces.jsonl").write_text("".join(traces[:-1]) + traces[-1][:40])
    assert evaluate.main(argv + ["--resume"]) == 0
    repaired = [json.loads(line) for line in (out / "traces.jsonl").read_text().splitlines()]
    assert len(repaired) == len(traces)


def test_a_corrupt_results_row_before_the_last_is_named_not_dropped(tmp_path, capsys):
    # a corrupt row anywhere used to be dropped silently, and the file rewritten without it
    out = tmp_path / "eval"
    argv = ["--mode", "agents", "--agents", "random", "--out", str(out), *FAST]
    assert evaluate.main(argv) == 0
    lines = (out / "results.csv").read_text().splitlines(keepends=True)
    lines[2] = lines[2].replace(",random,", ",random,x,", 1)  # one field too many: a shifted row
    (out / "results.csv").write_text("".join(lines))
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(argv + ["--resume"])
    assert exit_info.value.code == 2
    assert f"{out / 'results.csv'} line 3 is corrupt" in capsys.readouterr().err
    assert (out / "results.csv").read_text() == "".join(lines)  # nothing dropped


def test_a_corrupt_trace_line_before_the_last_is_named(tmp_path):
    path = tmp_path / "traces.jsonl"
    path.write_text('{"agent": "a"}\n{"agent": \n{"agent": "b"}\n')
    with pytest.raises(ValueError, match=r"traces.jsonl line 2 is corrupt"):
        results.read_traces(path)


def test_without_resume_an_existing_evaluation_is_not_overwritten(tmp_path, capsys):
    out = tmp_path / "eval"
    argv = ["--mode", "cuts", "--out", str(out), *FAST]
    assert evaluate.main(argv) == 0
    with pytest.raises(SystemExit):
        evaluate.main(argv)
    assert "pass --resume" in capsys.readouterr().err


def test_cuts_mode_sweeps_every_cut_and_judges_the_convergence_claim(tmp_path):
    out = tmp_path / "eval"
    assert evaluate.main(["--mode", "cuts", "--out", str(out), *FAST[:2], "--env-kwargs", "max_rounds=200",
                          "--seeds", "2"]) == 0
    rows = read_csv(out / "results.csv")
    assert {r["agent"] for r in rows} == {f"cut-{c}" for c in range(1, 6)}  # vgg11: 6 blocks
    assert all(set(r["cuts"].split()) == {r["agent"][-1]} for r in rows)
    assert (out / "cut_sweep.png").is_file()
    claims = (out / "claims.md").read_text()
    section = claims.split("## 2. A smaller client-side model converges better\n\n")[1]
    assert section.startswith(("**Holds here.**", "**Does not hold here.**"))  # measured, whichever way
    assert "## 1. The aggregated broadcast cuts downlink traffic\n\n**Not measured.**" in claims


def _cuts_table(rounds, reach=(1.0, 1.0, 1.0)):
    return {"cuts": [{"agent": f"cut-{i + 1}", "rounds_to_target": r, "reach_rate": p, "final_accuracy": 0.9}
                     for i, (r, p) in enumerate(zip(rounds, reach))]}


@pytest.mark.parametrize("rounds, reach, verdict", [
    ((40, 55, 90), (1.0, 1.0, 1.0), "Holds here"),
    ((40, 40, 90), (1.0, 1.0, 1.0), "Holds here"),
    ((55, 40, 90), (1.0, 1.0, 1.0), "Does not hold here"),  # a deeper cut is faster
    ((40, 55, 90), (1.0, 0.5, 1.0), "Does not hold here"),  # the middle cut misses the target once
    ((40, 40, 40), (1.0, 1.0, 1.0), "Does not hold here"),  # no difference at all
])
def test_the_convergence_claim_follows_the_measured_rounds(rounds, reach, verdict):
    from evaluation.claims import claim_smaller_client

    assert claim_smaller_client(_cuts_table(rounds, reach), {})[0] == verdict
    assert claim_smaller_client({}, {})[0] == "Not measured"


def test_schemes_mode_runs_every_scheme_and_measures_the_broadcast_saving(tmp_path):
    out = tmp_path / "eval"
    assert evaluate.main(["--mode", "schemes", "--agents", "fixed-shallowest", "--out", str(out), *FAST]) == 0
    rows = read_csv(out / "results.csv")
    assert {r["scheme"] for r in rows} == {"sfl-ga", "sfl-v1", "sfl-v2", "psl", "fl"}
    assert all(math.isfinite(float(r["total_latency_s"])) for r in rows)
    down = {s: np.mean([float(r["bits_down"]) / int(r["rounds"]) for r in rows if r["scheme"] == s])
            for s in ("sfl-ga", "sfl-v1")}
    assert down["sfl-v1"] > 5 * down["sfl-ga"]  # K = 10 unicast gradients vs one broadcast
    assert "**Holds here.**" in (out / "claims.md").read_text().split("## 2.")[0]


def _synthetic_row(agent, seed_index, episode_return):
    return {"agent": agent, "policy": agent, "allocation": "optimal", "seed_index": seed_index, "episode": 0,
            "episode_return": episode_return, "reached_target": False, "rounds_to_target": math.nan,
            "seconds_to_target": math.nan, "final_accuracy": math.nan, "total_latency_s": 1.0, "rounds": 2,
            "bits_up": 8.0, "bits_down": 8.0, "privacy_violations": 0, "versions": "{}", "hardware": "test"}


def test_leaderboard_scores_only_the_seeds_where_oracle_and_random_do_not_tie():
    labels = ["random", "oracle", "fixed-middle"]
    # seed 0: random 1, oracle 3; seed 1: both 2 (a tie, so no score); seed 2: random 0, oracle 4
    returns = {"random": (1.0, 2.0, 0.0), "oracle": (3.0, 2.0, 4.0), "fixed-middle": (2.0, 2.0, 1.0)}
    rows = [_synthetic_row(agent, s, r) for agent, values in returns.items() for s, r in enumerate(values)]
    table = {line["agent"]: line for line in leaderboard(rows, labels)}
    assert table["fixed-middle"]["score_mean"] == pytest.approx((0.5 + 0.25) / 2)
    assert table["oracle"]["score_mean"] == 1.0 and table["random"]["score_mean"] == 0.0

    tied = [_synthetic_row(agent, s, 2.0) for agent in labels for s in range(3)]
    table = leaderboard(tied, labels)
    assert not any("score_iqm" in line for line in table)
    entries = [Entry(label, label, "SFLEnvAnalytic-v0", {}) for label in labels]
    board = leaderboard_markdown("agents", table, entries, 3, 1, tied)
    assert " | n/a | " in next(line for line in board.splitlines() if line.startswith("| fixed-middle |"))
    assert "R_ref and R_random tie have no score" in board


def test_leaderboard_pairs_every_agent_with_the_best_fixed_cut_and_the_planner_on_the_same_seeds():
    returns = {"random": (0.0, 0.0, 0.0, 0.0), "oracle": (1.0, 2.0, 3.0, 4.0), "planner": (4.0, 5.0, 6.0, 7.0),
               "cut-1": (1.0, 2.0, 3.0, 4.0), "cut-2": (2.0, 3.0, 4.0, 5.0), "agent": (3.0, 4.0, 3.0, 6.0)}
    rows = [_synthetic_row(agent, s, r) for agent, values in returns.items() for s, r in enumerate(values)]
    table = {line["agent"]: line for line in leaderboard(rows, list(returns))}
    agent = table["agent"]
    # cut-2 is the best fixed cut; the agent is ahead of it on 3 of 4 seeds, by +1, +1, -1, +1
    assert agent["vs_fixed"] == "cut-2" and agent["vs_fixed_mean"] == 0.5 and agent["vs_fixed_p_improvement"] == 0.75
    assert agent["vs_fixed_low"] <= 0.5 <= agent["vs_fixed_high"] and agent["vs_fixed_low"] >= -1.0
    assert agent["vs_planner_mean"] == -1.5 and agent["vs_planner_p_improvement"] == 0.0
    assert agent["vs_planner_high"] < 0  # behind the planner on every seed: the paired interval excludes 0
    # the score's top is the planner, not the oracle
    assert table["planner"]["score_mean"] == 1.0 and agent["score_reference"] == "planner"
    assert table["oracle"]["score_mean"] == pytest.approx(np.mean([1 / 4, 2 / 5, 3 / 6, 4 / 7]))


@pytest.mark.parametrize("argv, message", [
    (["--agents", "nobody"], "unknown agent 'nobody'"),
    (["--agents", "runs/missing*"], "matches no train_agent.py run folder"),
    (["--agents", "ddqn"], "'ddqn' is a learning agent; give its train_agent.py run folder"),
    (["--env-id", "SFLEnv-v7"], "--env-id 'SFLEnv-v7' is not registered"),
    (["--env-kwargs", "rho"], "override 'rho' is malformed"),
    (["--env-kwargs", "scheme=sfl-v3"], "scheme"),
    (["--seeds", "0"], "--seeds=0 is out of range"),
])
def test_bad_arguments_exit_with_a_clear_message(argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(["--mode", "agents", "--out", str(tmp_path / "x"), *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def _write_preset_files(preset, folder):
    """Tiny files in each preset's standard format (the loaders' own tests cover the formats)."""
    from test_data import random_cifar, random_mnist, write_cifar_binary, write_mnist

    rng = np.random.default_rng(0)
    if preset == "cifar10":
        write_cifar_binary(folder, random_cifar(rng, [40] * 6))
    else:
        write_mnist(folder, *random_mnist(rng, num_train=120, num_test=40), gz=True)


@pytest.mark.parametrize("preset", ["mnist", "fashion-mnist", "cifar10"])
def test_cuts_mode_runs_each_paper_preset_from_data_dir(tmp_path, preset):
    data = tmp_path / "data"
    _write_preset_files(preset, data)
    out = tmp_path / "eval"
    assert evaluate.main(["--mode", "cuts", "--data-dir", str(data), "--out", str(out), "--seeds", "1",
                          "--env-kwargs", f"preset={preset}", "max_rounds=2", "num_clients=2", "local_iters=1",
                          "batch_size=8"]) == 0
    rows = read_csv(out / "results.csv")
    assert len(rows) == len({r["agent"] for r in rows}) >= 3 and all(r["rounds"] == "2" for r in rows)


def test_cuts_mode_on_real_mnist_images(tmp_path, real_mnist_dir):
    # Only the real test set is available: it serves as both splits here (a wiring test, not a result).
    data = tmp_path / "mnist"
    data.mkdir()
    for split in ("train", "t10k"):
        for kind in ("images-idx3", "labels-idx1"):
            (data / f"{split}-{kind}-ubyte.gz").symlink_to(real_mnist_dir / f"t10k-{kind}-ubyte.gz")
    out = tmp_path / "eval"
    assert evaluate.main(["--mode", "cuts", "--data-dir", str(data), "--out", str(out), "--seeds", "1",
                          "--env-kwargs", "preset=mnist", "num_train=2000", "num_test=500", "max_rounds=3"]) == 0
    rows = read_csv(out / "results.csv")
    accuracy = {r["agent"]: float(r["final_accuracy"]) for r in rows}
    assert len(accuracy) == 4 and all(0.0 <= a <= 1.0 for a in accuracy.values())
    assert accuracy["cut-1"] > 0.2  # three rounds of LeNet-5 at the shallowest cut beat chance (0.1)


def test_claim_one_compares_every_unicasting_scheme_including_one_registered_later(monkeypatch):
    # The claim once listed ("sfl-v1", "sfl-v2", "psl") by name, so a new scheme silently dropped out.
    import dataclasses

    from evaluation import claims
    from sfl_env.schemes import SCHEMES, get_scheme

    new = dataclasses.replace(get_scheme("sfl-v2"), name="sfl-x")
    monkeypatch.setattr(claims, "SCHEMES", (*SCHEMES, "sfl-x"))
    monkeypatch.setattr(claims, "get_scheme", lambda name: new if name == "sfl-x" else get_scheme(name))
    table = [{"agent": s, "bits_down_per_round": bits} for s, bits in
             [("sfl-ga", 2e6), ("sfl-v1", 9e6), ("fl", 1e6), ("sfl-x", 1.5e6)]]
    verdict, body = claims.claim_broadcast({"schemes": table}, {})
    assert verdict == "Does not hold here" and "sfl-x 1.50 Mbit" in body and "sfl-v1 9.00 Mbit" in body
    assert "fl 1.00 Mbit" not in body  # FL sends no gradients: not part of the claim
