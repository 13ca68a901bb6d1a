"""Walking a job's output tree on the host without trusting its shape.

The tree under a job's ``/output`` was made by research code, so the control plane must not
assume it is small, shallow or well named. A job can nest directories far deeper than
Python's recursion limit or ``PATH_MAX`` (``mkdir a; cd a`` in a loop), create millions of
empty entries (they cost no quota bytes), plant symlinks to host files, and use names that
are not valid UTF-8. ``os.walk`` and ``Path.rglob`` recurse (RecursionError) and build
absolute path strings (ENAMETOOLONG), so a walker built on them stops part-way: a setuid bit
deep in the tree was never cleared and the worker crashed while recording outputs.

`walk` visits every entry depth-first, iteratively, holding exactly one directory file
descriptor at a time (``openat`` down with ``O_NOFOLLOW``, ``..`` back up, checked against
the device and inode it came from), so neither depth nor path length limits it and no
symlink is ever followed. It is meant for trees whose writer has finished (the sandbox is
dead); it is not a defence against concurrent renames.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# What a job's output tree may hold. Both are far beyond what an analysis writes; past them
# the local sandbox's watchdog ends the job, and the output recorder stops recording.
MAX_ENTRIES = 100_000
MAX_DEPTH = 64

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass
class Entry:
    """One entry: act on it with ``dir_fd`` + ``name`` (``os.stat(name, dir_fd=...)``).

    ``parents`` is the walker's own stack of directory names from the root to this entry's
    folder; it changes as the walk goes on, so copy it (or join it) before the next step.
    """

    dir_fd: int
    name: str
    st: os.stat_result
    parents: list[str]

    @property
    def depth(self) -> int:
        """1 for the root's children."""
        return len(self.parents) + 1

    def relative(self) -> str:
        return "/".join([*self.parents, self.name])


def walk(root: Path) -> Iterator[Entry]:
    """Every entry under ``root`` (not ``root`` itself), never following a symlink.

    Children are visited in sorted order, so the sequence is the same as sorting the
    relative paths part by part. Entries that vanish or cannot be opened are skipped.
    """
    try:
        fd = os.open(root, _DIR_FLAGS)
    except OSError:
        return
    try:
        top = os.fstat(fd)
        parents: list[str] = []
        # Per open level: the (dev, ino) of that directory and its children still to visit.
        ids: list[tuple[int, int]] = [(top.st_dev, top.st_ino)]
        pending: list[list[str]] = [_children(fd)]
        while pending:
            todo = pending[-1]
            if not todo:
                pending.pop()
                ids.pop()
                if not parents:
                    break
                parents.pop()
                up = os.open("..", _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = up
                here = os.fstat(fd)
                if (here.st_dev, here.st_ino) != ids[-1]:
                    raise OSError(f"the tree under {root} changed while it was walked")
                continue
            name = todo.pop()
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except OSError:
                continue
            yield Entry(fd, name, st, parents)
            if not stat.S_ISDIR(st.st_mode):
                continue
            try:
                sub = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError:
                continue
            try:
                children = _children(sub)
            except OSError:
                os.close(sub)
                continue
            os.close(fd)
            fd = sub
            parents.append(name)
            ids.append((st.st_dev, st.st_ino))
            pending.append(children)
    finally:
        os.close(fd)


def _children(fd: int) -> list[str]:
    # Reversed, so that pop() hands them out in sorted order.
    return sorted(os.listdir(fd), reverse=True)


@dataclass
class Usage:
    bytes: int = 0
    entries: int = 0
    depth: int = 0


def usage(root: Path) -> Usage:
    """Apparent size of the regular files, number of entries and deepest level under ``root``."""
    u = Usage()
    for e in walk(root):
        u.entries += 1
        u.depth = max(u.depth, e.depth)
        if stat.S_ISREG(e.st.st_mode):
            u.bytes += e.st.st_size
    return u
