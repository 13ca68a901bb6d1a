"""Freezing outputs: a content-addressed, read-only staging area keyed by SHA-256.

A release is bound to hashes, not to paths. The job's output file is copied once, hashed
*while* it is copied, and the copy is kept only when that hash equals the one recorded for
the job output when the job finished; so a file changed after the job (or swapped for a
symlink into a dataset) can never enter the airlock. At download time the staged copy is
hashed again from the very file descriptor that is then streamed, so a staged copy altered
on disk is refused as well.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from tre.stale import remove_stale

CHUNK = 1 << 20
BATCH_PREFIX = ".batch-"
STALE_BATCH_S = 24 * 3600  # far longer than freezing one request's files can take


class StagingError(Exception):
    """A file cannot be frozen or served; the message is safe to show the caller."""


class HashMismatch(StagingError):
    def __init__(self, what: str, expected: str, actual: str) -> None:
        super().__init__(f"{what}: SHA-256 is {actual}, but the release is bound to {expected}")
        self.expected = expected
        self.actual = actual


@dataclass(frozen=True)
class StagedFile:
    sha256: str
    size: int
    path: Path


def staged_path(staging_dir: Path, sha256: str) -> Path:
    """Where the frozen copy of a file with this hash lives (``sha[:2]/sha``)."""
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise StagingError(f"not a SHA-256 hex digest: {sha256!r}")
    return staging_dir / sha256[:2] / sha256


def safe_relative(path: str) -> PurePosixPath:
    """A job output path as recorded: relative, no '..', no empty parts."""
    p = PurePosixPath(path)
    if not path or p.is_absolute() or any(part in ("..", "") for part in p.parts) or "\x00" in path:
        raise StagingError(f"output path {path!r} is not a plain relative path")
    return p


def output_file(jobs_dir: Path, job_id: str, rel: str) -> Path:
    """The job's file on the control-plane host, refusing paths that leave its output folder."""
    root = (jobs_dir / job_id / "output").resolve()
    candidate = root.joinpath(*safe_relative(rel).parts)
    # Resolve the parent only: the last component is opened with O_NOFOLLOW below, so a
    # symlinked file is refused there; a symlinked folder is caught here.
    parent = candidate.parent.resolve()
    if parent != root and root not in parent.parents:
        raise StagingError(f"output path {rel!r} leaves the job's output folder")
    return parent / candidate.name


def _open_regular(path: Path) -> tuple[int, os.stat_result]:
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError as exc:
        raise StagingError(f"{path.name}: the file no longer exists") from exc
    except OSError as exc:  # ELOOP: a symlink where a file should be
        raise StagingError(f"{path.name}: cannot be opened as a regular file ({exc.strerror})") from exc
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise StagingError(f"{path.name}: not a regular file")
    return fd, st


def sha256_of(fh: BinaryIO) -> str:
    h = hashlib.sha256()
    for chunk in iter(lambda: fh.read(CHUNK), b""):
        h.update(chunk)
    return h.hexdigest()


def freeze(source: Path, staging_dir: Path, expected_sha256: str, expected_size: int) -> StagedFile:
    """Copy ``source`` into staging iff its bytes hash to ``expected_sha256``.

    Hashing the bytes that are actually copied (not a separate read before the copy) means
    there is no window in which the file could change between check and use.
    """
    with StagingBatch(staging_dir) as batch:
        batch.add(source, expected_sha256, expected_size)
        return batch.publish()[0]


class StagingBatch:
    """Freeze several files all or nothing: each is copied (and checked) into a folder private
    to this batch, and only once every copy succeeded are they moved to their content
    addresses; a failure part-way (a changed file, the disk filling up) removes the private
    folder and leaves staging as it was. A batch a crashed process left is swept by the next.
    """

    def __init__(self, staging_dir: Path) -> None:
        self.staging_dir = staging_dir
        self._copies: list[tuple[Path, str, int]] = []
        self._work: Path | None = None

    def __enter__(self) -> StagingBatch:
        self.staging_dir.mkdir(parents=True, exist_ok=True)
        remove_stale(self.staging_dir.glob(f"{BATCH_PREFIX}*"), STALE_BATCH_S)
        self._work = Path(tempfile.mkdtemp(dir=self.staging_dir, prefix=BATCH_PREFIX))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._work is not None:
            shutil.rmtree(self._work, ignore_errors=True)

    def add(self, source: Path, expected_sha256: str, expected_size: int) -> None:
        """Copy ``source`` into the batch iff its bytes hash to ``expected_sha256`` and it has
        ``expected_size`` bytes (`HashMismatch`, `StagingError` otherwise)."""
        assert self._work is not None, "use StagingBatch as a context manager"
        fd, _ = _open_regular(source)
        h = hashlib.sha256()
        size = 0
        tmp_fd, tmp_name = tempfile.mkstemp(dir=self._work, prefix=".incoming-")
        with os.fdopen(fd, "rb") as src, os.fdopen(tmp_fd, "wb") as dst:
            for chunk in iter(lambda: src.read(CHUNK), b""):
                h.update(chunk)
                size += len(chunk)
                dst.write(chunk)
            dst.flush()
            os.fsync(dst.fileno())
        actual = h.hexdigest()
        if actual != expected_sha256:
            raise HashMismatch(f"{source.name} changed after the job recorded it", expected_sha256, actual)
        if size != expected_size:
            raise StagingError(f"{source.name}: {size} bytes, but the job recorded {expected_size}")
        os.chmod(tmp_name, 0o444)
        self._copies.append((Path(tmp_name), expected_sha256, size))

    def publish(self) -> list[StagedFile]:
        """Move every copy to its content address (renames on one file system: no space
        needed); the staged files, in the order they were added."""
        staged = []
        for tmp, sha256, size in self._copies:
            target = staged_path(self.staging_dir, sha256)
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists() and _hash_path(target) == sha256:
                tmp.unlink()  # already frozen by an earlier request: same bytes by construction
            else:
                if target.exists():
                    os.chmod(target, 0o600)  # a damaged earlier copy: replace it with good bytes
                os.replace(tmp, target)
            staged.append(StagedFile(sha256=sha256, size=size, path=target))
        self._copies.clear()
        return staged


def _hash_path(path: Path) -> str:
    fd, _ = _open_regular(path)
    with os.fdopen(fd, "rb") as fh:
        return sha256_of(fh)


def open_verified(staging_dir: Path, expected_sha256: str) -> BinaryIO:
    """Open the frozen copy, prove it still hashes to the bound value, rewind, hand it over.

    The caller streams from the returned handle, i.e. from the same inode that was hashed.
    """
    path = staged_path(staging_dir, expected_sha256)
    fd, _ = _open_regular(path)
    fh = os.fdopen(fd, "rb")
    try:
        actual = sha256_of(fh)
        if actual != expected_sha256:
            raise HashMismatch("the staged copy was altered", expected_sha256, actual)
        fh.seek(0)
    except BaseException:
        fh.close()
        raise
    return fh
