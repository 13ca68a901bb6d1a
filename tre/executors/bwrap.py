"""Build the bubblewrap command line for one job: what the sandbox can see and do.

Kept apart from the process supervision in `tre.executors.local` so that the security
boundary (namespaces, mounts, environment) can be read and reviewed in one place.
See docs/sandbox.md for the resulting file-system layout.
"""

from __future__ import annotations

import os
import re
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tre.executors import procview
from tre.executors.base import ExecutorError, ImageConfig, JobSpec, is_env_name
from tre.executors.gpu import SANDBOX_DIR as GPU_SANDBOX_DIR
from tre.executors.gpu import GpuMounts, nvidia_devices

__all__ = ["nvidia_devices"]  # re-exported: it lived here before `tre.executors.gpu`

MIB = 1024 * 1024
SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"
_DATASET_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_PATH_LIKE = frozenset({"PATH", "LD_LIBRARY_PATH"})
# Top-level names of a rootfs image that the sandbox replaces with its own mounts.
_ROOTFS_SKIP = frozenset(
    {"proc", "dev", "sys", "tmp", "data", "output", "run", "code", "inputs", GPU_SANDBOX_DIR[1:]}
)
_JOB_ID = re.compile(r"^[0-9a-f]{32}$")
# Host /etc entries the dynamic loader and common tools need; nothing with credentials.
_HOST_ETC = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "alternatives", "nsswitch.conf")
_HOST_TOP = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
# /proc hardening, after Docker's masked/read-only paths. The sandbox's uid maps to the
# worker's uid (root in the embedded mode), and the kernel lets that uid write root-owned
# 0644 files such as /proc/sys/kernel/core_pattern (a host root code-execution primitive).
# bubblewrap only covers /proc entries that *look* writable, and /proc/sys is a 0555 dir, so
# it is left writable; these are made read-only (bind of the same entry) explicitly.
_PROC_READ_ONLY = ("sys", "fs", "sysrq-trigger", "irq", "bus")
# Kernel internals with no use to research code (memory layout, page flags, timers, keys).
_PROC_MASKED_FILES = (
    "kcore", "keys", "key-users", "kmsg", "kpageflags", "kpagecount", "kpagecgroup", "latency_stats",
    "timer_list", "timer_stats", "sched_debug", "slabinfo", "pagetypeinfo", "vmallocinfo", "mtrr",
)  # fmt: skip
_PROC_MASKED_DIRS = ("acpi", "asound", "scsi")


