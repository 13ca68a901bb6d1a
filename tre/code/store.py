"""Code archives on the control-plane host, content-addressed by the SHA-256 of their bytes.

Layout under ``$TRE_HOME/code`` (0700, files 0600): ``archives/<sha256>.tar.gz`` holds each
accepted archive once however many jobs or projects send it; ``trees/<sha256>/`` is its
unpacked, read-only tree (folders 0755, files 0644, owned by the service user: root on a
root-run control plane), made once per hash and bound at ``/code`` by the local and Docker
executors; ``incoming/`` holds uploads until they are checked, so a refused upload leaves
nothing behind. Kubernetes pods get the archive itself and unpack it in an init container
(tre/code/fetch.py), so the cluster never trusts a tree it did not check.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from tre.code.archive import MIB, CodeLimits, CodeManifest, CodeTooLarge, inspect_file, unpack
from tre.config import Settings
from tre.errors import NotFound, TreError
from tre.stale import remove_stale

SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
# Longer than any upload or unpack runs: what is older was left by a crashed process.
STALE_S = 6 * 3600


def check_sha256(value: str) -> str:
    if not SHA256_HEX.fullmatch(value):
        raise TreError(f"{value[:80]!r} is not a SHA-256 (64 lowercase hex digits)")
    return value


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class StoredCode:
    """An accepted archive: its hash, size, what it holds and whether it was already stored."""

    sha256: str
    size: int
    manifest: CodeManifest
    deduplicated: bool


class CodeStore:
    def __init__(self, settings: Settings) -> None:
        self.root = settings.home / "code"
        self.archives = self.root / "archives"
        self.trees = self.root / "trees"
        self.incoming = self.root / "incoming"

    def ensure_dirs(self) -> None:
        for d in (self.root, self.archives, self.trees, self.incoming):
            d.mkdir(parents=True, exist_ok=True)
            d.chmod(0o700)

    def archive_path(self, sha256: str) -> Path:
        return self.archives / f"{check_sha256(sha256)}.tar.gz"

    def tree_path(self, sha256: str) -> Path:
        return self.trees / check_sha256(sha256)

    def has(self, sha256: str) -> bool:
        return self.archive_path(sha256).is_file()

    def remove(self, sha256: str) -> None:
        """Drop an archive and its tree (an upload refused after it was stored)."""
        self.archive_path(sha256).unlink(missing_ok=True)
        shutil.rmtree(self.tree_path(sha256), ignore_errors=True)

    def sweep_stale(self, now: float | None = None) -> list[Path]:
        """Remove uploads and unpacks a crashed process left (``incoming/upload-*``,
        ``trees/.<hash>-*``) once older than any upload can take (`STALE_S`)."""
        return remove_stale([*self.incoming.glob("upload-*"), *self.trees.glob(".*-*")], STALE_S, now)

    def receive(self, limits: CodeLimits) -> Incoming:
        """A writer for one upload; `Incoming.accept` checks and stores it (or refuses it)."""
        self.ensure_dirs()
        self.sweep_stale()
        return Incoming(self, limits)

    def store_file(self, path: Path, limits: CodeLimits) -> StoredCode:
        """Check and store an archive already on disk (local tools, tests)."""
        with self.receive(limits) as incoming, path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                incoming.write(chunk)
            return incoming.accept()

    def ensure_tree(self, sha256: str, limits: CodeLimits) -> Path:
        """The unpacked tree of ``sha256``, made on first use after re-checking hash and contents."""
        tree = self.tree_path(sha256)
        if tree.is_dir():
            return tree
        archive = self.archive_path(sha256)
        if not archive.is_file():
            raise NotFound(f"code archive {sha256} is not in the store")
        if sha256_file(archive) != sha256:
            raise TreError(f"code archive {sha256} in the store does not match its hash; it was altered")
        return self._make_tree(sha256, archive, limits)[0]

    def _make_tree(self, sha256: str, archive: Path, limits: CodeLimits) -> tuple[Path, CodeManifest]:
        """Unpack (which checks the archive first) into a temporary folder, then rename it into place."""
        tree = self.tree_path(sha256)
        self.ensure_dirs()
        work = Path(tempfile.mkdtemp(prefix=f".{sha256[:12]}-", dir=self.trees))
        try:
            manifest = unpack(archive, work / "tree", limits)
            try:
                os.rename(work / "tree", tree)
            except OSError:
                if not tree.is_dir():  # not a concurrent unpack of the same hash: a real error
                    raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return tree, manifest


class Incoming:
    """One upload being written to ``incoming/``, hashed and bounded as it arrives."""

    def __init__(self, store: CodeStore, limits: CodeLimits) -> None:
        self.store = store
        self.limits = limits
        fd, name = tempfile.mkstemp(prefix="upload-", suffix=".tar.gz", dir=store.incoming)
        self.path = Path(name)
        self._fh = os.fdopen(fd, "wb")
        self._digest = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limits.max_bytes:
            raise CodeTooLarge(
                f"the code archive is larger than {self.limits.describe_bytes()}, the project's quota"
            )
        self._digest.update(chunk)
        self._fh.write(chunk)

    def accept(self) -> StoredCode:
        """Check the whole archive, then move it to its content address (or drop a duplicate)."""
        self._fh.close()
        if self.size == 0:
            raise TreError("the code archive is empty")
        sha256 = self._digest.hexdigest()
        dest = self.store.archive_path(sha256)
        deduplicated = dest.is_file()
        if self.store.tree_path(sha256).is_dir():
            # Already unpacked once; still checked against this project's quota.
            manifest = inspect_file(self.path, self.limits)
        else:
            # Checked and unpacked before it is stored: an archive that cannot be unpacked is not kept.
            manifest = self.store._make_tree(sha256, self.path, self.limits)[1]
        if not deduplicated:
            self.path.chmod(0o600)
            os.replace(self.path, dest)
        return StoredCode(sha256, self.size, manifest, deduplicated)

    def __enter__(self) -> Incoming:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._fh.close()
        self.path.unlink(missing_ok=True)


__all__ = ["CodeStore", "Incoming", "StoredCode", "check_sha256", "sha256_file", "MIB"]
