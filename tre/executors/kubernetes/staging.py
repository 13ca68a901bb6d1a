"""Where collected outputs land before they count, and how repeated collection stays idempotent.

The worker records whatever is in ``spec.output_dir`` when the job ends, so that directory
must only ever hold a complete, checked copy of /output or nothing. Collection therefore
spools the tar to a file on disk next to it (the worker's state volume, not its
memory-backed /tmp), unpacks into a sibling ``tree`` directory, and only then renames that
tree into place and writes a ``collected`` marker.

A worker that dies while collecting (killed, OOM, node loss) is replaced, and the new one
reattaches to the same Job. It must neither collect twice nor retry for ever (an output
that kills the worker would otherwise kill every worker in turn): the marker makes a
finished collection a no-op, and an attempt counter on disk stops after
`MAX_ATTEMPTS` interrupted attempts, failing the job closed.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

MAX_ATTEMPTS = 2


class OutputStaging:
    """The on-disk state of one job's output collection, kept beside its output directory."""

    def __init__(self, output_dir: Path, job_label: str) -> None:
        self.output_dir = output_dir
        self.work = output_dir.parent / f".tre-collect-{job_label}"
        self.spool = self.work / "outputs.tar"
        self.tree = self.work / "tree"
        self._marker = output_dir.parent / f".tre-collected-{job_label}"
        self._attempts = output_dir.parent / f".tre-collect-attempts-{job_label}"

    @property
    def done(self) -> bool:
        """A previous worker already collected and committed these outputs."""
        return self._marker.exists()

    @property
    def attempts(self) -> int:
        try:
            return int(self._attempts.read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def begin(self) -> int:
        """Start an attempt: drop leftovers of an interrupted one; returns this attempt's number."""
        self.discard()
        if self.output_dir.exists():
            # Without the marker, anything here is from an interrupted attempt: not trusted.
            shutil.rmtree(self.output_dir)
        self.output_dir.mkdir(parents=True)
        self.work.mkdir(parents=True)
        attempt = self.attempts + 1
        self._attempts.write_text(str(attempt))
        _fsync_dir(self.output_dir.parent)
        return attempt

    def commit(self) -> None:
        """Put the checked tree in place of the (empty) output directory, then mark it done."""
        self.tree.mkdir(parents=True, exist_ok=True)
        self.output_dir.rmdir()
        os.rename(self.tree, self.output_dir)
        self._marker.write_text("collected\n")
        _fsync_dir(self.output_dir.parent)
        self.discard()

    def discard(self) -> None:
        """Remove the spool and any partial tree; the output directory stays as it is."""
        shutil.rmtree(self.work, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    """Make renames and new files in `path` durable before a crash can be followed by a reattach."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
