"""The language-model preset: the offline corpus, the GPT-style split model, token-level training, the env."""

import socket
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sfl_env.config import EnvConfig, SFLConfig
from sfl_env.data import dataset_metadata, load_dataset, partition
from sfl_env.data.text import STDLIB_MODULES, TEST_FRACTION
from sfl_env.errors import ConfigError, DatasetError
from sfl_env.models import build_model
from sfl_env.privacy import leakage_per_cut
from sfl_env.profiling import profile_model
from sfl_env.schemes import SCHEMES
from sfl_env.training import build_trainer
from sfl_env.training.real import RealTrainer

SMALL = {"num_train": 2000, "num_test": 64}  # a quick subset of the lm preset's corpus


def lm_config(**overrides) -> SFLConfig:
    return SFLConfig.from_kwargs(preset="lm", **(SMALL | overrides))


# ---------------------------------------------------------------- the corpus


def test_the_corpus_is_built_with_the_network_off(monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("network access is disabled in this test")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    from sfl_env.data import text

    text._windows.cache_clear()  # build it now, not from an earlier test's cache
    data = load_dataset("python-stdlib", context_length=16)
    assert data.x_train.dtype == torch.int64 and data.x_train.shape[1] == 16 and len(data.x_train) > 10_000


def test_the_corpus_records_the_python_version_and_a_hash_of_its_text():
    meta = dataset_metadata(lm_config())
    assert meta["python"] == sys.version.split()[0]
    assert len(meta["sha256"]) == 64 and meta["bytes"] > 1_000_000
    assert len(meta["files"]) == len(STDLIB_MODULES) and meta["files"][0] == "argparse.py"
    assert dataset_metadata(lm_config(context_length=64))["sha256"] == meta["sha256"]  # the text, not the windows
    assert dataset_metadata(SFLConfig()) == {}  # image datasets have no corpus


def test_targets_are_the_inputs_shifted_by_one_byte():
    data = load_dataset("python-stdlib", context_length=8, num_train=500, num_test=50)
    assert torch.equal(data.x_train[:, 1:], data.y_train[:, :-1])
    assert torch.equal(data.x_test[:, 1:], data.y_test[:, :-1])
    assert data.num_classes == 256 and int(data.x_train.max()) < 256
    assert data.input_shape == (8,)


def test_test_windows_come_from_the_tail_of_every_source(tmp_path):
    (tmp_path / "a.txt").write_text("a" * 900 + "A" * 100)
    (tmp_path / "b.md").write_text("b" * 900 + "B" * 100)
    data = load_dataset("text", tmp_path, context_length=9)
    train, test = bytes(data.x_train.flatten().tolist()), bytes(data.x_test.flatten().tolist())
    assert set(train) == {ord("a"), ord("b")} and set(test) == {ord("A"), ord("B")}
    assert TEST_FRACTION == 0.1


def test_a_text_folder_skips_binary_and_hidden_files_and_refuses_an_empty_one(tmp_path):
    (tmp_path / "notes.txt").write_text("hello world, " * 200)
    (tmp_path / "image.bin").write_bytes(bytes(range(256)) * 10)
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD").write_text("ref: refs/heads/main\n" * 200)
    meta = dataset_metadata(SFLConfig(dataset="text", model="gpt", data_dir=str(tmp_path)))
    assert meta["files"] == ["notes.txt"] and meta["python"] is None
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="holds no UTF-8 text file"):
        load_dataset("text", empty)
    with pytest.raises(ConfigError, match="needs data_dir"):
        SFLConfig(dataset="text", model="gpt")


def test_shards_give_each_client_whole_files_of_its_own():
    data = load_dataset("python-stdlib")
    rng = np.random.default_rng(0)
    shards = partition(data.partition_labels, 8, "shards", shards_per_client=2, rng=rng)
    iid = partition(data.partition_labels, 8, "iid", rng=rng)
    files_per_client = [len(np.unique(data.partition_labels[c])) for c in shards]
    assert max(files_per_client) <= 2 * len(STDLIB_MODULES) / 8 + 2  # a few files each
    assert min(len(np.unique(data.partition_labels[c])) for c in iid) == len(STDLIB_MODULES)  # iid: all of them


