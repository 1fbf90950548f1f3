"""Crash-safe files: every file that matters is replaced atomically, and a failed write names its path.

A file written with :func:`replacing` (or :func:`write_text`, :func:`write_json`) appears whole or not
at all: it is written to a hidden temporary file in the same folder, flushed to disk (``fsync``) and
renamed over the old one, so a kill, a crash or a power loss leaves either the old file or the new
one, never a torn one. A write that fails (a full disk, a read-only folder, a quota) removes its
temporary file, keeps the old file, and raises :class:`WriteError`, which names the path.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class WriteError(OSError):
    """A write that failed, naming the file; ``errno`` and ``strerror`` are the operating system's."""

    def __init__(self, path: str | os.PathLike, error: OSError) -> None:
        super().__init__(error.errno, error.strerror or str(error), str(path))
        self.path = Path(path)

    def __str__(self) -> str:
        return f"cannot write {self.path}: {self.strerror}"


def temporary_path(path: str | os.PathLike) -> Path:
    """The hidden file next to ``path`` that :func:`replacing` writes first (same suffix, so that
    libraries which add a suffix when it is missing leave the name alone)."""
    path = Path(path)
    return path.with_name(f".{path.stem}.partial{path.suffix}")


@contextlib.contextmanager
def replacing(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path to write ``path``'s new content to; on success it replaces ``path``.

    Any ``OSError`` inside the block (or while syncing and renaming) removes the temporary file and is
    raised as :class:`WriteError` naming ``path``; other errors remove it and propagate unchanged.
    """
    path = Path(path)
    tmp = temporary_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        sync_file(tmp)
        os.replace(tmp, path)
        sync_folder(path.parent)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise error if isinstance(error, WriteError) else WriteError(path, error) from error
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Replaces ``path`` with ``text`` atomically; returns the path."""
    with replacing(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: str | os.PathLike, value: Any, **dumps: Any) -> Path:
    """Replaces ``path`` with ``value`` as JSON atomically; returns the path."""
    return write_text(path, json.dumps(value, **dumps) + ("\n" if dumps.get("indent") is not None else ""))


def sync_file(path: str | os.PathLike) -> None:
    """Flushes a written file's content to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_folder(folder: str | os.PathLike) -> None:
    """Makes the names in ``folder`` (a rename just done) durable; a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def sync_tree(folder: str | os.PathLike) -> None:
    """Flushes every file under ``folder`` (before the folder is renamed into place)."""
    for path in Path(folder).rglob("*"):
        if path.is_file():
            sync_file(path)
    sync_folder(folder)