def sanitise_image_ref(image: str) -> str:
    """Directory name of an image's local rootfs: ``tre/python:3.11`` -> ``tre_python_3.11``."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", image.strip())
    return "_" + name[1:] if name.startswith(".") else name


def image_rootfs(images_dir: Path | None, image: str) -> Path | None:
    """The local rootfs directory for ``image`` under ``images_dir``, if one was installed."""
    if images_dir is None or not image:
        return None
    name = sanitise_image_ref(image)
    candidate = images_dir / name
    if name and candidate.is_dir() and not candidate.is_symlink():
        return candidate
    return None


def host_toolchain_paths() -> list[Path]:
    """The interpreter trees a job needs when it runs on the host toolchain.

    ``sys.prefix`` is the virtual environment (site-packages), ``sys.base_prefix`` the
    interpreter it was made from, and the real path of the interpreter may be elsewhere
    again (pyenv shims, symlinked venvs). Anything already under /usr is covered by /usr.
    """
    raw = {
        Path(sys.prefix),
        Path(sys.exec_prefix),
        Path(sys.base_prefix),
        Path(sys.base_exec_prefix),
        Path(os.path.realpath(sys.executable)).parent.parent,
    }
    resolved = sorted({Path(os.path.realpath(p)) for p in raw} | raw, key=lambda p: len(p.parts))
    keep: list[Path] = []
    for p in resolved:
        if p == Path("/") or p.is_relative_to("/usr") or not p.exists():
            continue
        if any(p.is_relative_to(k) for k in keep):
            continue
        keep.append(p)
    return keep


def dataset_mounts(spec: JobSpec) -> list[tuple[Path, str]]:
    """(host path, sandbox path) per dataset: one dataset at /data, several at /data/<id>."""
    out: list[tuple[Path, str]] = []
    seen: set[str] = set()
    for ds in spec.datasets:
        if ds.host_path is None:
            raise ExecutorError(f"dataset {ds.dataset_id} has no host path; the local executor needs one")
        if not _DATASET_ID.match(ds.dataset_id):
            raise ExecutorError(f"dataset id {ds.dataset_id!r} is not a safe directory name")
        host = Path(ds.host_path)
        if not host.exists():
            raise ExecutorError(f"dataset {ds.dataset_id} path {host} does not exist")
        target = ds.mount_path if ds.mount_path != "/data" else None
        if target is None:
            target = "/data" if len(spec.datasets) == 1 else f"/data/{ds.dataset_id}"
        norm = os.path.normpath(target)
        if norm != "/data" and not norm.startswith("/data/"):
            raise ExecutorError(f"dataset mount path {target!r} must be /data or below it")
        if norm in seen:
            raise ExecutorError(f"two datasets would be mounted at {norm}")
        seen.add(norm)
        out.append((host, norm))
    return out


def input_mounts(spec: JobSpec) -> list[tuple[Path, str]]:
    """(host path, sandbox path) per input job: its output folder at /inputs/<job id>.

    The id and path are the worker's, but they become a mount point: checked here like the
    datasets' so that no spec can place a bind anywhere else in the sandbox."""
    out: list[tuple[Path, str]] = []
    for mount in spec.inputs:
        if not _JOB_ID.match(mount.job_id) or mount.mount_path != f"/inputs/{mount.job_id}":
            raise ExecutorError(f"input job {mount.job_id!r} must be mounted at /inputs/<its id>")
        host = Path(mount.host_path)
        if not host.is_dir() or host.is_symlink():
            raise ExecutorError(f"the outputs of input job {mount.job_id} are not a folder")
        if mount.mount_path in {dest for _, dest in out}:
            raise ExecutorError(f"input job {mount.job_id} is named twice")
        out.append((host, mount.mount_path))
    return out


def image_argv(command: list[str], config: ImageConfig | None) -> list[str]:
    """The program and arguments a job runs, with Docker's Entrypoint/Cmd rules.

    The job's command replaces the image's Cmd; an empty command runs Entrypoint + Cmd.
    Without an image config (host-toolchain mode) the command is run as given.
    """
    if config is None:
        argv = list(command)
    else:
        argv = [*config.entrypoint, *(command if command else config.cmd)]
    if not argv or any(not isinstance(a, str) or "\0" in a for a in argv) or not argv[0]:
        raise ExecutorError(
            "the job command (with the image's entrypoint) must be a non-empty list of strings "
            "without NUL bytes"
        )
    return argv


def image_identity(config: ImageConfig | None, uid: int, gid: int) -> tuple[int, int]:
    """The uid/gid the job has inside its sandbox: the image's numeric non-root User, else the
    sandbox uid. Names cannot be resolved safely (the image's /etc/passwd is the image's
    word) and root is never granted; either way the host uid is the job user's."""
    if config is None or not config.user:
        return uid, gid
    user, _, group = config.user.partition(":")
    asked_uid, asked_gid = _id_number(user), _id_number(group)
    if asked_uid is None:
        return uid, gid
    return asked_uid, gid if asked_gid is None else asked_gid


_ID = re.compile(r"[0-9]{1,10}")


def _id_number(text: str) -> int | None:
    """A non-root id the image's User may set: ASCII digits only, 1 to 2^32-2; else None.

    ``str.isdigit`` also takes other scripts' digits, superscripts and circled numbers, and
    ``int`` refuses some of those: an image whose User was ``²`` imported and then failed
    every job with an executor error (redteam round 19); ``１０００１`` (fullwidth) was
    honoured as 10001, though no container runtime reads it as a number."""
    if not _ID.fullmatch(text):
        return None
    number = int(text)
    return number if 0 < number <= 0xFFFFFFFE else None


_MAX_LINK_HOPS = 40  # the kernel's own limit on links followed in one path (ELOOP)


