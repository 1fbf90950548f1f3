"""One writer per folder: an operating-system lock held for the life of the process that writes.

Every command that writes a folder (``train_agent.py`` into a run, ``sweep.py`` into a sweep,
``evaluate.py`` into its ``--out``, ``train_rllib.py`` into its run) takes the folder's lock before
it touches anything else there, and holds it until it exits::

    with FolderLock(run, "train_agent.py"):
        ...  # the only writer of run

The lock is ``fcntl.flock`` on the file ``.lock`` in the folder. The kernel releases it when the
process ends, however it ends (an exit, a crash, ``kill -9``), so a killed writer never leaves a stale
lock behind, unlike a PID file. The lock file also records who holds it (command, process id, host,
start time), which is what the refusal quotes. Readers (``evaluate.py`` playing a run) take no lock.

POSIX only (``fcntl``). On a file system without ``flock`` support (some network mounts) taking the lock
raises the system's ``OSError``, which the scripts report as a folder they cannot write.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import NoReturn

from .errors import UserError

LOCK_FILE = ".lock"


class FolderBusyError(UserError):
    """Another live process writes the folder; the message names it and what to do."""


class FolderLock:
    """The exclusive lock of ``folder`` (created if missing), taken at once or refused.

    ``acquire`` raises :class:`FolderBusyError` when another process holds it; ``release`` (or the
    process's end) lets it go. Re-entrant use within one process is not supported: take it once.
    """

    def __init__(self, folder: str | os.PathLike, command: str) -> None:
        self.folder = Path(folder)
        self.command = command
        self._fd: int | None = None

    @property
    def path(self) -> Path:
        return self.folder / LOCK_FILE

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> FolderLock:
        if self._fd is not None:
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(_read_holder(fd))
            os.close(fd)
            raise FolderBusyError(
                f"{self.folder} is in use by {holder}; one process writes a folder at a time: wait for it to "
                f"end (or stop it), or choose another folder") from None
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        holder = {"command": self.command, "pid": os.getpid(), "host": socket.gethostname(),
                  "since": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                  "argv": sys.argv}
        try:  # who holds it, for the next one's refusal; the lock itself does not depend on this text
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        except OSError:
            pass
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.release()


def lock_folder(folder: str | os.PathLike, command: str, refuse: Callable[[str], NoReturn], option: str = "--out",
                check_write: bool = False) -> FolderLock:
    """``folder``'s lock for the script ``command``, held until released; or ``refuse`` (a script's
    ``parser.error``) with one line: the folder is in use (and by whom), or cannot be written.

    ``option`` names where the folder came from in the messages (``"--out"``; ``""`` for none);
    ``check_write`` also writes and removes a file there, so a read-only folder is named before any work.
    """
    lock = FolderLock(folder, command)
    where = f"{option} {folder}" if option else str(folder)
    try:
        lock.acquire()
        if check_write:
            probe = Path(folder) / ".write-test"
            probe.write_text("")
            probe.unlink()
    except FolderBusyError as error:
        refuse(f"{option} {error}" if option else str(error))
    except OSError as error:
        lock.release()
        refuse(f"{where} cannot be written: {error.strerror or error}; allowed: a folder this user can write")
    return lock


def holder_of(folder: str | os.PathLike) -> dict | None:
    """Who holds ``folder``'s lock now (its record), or None when nobody does."""
    path = Path(folder) / LOCK_FILE
    if not path.is_file():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder(fd) or {}
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read_holder(fd: int) -> dict:
    try:
        record = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    return record if isinstance(record, dict) else {}


def _describe(holder: dict) -> str:
    if not holder:
        return "another process"
    where = f" on {holder['host']}" if holder.get("host") and holder.get("host") != socket.gethostname() else ""
    return (f"{holder.get('command', 'another process')} (pid {holder.get('pid', '?')}{where}, "
            f"since {holder.get('since', '?')})")
