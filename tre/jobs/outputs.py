"""Recording a finished job's output files: relative path, size and SHA-256.

The hash recorded here is what the egress airlock later binds a release to, so it is taken
by the control plane from the files on disk, never reported by the job itself.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from sqlalchemy import delete
from sqlalchemy.orm import Session

from tre.store.models import JobOutput


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def scan_outputs(root: Path) -> list[tuple[str, int, str]]:
    """Regular files under ``root`` as (relative path, size, sha256); links are not followed."""
    found: list[tuple[str, int, str]] = []
    if not root.is_dir():
        return found
    for path in sorted(root.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        found.append((path.relative_to(root).as_posix(), path.stat().st_size, sha256_file(path)))
    return found


def record_outputs(session: Session, job_id: str, root: Path) -> list[JobOutput]:
    session.execute(delete(JobOutput).where(JobOutput.job_id == job_id))
    rows = [JobOutput(job_id=job_id, path=p, size=s, sha256=h) for p, s, h in scan_outputs(root)]
    session.add_all(rows)
    session.flush()
    return rows