def folder_in_image(rootfs: Path, path: str) -> bool:
    """Whether ``path`` names a folder of the image as the sandbox will see it.

    Resolved component by component with ``lstat``, every symbolic link read as the image's
    (an absolute target starts again at the image's root, ``..`` stops there), never by the
    host: an image is researcher-supplied, and ``Path.is_dir()`` on the host, as root, would
    follow ``probe -> /home/alice`` into the host's file system and turn the job's outcome
    into an oracle on which host folders exist (redteam round 10). A path that passes through
    a top-level name the sandbox replaces (/tmp, /data, /proc, ...) is not the image's: no.
    """
    pending = [p for p in path.split("/") if p not in ("", ".")]
    current: list[str] = []
    hops = 0
    while pending:
        name = pending.pop(0)
        if name == "..":
            if current:
                current.pop()
            continue
        if not current and name in _ROOTFS_SKIP:
            return False
        try:
            st = os.lstat(rootfs.joinpath(*current, name))
        except (OSError, ValueError):
            return False
        if stat.S_ISLNK(st.st_mode):
            hops += 1
            if hops > _MAX_LINK_HOPS:
                return False
            try:
                target = os.readlink(rootfs.joinpath(*current, name))
            except OSError:
                return False
            if target.startswith("/"):
                current = []
            pending = [p for p in target.split("/") if p not in ("", ".")] + pending
            continue
        if not stat.S_ISDIR(st.st_mode):
            return False
        current.append(name)
    return True


def image_workdir(config: ImageConfig | None, has_code: bool, rootfs: Path | None) -> str:
    """/code when the job has code; else the image's WorkingDir when it is a folder of the
    image (`folder_in_image`: resolved in the image, never on the host); else /tmp (the
    image's / is read-only here, unlike Docker's)."""
    if has_code:
        return "/code"
    wd = config.working_dir if config is not None else ""
    if wd and rootfs is not None and os.path.isabs(wd) and "\0" not in wd:
        norm = os.path.normpath(wd)
        if norm == "/" or folder_in_image(rootfs, norm):
            return norm
    return "/tmp"  # noqa: S108 - the sandbox's private tmpfs


def sandbox_env(
    spec: JobSpec, path: str, extra: dict[str, str], image_env: dict[str, str] | None = None
) -> dict[str, str]:
    """The job's whole environment: a minimal base, the image's Env, executor extras (GPU
    library and tool folders are prepended to what the image set), then spec.env."""
    env = {
        "PATH": path,
        "HOME": "/tmp",  # noqa: S108 - the sandbox's private tmpfs, not the host's /tmp
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    for source in (image_env or {}, extra):
        for key, value in source.items():
            if not is_env_name(key) or "\0" in value:
                raise ExecutorError(f"invalid environment variable {key!r} in the image or sandbox")
            if key in _PATH_LIKE and source is extra and env.get(key):
                value = f"{value}:{env[key]}"
            env[key] = value
    for key, value in spec.env.items():
        if not is_env_name(key):
            raise ExecutorError(f"invalid environment variable name {key!r}")
        if "\0" in value:
            raise ExecutorError(f"environment variable {key} contains a NUL byte")
        env[key] = value
    return env


def identity_stage(path: Path, writable: bool) -> str:
    """Default bind-source mapping: the host path itself (no staging)."""
    return str(path)


@dataclass
class SandboxLayout:
    """Inputs to `build_args` that are not in the JobSpec."""

    uid: int
    gid: int
    tmp_size_bytes: int
    rootfs: Path | None = None
    seccomp_fd: int | None = None
    passwd_fd: int | None = None
    group_fd: int | None = None
    hosts_fd: int | None = None
    extra_ro_binds: list[tuple[Path, str]] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)
    # NVIDIA device nodes and driver files (GPU jobs); /dev is otherwise bwrap's minimal set.
    gpu: GpuMounts = field(default_factory=GpuMounts)
    # (fd, sandbox path under /tmp): files copied into the job's private /tmp at start-up.
    tmp_files: list[tuple[int, str]] = field(default_factory=list)
    # Writable binds; only for trusted platform runs (cache warm-up), never for research jobs.
    rw_binds: list[tuple[Path, str]] = field(default_factory=list)
    # How a host path becomes a bind source bwrap can reach as the job user (see
    # `tre.executors.stage`); the identity when bwrap runs with the worker's own rights.
    stage: Callable[[Path, bool], str] = identity_stage
    # Already-staged sources for /output (the job's size-limited file system) and /tmp (a
    # sized tmpfs the supervisor can inspect); None: a plain bind / bwrap's own tmpfs.
    output_source: str | None = None
    tmp_source: str | None = None
    # The same for /dev/shm (a staged tmpfs with an entry bound); None: bwrap's own tmpfs.
    shm_source: str | None = None
    # Private device nodes (`Stage.devices`) bound over bwrap's /dev entries of these names,
    # and a private procfs for the read-only /proc entries (`Stage.proc`); None: the host's.
    dev_source: str | None = None
    dev_nodes: tuple[str, ...] = ()
    proc_source: str | None = None
    # (fd, /proc/<name>): the job's own /proc files (`tre.executors.procview.job_files`),
    # bound read-only over the procfs's host-wide counters.
    proc_files: list[tuple[int, str]] = field(default_factory=list)
    # (staged file, /proc/<name>): the same files staged (`Stage.data`), used instead when set.
    proc_sources: list[tuple[str, str]] = field(default_factory=list)
    # Staged tmpfs trees (`Stage.tree`) for the root and /dev, and an empty read-only folder
    # (`Stage.empty_dir`) for masked /proc folders; bwrap's own tmpfs where None.
    root_source: str | None = None
    devroot_source: str | None = None
    empty_dir_source: str | None = None
    # An empty file (`Stage.empty`) bound over each masked /proc file; None: /dev/null.
    empty_source: str | None = None
    # --block-fd: bwrap reads it after every mount is made, just before running the job.
    block_fd: int | None = None
    # The image's config (Env, Entrypoint/Cmd, WorkingDir, User); None in host-toolchain mode.
    image_config: ImageConfig | None = None


