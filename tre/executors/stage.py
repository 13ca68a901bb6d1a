"""Start a job's sandbox as the unprivileged job user, with every bind source reachable.

Why: bubblewrap started by the worker (root in the embedded mode) maps the sandbox uid onto
host root, so for some kernel checks the job *is* root, and the files it writes belong to
root (a setuid copy of bash in /output gave another local account euid 0). Started as a
dedicated host user instead (``tre-job``, made by ``scripts/install-system-deps``),
bubblewrap uses an unprivileged user namespace and the job maps onto that user: it can gain
nothing, and what it writes is that user's.

The catch is that bubblewrap then resolves every bind source as that user, and the state
directory, the image store and often the datasets are private to the worker (0700). They
must not be opened to the job user on the host. Instead the launcher (still root) makes a
private mount namespace, mounts a small tmpfs on the stage folder (default /run/tre-stage,
an empty root-owned folder on the host) and bind-mounts each source there (read-only,
``nosuid``, ``nodev`` as asked); only then does it become the job user and start bubblewrap,
which finds the sources under the stage. Nobody else on the host sees those mounts, and they
vanish with the namespace. The job's /output is its own size-limited file system, mounted
by the worker on the job's output folder (`tre.executors.outputfs`) and staged like the
rest; the launcher also mounts the job's sized /tmp in the stage.

The launcher stays alive (as root, outside the sandbox's namespaces, in the job's cgroup)
until the worker has looked at the job's end: it reports ``started <bwrap pid>`` and
``exited <status>`` on a status pipe and waits for the worker to close a hold pipe, so that
the worker can see whether /tmp was full through ``/proc/<launcher>/root``.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path

from tre.executors.base import ExecutorError
from tre.executors.jobclock import JobClock

DEFAULT_STAGE_DIR = Path("/run/tre-stage")
# The launcher's whole environment, and (set again by `launcher_argv`) bubblewrap's: its init
# is pid 1 of the sandbox, whose environment every job can read at /proc/1/environ.
LAUNCHER_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
# Host folders any user can read: bound directly, never staged.
_SYSTEM_PREFIXES = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/dev", "/proc")
LAUNCH_FAILED = 125

# bash, not sh: the pipe fds the worker passes can be numbered above 9, which dash refuses.
LAUNCHER = r"""
fail() { echo "tre-launch: $1" >&2; exit 125; }
while [ "$1" != "--" ]; do echo $$ > "$1" || fail "cannot join a cgroup"; shift; done; shift
S=$1 U=$2 G=$3 SF=$4 HF=$5; shift 5
OVL=redirect_dir=nofollow,metacopy=off,index=off,xino=off
case $SF$HF in *[!0-9]*) fail "bad status fds" ;; esac
mount -t tmpfs -o mode=0755,size=64k,nr_inodes=4096,nosuid,nodev,noexec tre-stage "$S" \
    || fail "cannot mount the stage"