# ---------------------------------------------------------------- options


@pytest.mark.parametrize("options, message", [
    ({"dataset": "python-stdlib", "model": "cnn"}, "cannot learn dataset='python-stdlib'"),
    ({"dataset": "shapes", "model": "gpt"}, "cannot learn dataset='shapes'"),
    ({"model_depth": 2}, "model_depth=2 applies to the language models"),
    ({"context_length": 16}, "context_length=16 applies to the text datasets"),
    ({"dataset": "python-stdlib", "model": "gpt", "model_heads": 3}, "which model_heads=3 does not divide"),
    ({"dataset": "python-stdlib", "model": "gpt", "context_length": 1}, "context_length"),
    ({"optimizer": "lion"}, "optimizer='lion' is unknown"),
])
def test_language_model_options_are_checked_at_construction(options, message):
    with pytest.raises(ConfigError, match=message):
        SFLConfig(**options)


# ---------------------------------------------------------------- the model


def test_the_cuts_are_the_block_boundaries():
    model = build_model("gpt", (16,), 256, width=0.25, depth=3, heads=2)
    assert model.cut_names == ("after embeddings", "after block1", "after block2", "after block3")
    profile = profile_model(model)
    assert list(profile.smashed_elements[1:]) == [16 * 32] * 4  # context x width per sample
    assert profile.smashed_elements[0] == 16  # the raw input: the tokens
    assert all(profile.forward_flops[1:4] > 0) and profile.forward_flops[1] == profile.forward_flops[3]
    assert build_model("gpt", (16,), 256, width=0.25, depth=5, heads=2).arch_key != model.arch_key


def test_the_model_is_causal():
    model = build_model("gpt", (12,), 256, width=0.25, depth=2, heads=2, seed=1).double().eval()
    tokens = torch.randint(0, 256, (2, 12), generator=torch.Generator().manual_seed(0))
    changed = tokens.clone()
    changed[:, 7:] = (changed[:, 7:] + 1) % 256
    with torch.no_grad():
        assert torch.allclose(model(tokens)[:, :7], model(changed)[:, :7], rtol=1e-12, atol=1e-12)
        assert not torch.allclose(model(tokens)[:, 7], model(changed)[:, 7])


def test_the_embeddings_are_the_most_revealing_cut():
    data = load_dataset("python-stdlib", num_test=64)
    leakage = leakage_per_cut(build_model("gpt", (32,), 256, width=0.5, seed=0), data.x_test)
    assert len(leakage) == 5 and leakage[0] == max(leakage) and leakage[0] > 0.5


# ---------------------------------------------------------------- training


def test_adam_with_one_client_is_torch_adam():
    """In float64: Adam divides by sqrt(v) + eps, which amplifies last-bit differences between the vmapped
    and the plain kernels where a gradient is near zero; in float32 those reach 1e-6 on some CPUs, in
    float64 they stay several orders of magnitude below the tolerance."""
    torch.manual_seed(0)
    x, y = torch.randint(0, 256, (40, 8)), torch.randint(0, 256, (40, 8))
    config = SFLConfig(dataset="python-stdlib", model="gpt", scheme="fl", num_clients=1, batch_size=4, local_iters=3,
                       optimizer="adam", lr=0.01, momentum=0.8, weight_decay=0.01, model_width=0.125, model_heads=2)
    batches = [torch.randint(0, 40, (1, 4), generator=torch.Generator().manual_seed(i)) for i in range(3)]

    class Replay:
        def __init__(self):
            self.batches = iter(batches)

        def next_batch(self):
            return next(self.batches)

    model = build_model("gpt", (8,), 256, **config.model_options, seed=0).double()
    central = build_model("gpt", (8,), 256, **config.model_options, seed=0).double()
    trainer = RealTrainer(config, model, x, y, x[:4], y[:4], np.array([40.0]), Replay())
    trainer.run_round(1)
    optimizer = torch.optim.Adam(central.parameters(), lr=0.01, betas=(0.8, 0.999), eps=1e-8, weight_decay=0.01)
    for batch in batches:
        optimizer.zero_grad()
        logits = central(x[batch[0]])
        F.cross_entropy(logits.reshape(-1, 256), y[batch[0]].reshape(-1)).backward()
        optimizer.step()
    for ours, theirs in zip(trainer.model.parameters(), central.parameters()):
        assert ours.dtype == torch.float64
        torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("cut", [1, 4])
