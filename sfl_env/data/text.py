"""Text corpora for the language-model preset: byte-level next-token windows, built offline.

``python-stdlib`` is the Python standard library's own source: the modules of :data:`STDLIB_MODULES`,
read from the running interpreter's installation (every Python ships them, so nothing is downloaded).
Their text differs between Python versions, so :class:`Corpus` records the version and a SHA-256 of the
text it read (:attr:`Corpus.metadata`). ``text`` reads every text file under a user's folder instead.

Each file is one *source*. Its first 90 % of bytes go to training and the rest to test, both cut into
non-overlapping windows of ``context + 1`` bytes: the input is the first ``context`` bytes and the
target the last ``context`` (the next byte at every position). The vocabulary is the 256 byte values.
A window's source is its partition label, so ``partition="shards"`` gives each client whole files of
its own and ``dirichlet`` a skewed mix of them (:mod:`sfl_env.data.partitions`).
"""

from __future__ import annotations

import functools
import hashlib
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DatasetError

VOCABULARY = 256  # byte values
TEST_FRACTION = 0.1  # the tail of every source
# 46 large, pure-Python modules that every CPython from 3.9 on ships (2.3 MB of text in 3.11). A module
# is read from <stdlib>/<name>.py, or <stdlib>/<name>/__init__.py where it is a package.
STDLIB_MODULES: tuple[str, ...] = (
    "argparse", "ast", "calendar", "cmd", "codecs", "configparser", "contextlib", "copy", "csv", "dataclasses",
    "difflib", "dis", "doctest", "enum", "fractions", "ftplib", "functools", "gettext", "glob", "gzip", "heapq",
    "hmac", "inspect", "ipaddress", "logging", "mailbox", "os", "pathlib", "pdb", "pickle", "pprint", "random",
    "shutil", "smtplib", "statistics", "string", "subprocess", "tarfile", "textwrap", "threading", "tokenize",
    "traceback", "typing", "uuid", "warnings", "zipfile",
)
_MIN_STDLIB_MODULES = 23  # fewer found means a stripped installation: refuse rather than train on scraps
_MAX_TEXT_BYTES = 256 * 2**20  # a text folder is held in memory as int64 windows (8 bytes per byte)


@dataclass(frozen=True, eq=False)
class Corpus:
    """Byte windows of a corpus: int64 (N, context) inputs and targets, and each window's source index."""

    x_train: np.ndarray = field(repr=False)
    y_train: np.ndarray = field(repr=False)
    x_test: np.ndarray = field(repr=False)
    y_test: np.ndarray = field(repr=False)
    train_sources: np.ndarray = field(repr=False)
    metadata: dict


def stdlib_files() -> list[Path]:
    """The files of :data:`STDLIB_MODULES` in this interpreter's standard library, in that order."""
    root = Path(sysconfig.get_path("stdlib"))
    found = []
    for name in STDLIB_MODULES:
        for path in (root / f"{name}.py", root / name / "__init__.py"):
            if path.is_file():
                found.append(path)
                break
    if len(found) < _MIN_STDLIB_MODULES:
        raise DatasetError(f"only {len(found)} of the {len(STDLIB_MODULES)} standard-library modules of the "
                           f"python-stdlib corpus are in {root}; this Python installation lacks its sources. Use "
                           "dataset='text' with data_dir, a folder of text files, instead")
    return found


def folder_files(folder: Path) -> list[Path]:
    """Every non-hidden regular file under ``folder``, sorted by path; which of them hold text is decided
    when they are read (:func:`load_corpus`), so listing a folder reads no file."""
    if not folder.is_dir():
        raise DatasetError(f"data_dir={str(folder)!r} is not a folder; dataset='text' reads the text files in one")
    return [path for path in sorted(folder.rglob("*"))
            if path.is_file() and not any(part.startswith(".") for part in path.relative_to(folder).parts)]


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def load_corpus(name: str, folder: Path | None, context: int) -> Corpus:
    """The windows of corpus ``name`` (``python-stdlib``, or ``text`` read from ``folder``: its UTF-8
    files without NUL bytes; binary files are skipped). Built once per version of the files."""
    if name == "python-stdlib":
        files, root = stdlib_files(), Path(sysconfig.get_path("stdlib"))
    else:
        root = folder.expanduser().resolve()
        files = folder_files(root)
    stats = [(path, path.stat()) for path in files]
    key = tuple((str(path), stat.st_mtime_ns, stat.st_size) for path, stat in stats)  # an edited file is read again
    return _windows(name, str(root), key, context)


@functools.lru_cache(maxsize=4)
def _windows(name: str, root: str, files: tuple[tuple[str, int, int], ...], context: int) -> Corpus:
    texts = []
    for path, _, _ in files:
        data = Path(path).read_bytes()
        if b"\0" not in data and _is_utf8(data):
            texts.append((path, data))
    if not texts:
        raise DatasetError(f"data_dir={root!r} holds no UTF-8 text file; dataset='text' needs at least one")
    total = sum(len(data) for _, data in texts)
    if total > _MAX_TEXT_BYTES:
        raise DatasetError(f"the text files under {root} hold {total / 2**20:.0f} MiB; allowed: at most "
                           f"{_MAX_TEXT_BYTES // 2**20} MiB (they are held in memory)")
    digest = hashlib.sha256()
    parts: dict[str, list[np.ndarray]] = {"train": [], "test": []}
    sources: list[np.ndarray] = []
    names = []
    for index, (path, data) in enumerate(texts):
        names.append(str(Path(path).relative_to(root)))
        digest.update(names[-1].encode() + b"\0" + data + b"\0")
        split = int(len(data) * (1 - TEST_FRACTION))
        for part, text in (("train", data[:split]), ("test", data[split:])):
            count = (len(text) - 1) // context  # windows of context + 1 bytes that overlap by one byte
            if count < 1:
                continue
            array = np.frombuffer(text, dtype=np.uint8)
            rows = np.lib.stride_tricks.sliding_window_view(array, context + 1)[: count * context : context]
            parts[part].append(rows.astype(np.int64))
            if part == "train":
                sources.append(np.full(count, index, dtype=np.int64))
    if not parts["train"] or not parts["test"]:
        raise DatasetError(f"the text under {root} is too short for context_length={context}: every source needs "
                           f"more than {context / TEST_FRACTION:.0f} bytes to give a training and a test window")
    train, test = np.concatenate(parts["train"]), np.concatenate(parts["test"])
    metadata = {
        "corpus": name, "python": sys.version.split()[0] if name == "python-stdlib" else None,
        "sha256": digest.hexdigest(), "files": names, "bytes": total, "context": context,
        "windows": [len(train), len(test)],
    }
    corpus = Corpus(train[:, :-1], train[:, 1:], test[:, :-1], test[:, 1:], np.concatenate(sources), metadata)
    for array in (corpus.x_train, corpus.y_train, corpus.x_test, corpus.y_test, corpus.train_sources):
        array.flags.writeable = False
    return corpus