mkdir "$S/.e" "$S/.s" || fail "cannot make the stage's folders"
bind() {
    mount --bind "$1" "$2" || fail "cannot stage a bind source"
    mount -o "remount,bind,$3" "$2" || fail "cannot restrict a staged bind"
}
while [ "$1" != "--" ]; do
    k=$1 src=$2 n=$3 d=$S/$3; shift 3
    case $k in
    ro|rw)
        if [ -d "$src" ]; then mkdir "$d"; else : > "$d"; fi || fail "cannot make a stage mount point"
        if [ "$k" = rw ]; then bind "$src" "$d" nosuid,nodev
        elif [ -d "$src" ]; then
            # A read-only folder reaches the job through an overlay of its own: same files,
            # but inodes (and so flock/fcntl locks) private to this job. Its topmost layer is
            # an empty folder of the stage's, dressed as the source's root: overlayfs answers
            # statfs from that layer, so the job reads the sealed stage's fixed figures, not
            # the host file system's live free space (redteam round 11).
            mkdir "$S/.s/$n" "$S/.e/$n" || fail "cannot make a stage mount point"
            bind "$src" "$S/.s/$n" ro,nosuid,nodev
            chown --reference="$S/.s/$n" "$S/.e/$n" && chmod --reference="$S/.s/$n" "$S/.e/$n" \
                && touch --no-dereference --reference="$S/.s/$n" "$S/.e/$n" \
                || fail "cannot dress a read-only overlay's top"
            mount -t overlay -o "ro,nosuid,nodev,$OVL,lowerdir=$S/.e/$n:$S/.s/$n" tre-ro "$d" \
                || fail "cannot stage a read-only overlay"
        else bind "$src" "$d" ro,nosuid,nodev
        fi ;;
    dev)
        mkdir "$d" && mount -t tmpfs -o mode=0755,size=4k,nr_inodes=64,nosuid,noexec tre-dev "$d" \
            || fail "cannot mount the private devices"
        for node in $src; do
            [ "$node" = - ] && continue
            IFS=: read -r name major minor <<< "$node"
            mknod -m 0666 "$d/$name" c "$major" "$minor" || fail "cannot make a private device"
        done
        mount -o remount,ro,nosuid,noexec "$d" || fail "cannot seal the private devices" ;;
    empty)
        : > "$d" && chmod 0444 "$d" || fail "cannot make the empty file" ;;
    data)
        mkdir "$d" && mount -t tmpfs -o mode=0755,size=1m,nr_inodes=4,nosuid,nodev,noexec tre-file "$d" \
            && printf '%s' "$src" > "$d/f" && chmod 0444 "$d/f" \
            && mount -o remount,ro,nosuid,nodev,noexec "$d" || fail "cannot stage a file" ;;
    proc)
        mkdir "$d" && mount -t proc -o nosuid,nodev,noexec tre-proc "$d" \
            || fail "cannot mount a private /proc" ;;
    tmpfs|tree)
        sz=${src%:*} ni=${src#*:} m=0700
        [ "$k" = tree ] && m=0755
        case $sz$ni in ""|*[!0-9]*) fail "bad tmpfs size" ;; esac
        o="size=$sz,nr_inodes=$ni,mode=$m,uid=$U,gid=$G,nosuid,nodev"
        mkdir "$d" && mount -t tmpfs -o "$o" tre-tmp "$d" || fail "cannot mount /tmp" ;;
    emptydir)
        mkdir -m 0555 "$d" || fail "cannot make the empty folder" ;;
    *) fail "unknown stage kind" ;;
    esac