def test_sfl_ga_lowers_the_training_loss_within_10_rounds(cut):
    trainer = build_trainer(lm_config(), seed=0)
    losses = [trainer.run_round(cut).train_loss for _ in range(10)]
    assert np.mean(losses[-3:]) < losses[0] - 0.5  # from ln(256) = 5.5 towards the unigram entropy and below


@pytest.mark.parametrize("scheme", SCHEMES)
def test_every_scheme_trains_the_language_model(scheme):
    trainer = build_trainer(lm_config(scheme=scheme, local_iters=2), seed=0)
    for cut in (2, 3, 1):  # the cut moves, with Adam's moments travelling with their blocks
        outcome = trainer.run_round(cut)
    assert not outcome.diverged and 0.0 <= outcome.test_accuracy <= 1.0
    assert outcome.test_loss < np.log(256)


# ---------------------------------------------------------------- the env


@pytest.mark.slow
def test_the_real_env_passes_gymnasiums_and_sb3s_checks():
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = gym.make("SFLEnvLM-v0", **SMALL)
    assert env.unwrapped.config.system.dataset == "python-stdlib"
    assert env.action_space.n == 5  # the embeddings and 4 blocks: 5 block boundaries
    check_env(env.unwrapped, skip_render_check=True)
    sb3_check_env(env.unwrapped, warn=False)
    env.reset(seed=0)
    _, _, _, _, info = env.step(0)
    assert np.isclose(info["test_perplexity"], np.exp(info["test_loss"]))
    assert env.unwrapped.data_metadata["sha256"] == dataset_metadata(lm_config())["sha256"]


def test_the_twin_passes_the_checks_and_covers_only_its_calibration():
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = gym.make("SFLEnvLMAnalytic-v0")
    assert env.action_space.n == 5
    assert env.unwrapped.config.time_budget_s == EnvConfig.from_kwargs(preset="lm").time_budget_s > 0
    check_env(env.unwrapped, skip_render_check=True)
    sb3_check_env(env.unwrapped, warn=False)
    env.reset(seed=0)
    _, _, _, _, info = env.step(0)
    assert info["test_perplexity"] > 1 and 0 <= info["test_accuracy"] <= 1
    with pytest.raises(ConfigError, match="optimizer='sgd'"):
        gym.make("SFLEnvLMAnalytic-v0", optimizer="sgd")


def test_a_text_folder_is_a_dataset_of_the_real_env(tmp_path):
    for name in ("one", "two", "three"):
        (tmp_path / f"{name}.txt").write_text(f"the {name} text file, line after line.\n" * 60)
    env = gym.make("SFLEnv-v0", dataset="text", model="gpt", data_dir=str(tmp_path), context_length=16,
                   num_clients=3, batch_size=4, local_iters=1, model_width=0.25, model_depth=2, time_budget_s=None)
    assert env.action_space.n == 3 and env.unwrapped.data_metadata["files"] == ["one.txt", "three.txt", "two.txt"]
    env.reset(seed=0)
    _, reward, _, _, info = env.step(1)
    assert np.isfinite(reward) and 0.0 <= info["test_accuracy"] <= 1.0


def test_the_twin_warns_when_the_corpus_is_not_the_one_it_was_fitted_on():
    from sfl_env.training.calibration import Calibration

    calibration = Calibration(preset="lm", options={}, lr={}, curves={}, fit_seeds=(0,), held_out_seeds=(), target_accuracy=0.4,
                              source="", data="", runs_log=None, data_sizes=None, data_sha256="a" * 64)
    assert calibration.check_corpus({"sha256": "a" * 64}) is None
    assert calibration.check_corpus({}) is None  # image data: nothing to compare
    warning = calibration.check_corpus({"corpus": "python-stdlib", "python": "3.99.0", "sha256": "b" * 64})
    assert "Python 3.99.0" in warning and "aaaaaaaaaaaa" in warning and "the text differs" in warning
