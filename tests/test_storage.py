"""Crash-safe files: a file is replaced whole or not at all, and a failed write names its path."""

import errno

import pytest

from sfl_env.storage import (
    WriteError,
    replacing,
    temporary_path,
    write_json,
    write_text,
)


def test_a_write_replaces_the_file_whole_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "summary.json"
    write_json(path, {"steps": 3}, indent=2)
    assert path.read_text() == '{\n  "steps": 3\n}\n'
    write_text(path, "new")
    assert path.read_text() == "new"
    assert sorted(p.name for p in path.parent.iterdir()) == ["summary.json"]


def test_a_failed_write_keeps_the_old_file_and_names_the_path(tmp_path):
    path = tmp_path / "model.pt"
    path.write_text("the last good model")
    with pytest.raises(WriteError, match=f"cannot write {path}: No space left on device") as caught:
        with replacing(path) as tmp:
            tmp.write_text("half a mod")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert caught.value.errno == errno.ENOSPC and caught.value.path == path
    assert path.read_text() == "the last good model"
    assert not temporary_path(path).exists()


def test_any_other_error_also_keeps_the_old_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("{}")
    with pytest.raises(KeyError), replacing(path) as tmp:
        tmp.write_text('{"half": ')
        raise KeyError("a bug while writing")
    assert path.read_text() == "{}" and not temporary_path(path).exists()


def test_the_temporary_keeps_the_suffix_and_is_hidden_from_globs(tmp_path):
    # libraries add ".zip" or ".npz" to a path without that suffix; run folders glob "best_model.*"
    tmp = temporary_path(tmp_path / "best_model.zip")
    assert tmp.suffix == ".zip" and tmp.name.startswith(".")
    tmp.write_text("")
    assert list(tmp_path.glob("best_model.*")) == []