done; shift
mount -o remount,ro "$S" || fail "cannot seal the stage"
eval "\"\$@\" $SF>&- $HF<&- &"
echo "started $!" >&"$SF"
wait $!; rc=$?
echo "exited $rc" >&"$SF"
read -r _ <&"$HF"
exit $rc
"""


# The device nodes bubblewrap's --dev gives a job, made afresh for each (`Stage.devices`).
SANDBOX_DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
# The stage folder's path is written into mount options (overlay's lowerdir): plain names only.
_STAGE_ROOT = re.compile(r"^/[A-Za-z0-9._/-]+$")

# One tmpfs entry per 8 KiB of the file system's size, never fewer than _MIN_SCRATCH_INODES.
_SCRATCH_BYTES_PER_INODE = 8192
_MIN_SCRATCH_INODES = 4096


def scratch_inodes(size_bytes: int) -> int:
    """How many files and folders a job's /tmp or /dev/shm of ``size_bytes`` may hold.

    Why a bound: tmpfs defaults to half the host's RAM pages in inodes (millions), and each
    empty file costs about 1 KiB of kernel memory that its size limit never sees. Charged to
    the job's memory cgroup, millions of tiny files end in the OOM killer rather than in
    ``disk full in /tmp``; without a cgroup (the rlimit fallback), or where kernel memory is
    not accounted, they are host memory the job was never given. At 8 KiB per entry the
    inodes cost at most ~1/8 of the tmpfs size; the floor leaves room for the Numba seed.
    """
    return max(_MIN_SCRATCH_INODES, int(size_bytes) // _SCRATCH_BYTES_PER_INODE)


def _is_system(path: Path) -> bool:
    text = str(path)
    return any(text == p or text.startswith(p + "/") for p in _SYSTEM_PREFIXES)


@dataclass
class Stage:
    """The bind sources of one job, as they will appear under ``root`` in its mount namespace.

    Call it as bwrap's ``stage`` mapping (`tre.executors.bwrap.SandboxLayout.stage`): each
    host path gets a short stage name, and the launcher's arguments list them all.
    """

    root: Path = DEFAULT_STAGE_DIR
    entries: list[tuple[str, str, str]] = field(default_factory=list)
    _names: dict[tuple[str, str], str] = field(default_factory=dict)

    def __call__(self, path: Path, writable: bool) -> str:
        if not writable and _is_system(Path(os.path.normpath(path))):
            return str(path)
        # Absolute here: the launcher runs in "/", not in the worker's working folder.
        return self._add("rw" if writable else "ro", os.path.abspath(path))

    def output(self, mounted: Path) -> str:
        """The job's output folder, where the worker has mounted its own file system."""
        return self._add("rw", os.path.abspath(mounted), "output")

    def tmp(self, size_bytes: int, name: str = "tmp") -> str:
        """A private tmpfs of ``size_bytes`` (the job's /tmp, or /dev/shm as ``shm``) whose
        entries are bounded too (`scratch_inodes`)."""
        return self._add("tmpfs", f"{int(size_bytes)}:{scratch_inodes(size_bytes)}", name)

    def devices(self, names: tuple[str, ...] = SANDBOX_DEVICES) -> tuple[str, tuple[str, ...]]:
        """A tmpfs of fresh character devices, one per host node of ``names`` (same numbers).

        Why not the host's nodes, as bubblewrap's ``--dev`` binds them: a lock is the inode's,
        and every sandbox bound the host's one /dev/null, so one job's ``flock`` on it was
        seen by every other job (redteam round 10). These nodes are this job's alone.
        Returns the staged folder and the names made in it (the host's character devices)."""
        nodes: list[str] = []
        for name in names:
            try:
                st = os.stat(f"/dev/{name}")
            except OSError:
                continue
            if stat.S_ISCHR(st.st_mode):
                nodes.append(f"{name}:{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}")
        made = tuple(node.split(":")[0] for node in nodes)
        return self._add("dev", " ".join(nodes) or "-", "dev"), made

    def proc(self) -> str:
        """A procfs of the launcher's own, the source of the /proc entries the sandbox binds
        read-only (/proc/sys ...): the host's procfs would share their inodes, and so their
        locks, with every other job."""
        return self._add("proc", "-", "proc")

    def empty(self) -> str:
        """An empty read-only file of the job's own, bound over the host-wide /proc counters
        it masks (`tre.executors.procview`): it reads as empty, where the host's /dev/null
        on the sandbox's ``nodev`` /proc refused reads, and its inode is nobody else's."""
        return self._add("empty", "-", "empty")

    def tree(self, size_bytes: int, inodes: int, name: str) -> str:
        """A tmpfs of the job's own, 0755, of ``size_bytes`` and ``inodes`` entries, that
        bubblewrap builds a tree of mount points in: the sandbox's root and its /dev.

        Why not bubblewrap's root or ``--tmpfs``: bwrap's root has no size, and ``--tmpfs``
        takes a size but no entry count, and a tmpfs without them answers ``statfs`` with
        half the host's RAM in blocks and in inodes (redteam round 15: 3,085,511 of each for
        ``/``, ``/dev`` and the masked /proc folders on a 24,684,092 kB host, whose jobs'
        meminfo and ``sysinfo`` show their own memory limit)."""
        return self._add("tree", f"{int(size_bytes)}:{int(inodes)}", name)

    def empty_dir(self) -> str:
        """An empty read-only folder of the sealed stage: mounted over the /proc folders the
        job's procfs masks (a fixed ``statfs``, see `tree`)."""
        return self._add("emptydir", "-", "emptydir")

    def data(self, content: bytes, name: str) -> str:
        """A read-only file holding ``content`` (text, at most 1 MiB), on a sealed 1 MiB tmpfs
        of its own: the job's /proc files (`tre.executors.procview.job_files`).

        Why not bubblewrap's ``--ro-bind-data``: it writes the file into bwrap's own tmpfs,
        mounted without a size, whose ``statfs`` answers half the host's RAM (redteam round
        15: ``statvfs("/proc/meminfo")`` told a job of a 1 GiB limit that the host had 24 GiB,
        which meminfo itself hides). This file system's figures are fixed."""
        text = content.decode()
        if len(content) > 1 << 20 or "\0" in text:
            raise ExecutorError("a staged file is over 1 MiB or holds a NUL byte")
        return self._add("data", text, f"d-{name}") + "/f"

    def _add(self, kind: str, source: str, name: str | None = None) -> str:
        # Named entries (output, tmp, shm) are one each, whatever their source.
        key = (kind, name or source)
        if key not in self._names:
            if kind != "data" and ("\n" in source or "\0" in source):
                raise ExecutorError("a bind source path contains a newline or NUL byte")
            self._names[key] = name or f"b{len(self._names)}"
            self.entries.append((kind, source, self._names[key]))
        return f"{self.root}/{self._names[key]}"

    def path(self, name: str) -> str:
        return f"{self.root}/{name}"


