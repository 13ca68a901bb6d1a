"""Carrying an ended cohort job's finished series into a new job (`tre preprocess --resume`).

Resuming reruns a recipe into the output folder that holds its manifest
(`tre.kernels.manifest`), but the platform gives every job a fresh ``/output``: a cohort
that failed, timed out or was cancelled half-way could only be started again from nothing.
The new job reads the ended one's outputs at ``/inputs/<id>`` (read-only, an input job of the
same project, `tre.jobs.lineage`), and before its run this copies each series that the old
manifest records as ``ok`` under the same recipe into its own folder, checking every file's
size and SHA-256 against the manifest while it copies; the run's own resume check then finds
them done and processes only the rest. The series keep their pseudonyms (the names are
carried whatever the recipe, as a folder's are).

The old folder was written by a job, so its manifest is not trusted beyond what it can be
checked against: a file is taken only from directly under ``series/``, named for its series,
a regular file (no link), with the recorded size and hash; a series with any file that is not
is left out whole and processed again.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from tre.kernels.manifest import MANIFEST_NAME, Manifest
from tre.kernels.pseudonyms import SERIES_DIR

_BLOCK = 1 << 22


def carry_over(source: Path, out_dir: Path, recipe: dict[str, Any]) -> int:
    """Copy ``source``'s finished series of ``recipe`` into ``out_dir``; how many were.

    Nothing is done when ``out_dir`` has a manifest already (a rerun into its own folder
    resumes from that) or ``source`` has none of this recipe's version."""
    if (out_dir / MANIFEST_NAME).exists() or not (source / MANIFEST_NAME).is_file():
        return 0
    old = Manifest.open(source, recipe)
    new = Manifest(out_dir / MANIFEST_NAME, recipe, names=dict(old.names))
    (out_dir / SERIES_DIR).mkdir(parents=True, exist_ok=True)
    for uid, entry in sorted(old.series.items()):
        own = old.own_outputs(uid, source)
        if own is not None and _copy_series(own, out_dir):
            new.record(uid, entry)
    if new.series or new.names:
        new.save(paced=False)
    return len(new.series)


def _copy_series(own: list[tuple[Path, dict[str, Any]]], out_dir: Path) -> bool:
    """Copy one series' recorded files, or none of them (False) if any does not check out."""
    copied: list[Path] = []
    for src, out in own:
        dst = out_dir / SERIES_DIR / src.name
        if not _copy_checked(src, dst, out.get("bytes"), out.get("sha256")):
            for path in copied:
                path.unlink(missing_ok=True)
            return False
        copied.append(dst)
    return True


def _copy_checked(src: Path, dst: Path, size: object, sha256: object) -> bool:
    """Copy a regular file whose size and SHA-256 are the recorded ones, durably; else False
    and nothing left behind (the hash is taken while copying: the file is read once)."""
    try:
        fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False
    with os.fdopen(fd, "rb") as fin:
        if not stat.S_ISREG(os.fstat(fin.fileno()).st_mode) or os.fstat(fin.fileno()).st_size != size:
            return False
        h = hashlib.sha256()
        tmp_fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".partial", dir=dst.parent)
        try:
            with os.fdopen(tmp_fd, "wb") as fout:
                while chunk := fin.read(_BLOCK):
                    h.update(chunk)
                    fout.write(chunk)
                fout.flush()
                os.fdatasync(fout.fileno())  # before the manifest names it, as the writers do
            if h.hexdigest() != sha256:
                Path(tmp).unlink(missing_ok=True)
                return False
            os.chmod(tmp, 0o644)
            os.replace(tmp, dst)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return True
