"""A Docker job's read-only folders as overlays whose ``statfs`` is a sealed tmpfs's.

Why (redteam round 14): the Docker executor bound each dataset, the code and each input
job's outputs read-only from the host, so a container's ``statvfs("/data")`` (``/code``,
``/inputs/<id>``) answered the host file system's free blocks and inodes, live. That file
system usually also holds tre's state (other jobs' logs and outputs as they are written), so
a job could watch other projects' jobs write and two concurrent jobs could signal each
other through it. The local sandbox closed this in round 11 inside its launcher (an overlay
whose topmost layer is an empty folder of its sealed stage); this is the same remedy on the
host, for a container: a worker that is root mounts, in a scratch folder beside the job's
output folder, a 64 KiB tmpfs holding one empty folder per source (dressed as the source's
root: owner, mode, times) and, for each source, a read-only overlay of that folder over the
source. overlayfs answers ``statfs`` from its topmost layer, so the container reads the
sealed tmpfs's fixed figures; the files, their owners and modes are the source's.

Mounted on the host (the engine binds host paths, and must see the worker's mounts, as for
the output file system of `tre.executors.outputfs`), and unmounted by whichever worker
releases the job (`unmount_all`), a reattaching one included (`find_scratch`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Sequence
from pathlib import Path

from tre.executors import liveness
from tre.executors.base import ExecutorError

SCRATCH_PREFIX = ".docker-cover-"
# As the local sandbox's launcher: no redirects or metacopy followed, no index, no xino.
_OVERLAY = "ro,nosuid,nodev,redirect_dir=nofollow,metacopy=off,index=off,xino=off"
# Characters that the mount option parser would split or unescape in a lowerdir.
_UNSAFE = frozenset(",:\\= \t\n")


def _mount(argv: list[str]) -> None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ExecutorError(f"cannot cover the job's read-only folders: {argv[0]}: {exc}") from exc
    if done.returncode != 0:
        raise ExecutorError(
            f"cannot cover the job's read-only folders: {argv[0]} exited with {done.returncode}: "
            f"{done.stderr.strip()[:300]}"
        )


def _dress(top: Path, source: Path) -> None:
    """The empty top layer looks like the source's root (overlayfs shows the top's)."""
    st = source.stat()
    os.chown(top, st.st_uid, st.st_gid)
    os.chmod(top, st.st_mode & 0o7777)
    os.utime(top, ns=(st.st_atime_ns, st.st_mtime_ns))


def mount_covers(sources: Sequence[Path], beside: Path) -> tuple[Path, dict[str, Path]]:
    """Mount a read-only overlay for each folder of ``sources`` in a new scratch folder in
    ``beside``; return the scratch folder and {source: overlay}. Files are left as they are
    (a single file has no free space of its own to hide behind; none is bound today).
    Everything mounted so far is unmounted again if one step fails."""
    # Named by this worker's pid and start time: whose it is, should the worker die
    # (`tre.executors.dockerleftovers`).
    scratch = beside / f"{SCRATCH_PREFIX}{liveness.owner_tag()}-{uuid.uuid4().hex[:8]}"
    scratch.mkdir(mode=0o755)
    folders = [s for s in dict.fromkeys(sources) if s.is_dir()]
    covers: dict[str, Path] = {}
    try:
        cover = scratch / "cover"
        cover.mkdir()
        options = f"mode=0755,size=64k,nr_inodes={len(folders) * 2 + 16},nosuid,nodev,noexec"
        _mount(["mount", "-t", "tmpfs", "-o", options, "tre-cover", str(cover)])
        for i, source in enumerate(folders):
            lower = source
            if _UNSAFE & set(str(source)):  # seen through a bind with a plain name instead
                lower = scratch / f"s{i}"
                lower.mkdir()
                _mount(["mount", "--bind", "-o", "ro", str(source), str(lower)])
            top = cover / str(i)
            top.mkdir()
            _dress(top, source)
            target = scratch / f"ro{i}"
            target.mkdir()
            _mount(
                ["mount", "-t", "overlay", "-o", f"{_OVERLAY},lowerdir={top}:{lower}", "tre-ro", str(target)]
            )
            covers[str(source)] = target
        _mount(["mount", "-o", "remount,ro", str(cover)])
    except (ExecutorError, OSError) as exc:
        unmount_all(scratch)
        if isinstance(exc, ExecutorError):
            raise
        raise ExecutorError(f"cannot cover the job's read-only folders: {exc}") from exc
    return scratch, covers


def _mounts_under(scratch: Path, mountinfo: Path) -> list[str]:
    prefix = str(scratch).replace(" ", "\\040")
    points = []
    with contextlib.suppress(OSError):
        for line in mountinfo.read_text().splitlines():
            fields = line.split()
            if len(fields) > 4 and (fields[4] == prefix or fields[4].startswith(prefix + "/")):
                points.append(fields[4].replace("\\040", " "))
    return points


def unmount_all(scratch: Path, mountinfo: Path = Path("/proc/self/mountinfo")) -> None:
    """Unmount everything under ``scratch`` (overlays before the tmpfs and binds under them,
    newest first), then remove it. A mount that will not go is detached (``umount -l``): the
    folder is never removed while a source is still mounted in it."""
    for point in reversed(_mounts_under(scratch, mountinfo)):
        done = subprocess.run(["umount", point], capture_output=True, timeout=60, check=False)
        if done.returncode != 0:
            subprocess.run(["umount", "-l", point], capture_output=True, timeout=60, check=False)
    if _mounts_under(scratch, mountinfo):
        return  # leave it rather than walk into a source
    shutil.rmtree(scratch, ignore_errors=True)


def find_scratch(beside: Path) -> Path | None:
    """The scratch folder a previous worker left beside the output folder, if any."""
    found = sorted(beside.glob(f"{SCRATCH_PREFIX}*"))
    return found[0] if found else None
