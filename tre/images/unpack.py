"""Unpack a verified image into a root filesystem, once per digest, and make it safe.

umoci applies the layers in order with whiteouts and keeps every write inside the bundle;
afterwards we walk the tree ourselves: setuid/setgid bits and every extended attribute (file
capabilities live in ``security.capability``) are removed, anything that is not a file,
folder or link is removed, and the total size is bounded. The finished tree is renamed into
place, so a half-unpacked image is never used. Empty mount points the sandbox needs
(``/proc``, ``/dev``, ``/tmp``, ``/data``, ``/output``, ``/code``...) are added where missing.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

from tre.images.errors import ImageRejected
from tre.images.tools import umoci_unpack

# Empty folders the sandbox mounts over (the root filesystem is bound read-only, so bwrap
# cannot create them itself). Made only where the image has nothing of that name.
MOUNT_POINTS = ("proc", "dev", "sys", "tmp", "data", "output", "code", "etc", "run")


def add_mount_points(root: Path) -> None:
    for name in MOUNT_POINTS:
        path = root / name
        if not os.path.lexists(path):
            path.mkdir(mode=0o755)


def sanitise_tree(root: Path, max_bytes: int) -> int:
    """Strip privilege bits and xattrs; return the bytes of regular files."""
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            for attr in _xattrs(path):
                os.removexattr(path, attr, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                continue
            if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
                os.unlink(path)
                continue
            if st.st_mode & (stat.S_ISUID | stat.S_ISGID):
                os.chmod(path, stat.S_IMODE(st.st_mode) & ~(stat.S_ISUID | stat.S_ISGID))
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
                if total > max_bytes:
                    raise ImageRejected(f"the image unpacks to more than {max_bytes >> 20} MiB")
    return total


def _xattrs(path: str) -> list[str]:
    try:
        return os.listxattr(path, follow_symlinks=False)
    except OSError:
        return []


def tree_size(root: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            st = os.lstat(os.path.join(dirpath, name))
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
    return total


def unpack_once(
    layout: Path, bundles: Path, hex_digest: str, max_bytes: int, check: Callable[[], None] | None = None
) -> Path:
    """The root filesystem of an image; unpacked on first use, under a lock per digest.

    ``check`` runs under the lock before umoci reads the layout, only when an unpack is
    needed: the store passes its verification of the stored layout, so that an image kept
    from before a rule existed meets that rule before it is unpacked again."""
    final = bundles / hex_digest
    rootfs = final / "rootfs"
    if rootfs.is_dir():
        return rootfs
    bundles.mkdir(parents=True, exist_ok=True)
    with removable_lock(bundles / f".{hex_digest}.lock"):
        if rootfs.is_dir():
            return rootfs
        work = bundles / f".{hex_digest}.partial"
        shutil.rmtree(work, ignore_errors=True)
        try:
            if check is not None:
                check()
            umoci_unpack(layout, work)
            sanitise_tree(work / "rootfs", max_bytes)
            add_mount_points(work / "rootfs")
            os.replace(work, final)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return rootfs


def drop_unpack_lock(bundles: Path, hex_digest: str) -> None:
    """Remove an image's unpack lock file, holding it (the only safe moment: a later opener
    makes a new file, a waiter notices the old one went)."""
    path = bundles / f".{hex_digest}.lock"
    if not path.exists():
        return
    with removable_lock(path):
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def removable_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on the file ``path``, which its holder may delete when the image
    leaves the store (`drop_unpack_lock`, `ImageStore.drop_lock_file`): a waiter that got the
    lock on the deleted file would hold it beside whoever opens the name afresh, so it checks
    that the name still is its file and opens it again if not (two unpacks of one image never
    share its ``.partial`` folder, two removals never run at once)."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                same = os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                yield
                return
        finally:
            os.close(fd)