def _host_root_args(layout: SandboxLayout) -> tuple[list[str], str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for name in _HOST_TOP:
        host = Path("/") / name
        if host.is_symlink():
            args += ["--symlink", os.readlink(host), f"/{name}"]
        elif host.is_dir():
            args += ["--ro-bind", str(host), f"/{name}"]
    for name in _HOST_ETC:
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    for fd, dest in (
        (layout.passwd_fd, "/etc/passwd"),
        (layout.group_fd, "/etc/group"),
        (layout.hosts_fd, "/etc/hosts"),
    ):
        if fd is not None:
            args += ["--ro-bind-data", str(fd), dest]
    toolchain = host_toolchain_paths()
    for p in toolchain:
        args += ["--ro-bind", layout.stage(p, False), str(p)]
    bins = [str(Path(sys.prefix) / "bin")] if Path(sys.prefix, "bin").is_dir() else []
    return args, ":".join([*bins, SANDBOX_PATH])


def _proc_args(
    host_proc: Path = Path("/proc"),
    source: str | None = None,
    files: list[tuple[int, str]] | None = None,
    empty: str | None = None,
    staged: list[tuple[str, str]] | None = None,
    empty_dir: str | None = None,
) -> list[str]:
    """Mount a fresh /proc for the pid namespace, then apply the hardening above.

    Only entries present on the host are touched (procfs cannot create files); the
    top-level non-pid entries of a new procfs are the same as the host's. ``source``: where
    bwrap finds the read-only entries (a procfs of the job's own, `Stage.proc`), so that
    their inodes, and locks on them, are not shared with other jobs. Then every host-wide
    counter is masked, deny by default (`tre.executors.procview.masked`), and ``files``
    (the job's own meminfo, cpuinfo, stat, loadavg, uptime) are bound over the procfs's.
    A masked file is ``empty`` (a file of the job's stage) or /dev/null (unreadable there:
    the sandbox's /proc is ``nodev``). ``staged``: the job's own files as staged files
    (`Stage.data`), bound in place of ``files``; ``empty_dir``: an empty read-only folder
    (`Stage.empty_dir`) bound over each masked folder in place of a tmpfs.
    """
    args = ["--proc", "/proc"]
    base = source or str(host_proc)
    for name in _PROC_READ_ONLY:
        if name in procview.KEPT and (host_proc / name).exists():  # the others are masked
            args += ["--ro-bind", f"{base}/{name}", f"/proc/{name}"]
    masked_files, masked_dirs = procview.masked(host_proc)
    for name in sorted({*masked_files, *(n for n in _PROC_MASKED_FILES if (host_proc / n).exists())}):
        args += ["--ro-bind", empty or "/dev/null", f"/proc/{name}"]
    for name in sorted({*masked_dirs, *(n for n in _PROC_MASKED_DIRS if (host_proc / n).is_dir())}):
        if empty_dir is not None:
            args += ["--ro-bind", empty_dir, f"/proc/{name}"]
        else:  # bwrap's tmpfs: its statfs is half the host's RAM (see `Stage.tree`)
            args += ["--size", "4096", "--tmpfs", f"/proc/{name}", "--remount-ro", f"/proc/{name}"]
    if staged:
        for source, dest in staged:
            args += ["--ro-bind", source, dest]
    else:
        for fd, dest in files or []:
            args += ["--ro-bind-data", str(fd), dest]
    return args


def _dev_args(layout: SandboxLayout) -> list[str]:
    """/dev: a tmpfs holding the job's own six nodes (`tre.executors.stage.Stage.devices`:
    a lock on one is nobody else's) and the ``fd``, ``stdin``, ``stdout``, ``stderr`` links,
    as bubblewrap's ``--dev`` makes.

    Why not ``--dev`` with the job's nodes bound over it (rounds 10 to 14): ``--dev`` first
    binds the host's nodes from the host's devtmpfs, and covered mounts still show in the
    job's /proc/self/mountinfo with that file system's options, whose ``size=`` and
    ``nr_inodes=`` are half the host's RAM (redteam round 15: ``size=12334492k`` on a
    24,684,092 kB host whose jobs' meminfo and ``sysinfo`` show their own limit): a
    fingerprint of the machine. No devpts instance either: jobs are batch jobs without a
    terminal. Without a staged folder (unit tests) it is ``--dev``."""
    if layout.dev_source is None:
        return ["--dev", "/dev"]
    if layout.devroot_source is not None:
        args = ["--bind", layout.devroot_source, "/dev"]
    else:  # bwrap's tmpfs, sized (its entries are not: see `Stage.tree`)
        args = ["--size", "65536", "--tmpfs", "/dev"]
    for name in layout.dev_nodes:
        args += ["--dev-bind", f"{layout.dev_source}/{name}", f"/dev/{name}"]
    for fd, name in enumerate(("stdin", "stdout", "stderr")):
        args += ["--symlink", f"/proc/self/fd/{fd}", f"/dev/{name}"]
    return [*args, "--symlink", "/proc/self/fd", "/dev/fd"]


def _rootfs_args(rootfs: Path, stage: Callable[[Path, bool], str]) -> list[str]:
    """The image's top-level entries, each bound read-only onto bwrap's tmpfs root.

    Binding entries rather than the image root itself is what lets the sandbox add mount
    points the image lacks (/proc, /dev, /tmp, /data, /output, /code) while the image stays
    read-only; the image's own entries of those names are hidden.
    """
    staged = stage(rootfs, False)
    args: list[str] = []
    for entry in sorted(rootfs.iterdir()):
        if entry.name in _ROOTFS_SKIP:
            continue
        if entry.is_symlink():
            args += ["--symlink", os.readlink(entry), f"/{entry.name}"]
        else:
            args += ["--ro-bind", f"{staged}/{entry.name}", f"/{entry.name}"]
    return args


# The sandbox's root tmpfs (mount points and bwrap's links only; read-only once made).
ROOT_TMPFS_BYTES = 1 << 20


def build_args(spec: JobSpec, layout: SandboxLayout) -> list[str]:
    """bwrap's arguments (without the program name) up to and including the job command."""
    argv = image_argv(spec.command, layout.image_config)
    args = [
        # Every namespace, including a network namespace holding only an unconfigured lo.
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--uid",
        str(layout.uid),
        "--gid",
        str(layout.gid),
        "--cap-drop",
        "ALL",
        "--die-with-parent",
        "--new-session",
        "--hostname",
        "tre-sandbox",
    ]
    # The root every other mount is made on: a tmpfs of a fixed size and entry count. bwrap's
    # own root has neither, and answered statfs("/") with half the host's RAM (round 15).
    if layout.root_source is not None:
        args += ["--bind", layout.root_source, "/"]
    else:
        args += ["--size", str(ROOT_TMPFS_BYTES), "--tmpfs", "/"]
    size = str(layout.tmp_size_bytes)
    # The private /tmp comes before the toolchain binds: a checkout or virtualenv that lives
    # under the host's /tmp (CI clones often do) is then bound on top of it, not hidden by it.
    if layout.tmp_source is not None:
        args += ["--bind", layout.tmp_source, "/tmp"]  # noqa: S108 - sandbox-private tmpfs
    else:
        args += ["--size", size, "--tmpfs", "/tmp"]  # noqa: S108 - sandbox-private tmpfs
    if layout.rootfs is not None:
        root_args, path = _rootfs_args(layout.rootfs, layout.stage), SANDBOX_PATH
    else:
        root_args, path = _host_root_args(layout)
    args += root_args
    for host, dest in layout.extra_ro_binds:
        args += ["--ro-bind", layout.stage(host, False), dest]
    for host, dest in layout.gpu.files:
        args += ["--ro-bind", layout.stage(host, False), dest]
    args += [
        *_proc_args(
            source=layout.proc_source,
            files=layout.proc_files,
            empty=layout.empty_source,
            staged=layout.proc_sources,
            empty_dir=layout.empty_dir_source,
        ),
        *_dev_args(layout),
        *[a for dev in layout.gpu.devices for a in ("--dev-bind", dev, dev)],
    ]
    if layout.shm_source is not None:
        args += ["--bind", layout.shm_source, "/dev/shm"]  # noqa: S108 - sandbox-private tmpfs
    else:
        args += ["--size", size, "--tmpfs", "/dev/shm"]  # noqa: S108 - sandbox-private tmpfs
    if layout.devroot_source is not None:
        args += ["--remount-ro", "/dev"]  # its nodes and /dev/shm are mounts of their own
    made: set[str] = {"/tmp"}  # noqa: S108
    for fd, dest in layout.tmp_files:
        if not dest.startswith("/tmp/") or ".." in dest.split("/"):  # noqa: S108
            raise ExecutorError(f"seed file destination {dest!r} must be inside /tmp")
        parts = dest.split("/")[1:-1]
        for i in range(2, len(parts) + 1):
            d = "/" + "/".join(parts[:i])
            if d not in made:
                made.add(d)
                args += ["--dir", d]
        args += ["--file", str(fd), dest]
    for host, dest in layout.rw_binds:
        args += ["--bind", layout.stage(host, True), dest]
    for host, dest in dataset_mounts(spec):
        args += ["--ro-bind", layout.stage(host, False), dest]
    # Earlier jobs' outputs: read-only binds (staged ro, nosuid, nodev), so the job can read
    # them and can neither change, rename nor delete a file another job's release hashed.
    for host, dest in input_mounts(spec):
        args += ["--ro-bind", layout.stage(host, False), dest]
    if spec.code_dir is not None:
        if not Path(spec.code_dir).is_dir():
            raise ExecutorError("the job's code folder does not exist")
        args += ["--ro-bind", layout.stage(Path(spec.code_dir), False), "/code"]
    output = layout.output_source if layout.output_source is not None else layout.stage(spec.output_dir, True)
    args += ["--bind", output, "/output"]
    workdir = image_workdir(layout.image_config, spec.code_dir is not None, layout.rootfs)
    # The root itself (a tmpfs holding the mount points) becomes read-only last, so nothing
    # outside /tmp, /dev/shm and /output is writable.
    args += ["--remount-ro", "/", "--chdir", workdir]
    if layout.seccomp_fd is not None:
        args += ["--seccomp", str(layout.seccomp_fd)]
    if layout.block_fd is not None:
        args += ["--block-fd", str(layout.block_fd)]
    args += ["--clearenv"]
    extra = {**layout.extra_env, **layout.gpu.env_paths}
    image_env = layout.image_config.env if layout.image_config is not None else None
    for key, value in sandbox_env(spec, path, extra, image_env).items():
        args += ["--setenv", key, value]
    return [*args, "--", *argv]
