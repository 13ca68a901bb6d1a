"""A job's /output as its own size-limited file system, and copying it out afterwards.

Why a file system per job: a quota checked by walking the tree sees only files that have a
name. A job that writes into an unlinked file it keeps open, or into an ``O_TMPFILE``, uses
host disk the walk never counts (the review used 100 MiB of disk against a 5 MiB quota). An
ext4 image of the job's own, loop-mounted at /output, makes the kernel refuse the write
(``ENOSPC``) whatever the file has or has not for a name, and its inode count bounds the
number of entries too.

How the quota is exact: the image is made a little larger than the quota (ext4 needs room
for its own metadata), then every block beyond ``quota`` is marked *reserved*. Reserved
blocks are usable only by host root, and the job runs as the unprivileged job user, so it
can store exactly ``quota`` bytes (its folders' blocks included). No journal: the image is
thrown away after the job, so crash consistency buys nothing.

After the job, `copy_out` copies what the job left into the job's output folder on the host
with `tre.executors.fstree` (no symlink followed, no depth limit on the walk), bounded by the
quota in apparent bytes (sparse files count at their full size, as they would on release),
the entry count and the depth; the copies lose setuid/setgid and group/other write bits.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shutil
import stat
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tre.errors import is_storage_full
from tre.executors import fstree, liveness, reasons
from tre.executors.base import ExecutorError

log = logging.getLogger(__name__)
BLOCK = 4096
INODE_SIZE = 256
MIB = 1024 * 1024
# Room for ext4's own metadata (superblocks, group descriptors, bitmaps, root folder) on top
# of the inode tables; whatever is left over is reserved, never given to the job.
_SLACK = 4 * MIB
# ... and the driver's own 2 % reserve (see `make_image`).
_COPY_CHUNK = 1 << 20
_FREE_BLOCKS = re.compile(r"^Free blocks:\s+(\d+)$", re.MULTILINE)
_BLOCK_COUNT = re.compile(r"^Block count:\s+(\d+)$", re.MULTILINE)


def _run(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ExecutorError(f"cannot make the job's output file system: {argv[0]}: {exc}") from exc
    if done.returncode != 0:
        raise ExecutorError(
            f"cannot make the job's output file system: {argv[0]} exited with {done.returncode}: "
            f"{done.stderr.strip()[:300]}"
        )
    return done.stdout


def make_image(
    path: Path, quota_bytes: int, uid: int, gid: int, max_entries: int = fstree.MAX_ENTRIES
) -> None:
    """Create a sparse ext4 image at ``path`` where ``uid`` can store exactly ``quota_bytes``.

    The root folder belongs to ``uid:gid``; the image holds ``max_entries`` inodes (plus a few
    for ext4 itself), so the job cannot make more files and folders than the tree limit.
    """
    inodes = max_entries + 16
    quota_blocks = -(-quota_bytes // BLOCK)
    size = quota_blocks * BLOCK + inodes * INODE_SIZE + _SLACK + quota_bytes // 16
    size = -(-size // BLOCK) * BLOCK
    with open(path, "wb") as fh:
        os.fchmod(fh.fileno(), 0o600)
        fh.truncate(size)
    _run(
        [
            "mkfs.ext4", "-q", "-F", "-b", str(BLOCK), "-I", str(INODE_SIZE), "-N", str(inodes),
            "-m", "0", "-O", "^has_journal,^resize_inode",
            "-E", f"root_owner={uid}:{gid},lazy_itable_init=1,nodiscard", str(path),
        ]
    )  # fmt: skip
    header = _run(["dumpe2fs", "-h", str(path)])
    free_match, count_match = _FREE_BLOCKS.search(header), _BLOCK_COUNT.search(header)
    if free_match is None or count_match is None:
        raise ExecutorError("cannot make the job's output file system: dumpe2fs shows no block counts")
    # The ext4 driver itself holds back 2 % of the blocks (at most 4096) for its own use.
    driver_reserve = min(int(count_match.group(1)) // 50, 4096)
    usable = int(free_match.group(1)) - driver_reserve
    if usable < quota_blocks:
        raise ExecutorError(f"the job's output file system has {usable} usable blocks, fewer than the quota")
    _run(["tune2fs", "-r", str(usable - quota_blocks), str(path)])


# copy_file_range refuses files on two different file systems on many kernels (EXDEV: the
# job folders on a mount of their own, apart from the template cache); then read and write.
_NO_COPY_RANGE = frozenset({errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL})


def _copy_range(src_fd: int, dst_fd: int, count: int, offset: int) -> int:
    try:
        return os.copy_file_range(src_fd, dst_fd, count, offset, offset)
    except OSError as exc:
        if exc.errno not in _NO_COPY_RANGE:
            raise
    data = os.pread(src_fd, min(count, _COPY_CHUNK), offset)
    return os.pwrite(dst_fd, data, offset) if data else 0


def sparse_copy(src: Path, dst: Path) -> None:
    """Copy a sparse file, data extents only (an empty ext4 image is mostly holes)."""
    src_fd = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(src_fd).st_size
        dst_fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.ftruncate(dst_fd, size)
            offset = 0
            while offset < size:
                try:
                    start = os.lseek(src_fd, offset, os.SEEK_DATA)
                except OSError as exc:
                    if exc.errno == errno.ENXIO:  # only a hole is left
                        break
                    raise
                end = os.lseek(src_fd, start, os.SEEK_HOLE)
                while start < end:
                    copied = _copy_range(src_fd, dst_fd, end - start, start)
                    if copied <= 0:
                        raise OSError(f"short copy of {src}")
                    start += copied
                offset = end
        finally:
            os.close(dst_fd)
    finally:
        os.close(src_fd)


class ImageTemplates:
    """Empty output images made once per (quota, job user) and copied per job.

    ``mkfs.ext4``, ``dumpe2fs`` and ``tune2fs`` cost about 70 ms per job; copying the data
    extents of a ready image (a few hundred KiB) costs a few. ``root`` must be private to the
    worker (0700): whoever can write a template decides every job's file system.
    """

    VERSION = 1

    def __init__(self, root: Path) -> None:
        self.root = root

    def make(self, path: Path, quota_bytes: int, uid: int, gid: int) -> None:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = self.root.lstat()
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
            make_image(path, quota_bytes, uid, gid)  # not private: never trust it
            return
        template = self.root / f"v{self.VERSION}-{quota_bytes}-{uid}-{gid}.ext4"
        if not template.exists():
            partial = self.root / f".{template.name}.{os.getpid()}.{threading.get_ident()}"
            make_image(partial, quota_bytes, uid, gid)
            os.replace(partial, template)
        sparse_copy(template, path)


def full_margin(size_bytes: int) -> int:
    """How close to full counts as full: ext4 refuses a write whole when the folio it needs
    (up to 2 MiB on kernels with large folios) does not fit, so a writer that met ENOSPC can
    leave up to that much unused. An estimate, used only to word the reason."""
    return min(max(128 * 1024, size_bytes // 16), 2 * MIB)


def is_full(mountpoint: Path, margin_bytes: int = 2 * BLOCK) -> bool:
    """Whether an unprivileged writer has (almost) no room left on the mounted file system."""
    try:
        st = os.statvfs(mountpoint)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize <= margin_bytes


def out_of_entries(mountpoint: Path) -> bool:
    """Whether the mounted file system has no free inode left (a /tmp of many tiny files)."""
    try:
        st = os.statvfs(mountpoint)
    except OSError:
        return False
    return st.f_files > 0 and st.f_favail == 0


@dataclass
class CopyResult:
    """What `copy_out` copied, and the fixed-vocabulary problem that stopped it, if one did."""

    entries: int = 0
    bytes: int = 0
    problem: str | None = None


def copy_out(src: Path, dst: Path, uid: int, gid: int, quota_bytes: int) -> CopyResult:
    """Copy the tree under ``src`` (the job's mounted /output) into the folder ``dst``.

    Regular files, folders and symlinks (as links, never followed) are copied, owned by
    ``uid:gid`` (the job user: on the host, a job's files are never root's) with at most
    mode 0755; anything else (FIFOs, sockets) is left out. Copying stops, with a reason, past
    ``quota_bytes`` apparent bytes or `fstree.MAX_ENTRIES` entries; entries nested deeper than
    `fstree.MAX_DEPTH` are left out with a reason. Everything copied before that is kept.
    """
    dst.mkdir(parents=True, exist_ok=True)
    os.chmod(dst, 0o700)
    result = CopyResult()
    root_fd = os.open(dst, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    stack = [root_fd]
    quota_mib = -(-quota_bytes // MIB)
    try:
        for entry in fstree.walk(src):
            if entry.depth > fstree.MAX_DEPTH:
                result.problem = result.problem or reasons.output_depth(fstree.MAX_DEPTH)
                continue
            result.entries += 1
            if result.entries > fstree.MAX_ENTRIES:
                result.problem = reasons.output_entries(fstree.MAX_ENTRIES)
                break
            while len(stack) > entry.depth:
                os.close(stack.pop())
            if len(stack) < entry.depth:
                continue  # its folder could not be copied
            parent = stack[-1]
            mode = entry.st.st_mode
            if stat.S_ISDIR(mode):
                fd = _copy_dir(entry.name, parent, stat.S_IMODE(mode), uid, gid)
                if fd is not None:
                    stack.append(fd)
            elif stat.S_ISLNK(mode):
                _copy_link(entry, parent, uid, gid)
            elif stat.S_ISREG(mode):
                if result.bytes + entry.st.st_size > quota_bytes:
                    result.problem = reasons.output_quota(quota_mib)
                    break
                result.bytes += _copy_file(entry, parent, uid, gid)
    finally:
        for fd in stack:
            os.close(fd)
    return result


def _raise_if_full(exc: OSError) -> None:
    """A full disk of the platform's own is never skipped like an entry it cannot copy:
    before, a folder or file that found no room was left out and the job still succeeded
    with outputs missing. The caller fails the job in fixed words (`reasons.storage_full`)."""
    if is_storage_full(exc):
        raise exc


def clear_folder(folder: Path) -> None:
    """Remove what is inside ``folder`` (a partial copy), keeping the folder itself."""
    with contextlib.suppress(OSError):
        for child in folder.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    child.unlink()


def _copy_dir(name: str, parent: int, mode: int, uid: int, gid: int) -> int | None:
    try:
        os.mkdir(name, 0o700, dir_fd=parent)
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
    except OSError as exc:
        _raise_if_full(exc)
        return None
    os.fchown(fd, uid, gid)
    # Group read and search (the job user's group): a later job reading these outputs as its
    # input runs as a uid of its own (`tre.executors.jobuids`), in that group. The output
    # folder above stays private to the worker, so no other account gains anything.
    os.fchmod(fd, (mode & 0o755) | 0o750)
    return fd


def _copy_link(entry: fstree.Entry, parent: int, uid: int, gid: int) -> None:
    try:
        target = os.readlink(entry.name, dir_fd=entry.dir_fd)
        os.symlink(target, entry.name, dir_fd=parent)
        os.chown(entry.name, uid, gid, dir_fd=parent, follow_symlinks=False)
    except OSError as exc:
        _raise_if_full(exc)


def _copy_file(entry: fstree.Entry, parent: int, uid: int, gid: int) -> int:
    try:
        src = os.open(
            entry.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=entry.dir_fd
        )
    except OSError:
        return 0
    try:
        st = os.fstat(src)
        if not stat.S_ISREG(st.st_mode):
            return 0
        try:
            dst = os.open(
                entry.name,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600,
                dir_fd=parent,
            )
        except OSError as exc:
            _raise_if_full(exc)
            return 0
        copied = 0
        try:
            # Never more than the size seen by the walk: a file still growing cannot push the
            # copy past the quota check made on that size.
            while copied < entry.st.st_size:
                sent = os.sendfile(dst, src, copied, min(_COPY_CHUNK, entry.st.st_size - copied))
                if sent == 0:
                    break
                copied += sent
            os.fchown(dst, uid, gid)
            os.fchmod(dst, (stat.S_IMODE(st.st_mode) & 0o755) | 0o040)  # group read: see _copy_dir
        finally:
            os.close(dst)
        return copied
    finally:
        os.close(src)


# -- mounting on the host -----------------------------------------------------------------

# .sandbox-<pid>.<start time>-<token>; names made before start times were recorded lack
# ".<start time>" and are judged on the pid alone (`tre.executors.liveness`).
_SCRATCH = re.compile(r"^\.sandbox-(?P<pid>\d+)(?:\.(?P<start>\d+))?-[0-9a-f]{8}$")


def scratch_name(token: str) -> str:
    """Name of a job's private scratch folder (beside its output folder): the worker's pid and
    start time let a later worker tell a leftover of a dead worker (see `recover_stale`) from
    a live worker's, even once the dead worker's pid has been reused."""
    return f".sandbox-{liveness.owner_tag()}-{token[:8]}"


def mount_image(image: Path, target: Path) -> None:
    """Loop-mount the job's image on its output folder (host namespace, ``nosuid,nodev``).

    On the host, so that what the job wrote is where the worker looks even if the worker
    dies mid-job (`recover_stale` turns such a leftover into plain files). Its root is made
    0700 (and belongs to the job user), so no other account reads what the job writes.
    """
    _run(["mount", "-t", "ext4", "-o", "loop,nosuid,nodev,noinit_itable", str(image), str(target)])
    with contextlib.suppress(OSError):
        (target / "lost+found").rmdir()
    os.chmod(target, 0o700)


def unmount(target: Path) -> None:
    _run(["umount", str(target)])


def collect(output_dir: Path, scratch: Path, uid: int, gid: int, quota_bytes: int) -> CopyResult:
    """Replace the mounted output file system at ``output_dir`` by a plain copy of its files.

    A second mount of the same file system (a bind in ``scratch``) keeps it readable while
    ``output_dir`` itself is unmounted and becomes an ordinary folder again.
    """
    view = scratch / "view"
    view.mkdir(mode=0o700, exist_ok=True)
    _run(["mount", "--bind", "-o", "ro", str(output_dir), str(view)])
    try:
        unmount(output_dir)
        return copy_out(view, output_dir, uid, gid, quota_bytes)
    finally:
        unmount(view)


def is_mount_point(path: Path, mountinfo: Path = Path("/proc/self/mountinfo")) -> bool:
    target = str(path).replace(" ", "\\040")
    try:
        return any(line.split()[4] == target for line in mountinfo.read_text().splitlines())
    except (OSError, IndexError):
        return False


@dataclass(frozen=True)
class Leftover:
    """A scratch folder whose worker is gone, and what of the job's output it still holds."""

    scratch: Path
    output_mounted: bool  # the job's output file system is still mounted on its folder
    copy_interrupted: bool  # the worker died while copying it out (its read-only view mounted)


def find_leftovers(
    roots: list[Path], pattern: re.Pattern[str] = _SCRATCH, keep: Callable[[Path], bool] | None = None
) -> list[Leftover]:
    """The scratch folders under ``<root>/<job>/`` whose creating worker no longer lives.

    ``pattern``: their names (groups ``pid`` and ``start``, either may be absent; a name
    without a pid is a dead worker's). ``keep``: a leftover it says yes to is left alone
    (the Docker executor's whose container still exists: a worker will reattach to it)."""
    found: list[Leftover] = []
    for root in roots:
        try:
            job_dirs = [d for d in root.iterdir() if d.is_dir() and not d.is_symlink()]
        except OSError:
            continue
        for job_dir in job_dirs:
            try:
                children = list(job_dir.iterdir())
            except OSError:
                continue
            for scratch in children:
                match = pattern.match(scratch.name)
                if match is None:
                    continue
                groups = match.groupdict()
                start = int(groups["start"]) if groups.get("start") is not None else None
                if groups.get("pid") is not None and liveness.owner_alive(int(groups["pid"]), start):
                    continue
                if keep is not None and keep(scratch):
                    continue
                found.append(
                    Leftover(scratch, is_mount_point(job_dir / "output"), is_mount_point(scratch / "view"))
                )
    return found


def recover_stale(
    roots: list[Path],
    uid: int,
    gid: int,
    quota_bytes: int = 1 << 40,
    pattern: re.Pattern[str] = _SCRATCH,
    keep: Callable[[Path], bool] | None = None,
) -> list[Path]:
    """Turn output file systems left mounted by a worker that died into plain folders.

    Looks for ``<job dir>/.sandbox-<pid>.<start>-<token>`` scratch folders under each root
    whose worker is gone (`find_leftovers`). If the job's ``output`` folder beside it is still
    a mount point, its files are copied out (as `collect` does). If the worker died *while*
    copying (the output unmounted, the read-only view in the scratch folder still mounted),
    the partial copy is thrown away and the copy made again, whole, from the view: a file cut
    short by the crash is never recorded as the job's output. Then every mount goes (the
    loop device with it), and the scratch folder with the image file. Returns the output
    folders that were recovered. ``pattern``, ``keep``: as `find_leftovers` (the Docker
    executor's scratch folders are named otherwise).
    """
    recovered: list[Path] = []
    for left in find_leftovers(roots, pattern, keep):
        output = left.scratch.parent / "output"
        try:
            if left.copy_interrupted:
                view = left.scratch / "view"
                if left.output_mounted:  # killed between the bind and the unmount
                    unmount(view)
                    collect(output, left.scratch, uid, gid, quota_bytes)
                else:
                    try:
                        clear_folder(output)
                        copy_out(view, output, uid, gid, quota_bytes)
                    finally:
                        unmount(view)
                recovered.append(output)
            elif left.output_mounted:
                collect(output, left.scratch, uid, gid, quota_bytes)
                recovered.append(output)
        except (OSError, ExecutorError) as exc:
            # A copy that failed (a full disk) is no copy: nothing cut short is recorded. The
            # others are recovered all the same; this one is tried again at the next sweep if
            # its file system is still mounted.
            log.warning("could not recover the outputs left in %s: %s", left.scratch, exc)
            if not is_mount_point(output):
                clear_folder(output)
        finally:
            # Never delete through a mount; a file system still mounted is tried again later.
            if not is_mount_point(left.scratch / "view") and not is_mount_point(output):
                shutil.rmtree(left.scratch, ignore_errors=True)
    return recovered
