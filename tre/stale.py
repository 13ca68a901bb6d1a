"""Removing what a crashed process left in a shared store.

Why: uploads, imports and unpacks write into scratch names first and rename into place; a
process killed in between leaves the scratch behind for ever. The code store and the image
store both let the next writer sweep scratch older than any write can take, and two writers
may sweep at once, so a path already gone is not an error.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterable
from pathlib import Path


def remove_stale(candidates: Iterable[Path], older_than_s: float, now: float | None = None) -> list[Path]:
    """Remove each candidate (file, link or folder) last modified more than ``older_than_s``
    ago; the removed paths."""
    cutoff = (time.time() if now is None else now) - older_than_s
    removed = []
    for path in candidates:
        try:
            if path.lstat().st_mtime >= cutoff:
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
        except FileNotFoundError:
            continue  # another writer swept it
    return removed
