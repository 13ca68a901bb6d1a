"""A host uid of its own for each running job, from a reserved range.

Why: every job ran as the one host user ``tre-job``, and the kernel keeps some counters per
user, charged up through every user namespace to the host's: pending signals
(``RLIMIT_SIGPENDING``), inotify instances and watches, POSIX message-queue bytes, processes.
One job that filled one (96,365 queued real-time signals in redteam round 10) made
``sigqueue``, ``inotify_init`` or ``mq_open`` fail in every other job of every project while
it ran: a denial of service, and a covert channel (fill, empty, let the other job probe).
With a uid per running job each has its own counters.

The uid is only the job's *host* identity: its group stays the job user's (datasets, images
and input folders are reached through that group or world permissions, as before), the
sandbox still shows it ``sandbox_uid``, and its copied outputs still belong to the job user.
A uid is held with an ``flock`` on a file named after it in a root-only folder, for the
job's whole life, so workers in several processes never hand one out twice; a worker that
dies releases its locks with its descriptors. uids that name an account are skipped, and so
are uids inside a subordinate range of ``/etc/subuid`` or ``/etc/subgid`` (redteam round 11):
a rootless container of a host user runs its processes, and owns its files, as those uids,
so a job given one would share that user's per-uid counters and own their files on the host.

The Docker executor holds its jobs' uids from the same range and lock folder (round 11: every
container ran as uid 10001, so concurrent jobs shared the counters again).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tre.config import UID_RANGE_END
from tre.executors.base import ExecutorError

DEFAULT_LOCK_DIR = Path("/run/tre-job-uids")
# 0x70000000: above the ranges distributions and systemd give accounts and containers, below
# 2^31 (some tools still read a uid as a signed int).
DEFAULT_BASE = 0x70000000
DEFAULT_COUNT = 1024
SUBID_FILES = (Path("/etc/subuid"), Path("/etc/subgid"))


@dataclass(frozen=True)
class UidRange:
    """``count`` host uids from ``base``; ``count`` 0 keeps every job on the job user's uid."""

    base: int = DEFAULT_BASE
    count: int = DEFAULT_COUNT
    lock_dir: Path = DEFAULT_LOCK_DIR
    subid_files: tuple[Path, ...] = SUBID_FILES

    def __post_init__(self) -> None:
        if self.count < 0 or (
            self.count and (self.base < 1000 or self.base + self.count - 1 > UID_RANGE_END)
        ):
            raise ExecutorError(
                "the sandbox uid range must lie between 1000 and 2^31 (TRE_SANDBOX_UID_BASE, "
                "TRE_SANDBOX_UID_COUNT)"
            )

    @contextlib.contextmanager
    def hold(self, fallback: int) -> Iterator[int]:
        """A uid no other running job holds, for the duration of the ``with`` block.

        ``fallback`` (the job user's uid) when the range is switched off."""
        if self.count == 0:
            yield fallback
            return
        self._prepare()
        subordinate = _subordinate_ranges(self.subid_files)
        for uid in range(self.base, self.base + self.count):
            if _is_account(uid) or any(start <= uid < end for start, end in subordinate):
                continue
            fd = self._lock(uid)
            if fd is None:
                continue
            try:
                yield uid
            finally:
                os.close(fd)
            return
        raise ExecutorError(
            f"all {self.count} sandbox uids are in use by running jobs, or name accounts or "
            "subordinate ids (TRE_SANDBOX_UID_COUNT)"
        )

    @contextlib.contextmanager
    def hold_again(self, uid: int) -> Iterator[bool]:
        """Hold ``uid`` again for a job a worker that died had started (reattach); True if
        now held. A uid outside the range, or held already, is followed all the same."""
        if self.count == 0 or not self.base <= uid < self.base + self.count:
            yield False
            return
        self._prepare()
        fd = self._lock(uid)
        try:
            yield fd is not None
        finally:
            if fd is not None:
                os.close(fd)

    def _lock(self, uid: int) -> int | None:
        fd = os.open(self.lock_dir / str(uid), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    def _prepare(self) -> None:
        try:
            self.lock_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            st = self.lock_dir.lstat()
        except OSError as exc:
            raise ExecutorError(f"cannot make the sandbox uid folder {self.lock_dir}: {exc}") from exc
        if self.lock_dir.is_symlink() or st.st_uid != os.geteuid() or st.st_mode & 0o077:
            raise ExecutorError(f"the sandbox uid folder {self.lock_dir} must be private to the worker")


def _is_account(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


def _subordinate_ranges(files: tuple[Path, ...]) -> list[tuple[int, int]]:
    """[start, end) of every ``name:start:count`` line of the subordinate id files present."""
    ranges: list[tuple[int, int]] = []
    for path in files:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            parts = line.strip().split(":")
            if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                ranges.append((int(parts[1]), int(parts[1]) + int(parts[2])))
    return ranges
