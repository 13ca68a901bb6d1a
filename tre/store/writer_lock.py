"""The SQLite writer lock: one writer at a time per database file, across threads *and* processes.

SQLite admits one writer; a second one that finds the database locked sleeps in SQLite's
busy handler (up to 100 ms a retry), which is where the seconds of p99 under load came from
(docs/api-load.md). So writers queue on a lock before ``BEGIN IMMEDIATE`` instead:

* a thread mutex orders the writers of one process (the API's requests, an embedded worker);
* the mutex's holder then takes an advisory ``flock`` on a file beside the database, which
  orders it against the writers of other processes (several API worker processes, ``tre
  worker``, the CLI). Only one thread per process ever waits on the file lock.

The file lock is polled with a short, growing sleep (0.5 to 5 ms) rather than blocked on, so
a wait can honour the same timeout as SQLite's busy handler.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

POLL_FIRST_S = 0.0005
POLL_MAX_S = 0.005


class WriterLock:
    """A mutex with the `threading.Lock` interface the callers use (`acquire`, `release`)."""

    def __init__(self, lock_file: Path | None) -> None:
        self._mutex = threading.Lock()
        self._lock_file = lock_file
        self._fd: int | None = None  # opened once per process, by the first writer

    @property
    def lock_file(self) -> Path | None:
        return self._lock_file

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        deadline = time.monotonic() + timeout if timeout >= 0 else None
        if not self._mutex.acquire(blocking, timeout):
            return False
        if self._lock_file is None:
            return True
        try:
            if self._take_file_lock(blocking, deadline):
                return True
        except BaseException:
            self._mutex.release()
            raise
        self._mutex.release()
        return False

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._mutex.release()

    def _take_file_lock(self, blocking: bool, deadline: float | None) -> bool:
        if self._fd is None:
            assert self._lock_file is not None
            self._fd = _open(self._lock_file)
        delay = POLL_FIRST_S
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if not blocking:
                    return False
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    return False
                time.sleep(delay if deadline is None else min(delay, deadline - now))
                delay = min(delay * 2, POLL_MAX_S)


def lock_file_for(database: str) -> Path | None:
    """The lock file beside a SQLite database file; None for an in-memory database."""
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        return None
    return Path(database).with_name(Path(database).name + "-writer.lock")


@contextmanager
def file_lock_held(lock_file: Path | None) -> Iterator[None]:
    """The writer lock's file held, waited for without a timeout, through a descriptor of its
    own that is closed after (closing releases the lock): for migrating the schema at start
    (`tre.store.db.init_db`), which must not leave the file open in a process that never
    writes (an open writable file keeps its disk from being remounted read-only). Nothing to
    hold for an in-memory database (``None``)."""
    if lock_file is None:
        yield
        return
    fd = _open(lock_file)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _open(lock_file: Path) -> int:
    """The lock file, created if missing, readable by its owner only."""
    return os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
