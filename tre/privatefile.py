"""Owner-only (0600) files that several processes may race to create: keys and their metadata.

A file created with O_EXCL and then written can be read half-written by a process that starts a
moment later (it sees the name, reads zero bytes, and calls the key damaged). Every such file is
therefore written in full under a private name and hard-linked into place: others see either no
file or the whole of it, and the first link wins.

Each write is durable before it returns: the data is ``fsync``ed before the name points at it,
and the folder is ``fsync``ed after the link or rename. Without the second, a power cut can
leave the folder without the new name (a key history rolled back past its commit point, the
last signed checkpoint beside the key or an auditor's remembered checkpoint moved back to an
older one), or, on some file systems, the name pointing at an empty file.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path


def _private_tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")


def _write_synced(tmp: Path, data: bytes, flags: int) -> None:
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | flags, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def fsync_dir(folder: Path) -> None:
    """Make the names in ``folder`` durable (a rename or link is a change of the folder)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def create_once(path: Path, data: bytes) -> bool:
    """Create ``path`` holding ``data`` unless it exists; False if another process won the race
    (the caller then reads the winner's file, which is complete)."""
    tmp = _private_tmp(path)
    try:
        _write_synced(tmp, data, os.O_EXCL)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        fsync_dir(path.parent)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def replace(path: Path, data: bytes) -> None:
    """Write ``path`` atomically (readers see the old file or the new one, never a mix) and
    durably (after a power cut, the new one)."""
    tmp = _private_tmp(path)
    try:
        _write_synced(tmp, data, os.O_TRUNC)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)