def launcher_argv(
    stage: Stage,
    procs_files: list[str],
    uid: int,
    gid: int,
    status_fd: int,
    hold_fd: int,
    command: list[str],
    wrap: list[str] | None = None,
    cpus: tuple[int, ...] = (),
    clock: JobClock | None = None,
) -> list[str]:
    """The whole command line: the job's CPUs (``taskset``, when ``cpus`` names them), die
    with the worker, own mount namespace, the launcher script, then ``wrap`` (still root:
    `tre.executors.sysinfo.helper_argv`), ``setpriv`` to the job user (no groups, no
    capabilities) and ``command``.

    ``taskset`` gives every process of the job the affinity of its CPU limit from the first
    instruction (redteam round 13); the job's cpuset cgroup, where there is one, is what
    stops the job widening it again (`tre.executors.cgroups`). ``clock``: the job's time
    namespace (`tre.executors.jobclock`), made by the same ``unshare``; every process the
    launcher starts is in it."""
    if not _STAGE_ROOT.match(str(stage.root)):
        raise ExecutorError(f"the sandbox stage folder {stage.root} must be a plain absolute path")
    tools = {
        name: shutil.which(name)
        for name in (
            "setpriv",
            "unshare",
            "bash",
            "mount",
            "mknod",
            "chown",
            "chmod",
            "touch",
            "taskset",
            "env",
        )
    }
    missing = [name for name, path in tools.items() if path is None]
    if missing:
        raise ExecutorError(f"{', '.join(missing)} not found; run scripts/install-system-deps")
    spec_args = [a for entry in stage.entries for a in entry]
    drop = [
        str(tools["setpriv"]), f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
        "--inh-caps=-all", "--bounding-set=-all", "--",
    ]  # fmt: skip
    # bash exports ``_`` (the path of what it runs: the worker's own Python interpreter, a host
    # path) and SHLVL to what it execs, and every exec after it passes them on to bubblewrap,
    # whose init's environment the job reads at /proc/1/environ: so the environment is set
    # anew, to exactly LAUNCHER_ENV, right before the drop to the job user (redteam round 19).
    clean = [str(tools["env"]), "-i", *(f"{k}={v}" for k, v in LAUNCHER_ENV.items())]
    pin = [str(tools["taskset"]), "--cpu-list", ",".join(map(str, sorted(cpus)))] if cpus else []
    time_ns = clock.unshare_args() if clock is not None else []
    return [
        *pin,
        str(tools["setpriv"]), "--pdeathsig", "KILL", "--",
        str(tools["unshare"]), "--mount", "--propagation", "private", *time_ns, "--",
        str(tools["bash"]), "--norc", "--noprofile", "-c", LAUNCHER, "tre-launch",
        *procs_files, "--",
        str(stage.root), str(uid), str(gid), str(status_fd), str(hold_fd),
        *spec_args, "--",
        *(wrap or []), *clean, *drop, *command,
    ]  # fmt: skip


def ensure_stage_dir(root: Path = DEFAULT_STAGE_DIR) -> None:
    """The (empty, root-owned, 0755) host folder the launcher mounts its tmpfs on."""
    try:
        root.mkdir(mode=0o755, parents=True, exist_ok=True)
        st = root.lstat()
    except OSError as exc:
        raise ExecutorError(f"cannot make the sandbox stage folder {root}: {exc}") from exc
    if not root.is_dir() or root.is_symlink() or st.st_uid != 0 or st.st_mode & 0o022:
        raise ExecutorError(
            f"the sandbox stage folder {root} must be a root-owned folder not writable by others"
        )
