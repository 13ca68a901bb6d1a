"""The default job backend: a bubblewrap sandbox on the control-plane host.

One job = one launcher (`tre.executors.stage`): it enrols itself in the job's cgroups (so
every sandbox process is born inside the memory, process and CPU limits), makes a private
mount namespace holding the job's bind sources, its size-limited /output file system
(`tre.executors.outputfs`) and its sized /tmp, then becomes the unprivileged job user and
runs ``prlimit`` -> ``bwrap``. This module supervises that tree: it streams the combined
stdout/stderr into ``spec.log_path``, polls for cancellation and the wall-clock limit, kills
the sandbox when one trips, copies /output into ``spec.output_dir`` and turns what happened
into a `JobResult` whose reason comes from a fixed vocabulary (`tre.executors.reasons`):
nothing the job prints can reach it.

The security boundary itself (namespaces, mounts, environment, seccomp) is built in
`tre.executors.bwrap` and `tre.executors.seccomp`; limits in `tre.executors.cgroups`.
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import logging
import os
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import termios
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, ClassVar

from tre.errors import is_storage_full
from tre.executors import fstree, jobclock, outputfs, procview, reasons, seccomp, sysinfo
from tre.executors.base import Executor, ExecutorError, JobResult, JobSpec, RunControl
from tre.executors.bwrap import SandboxLayout, build_args, image_identity, image_rootfs
from tre.executors.cgroups import CgroupLimits, JobCgroup, create_job_cgroup, job_cgroup_name, sweep_stale
from tre.executors.gpu import gpu_mounts
from tre.executors.jobuids import UidRange
from tre.executors.sandbox_settings import job_user_ids
from tre.executors.stage import (
    DEFAULT_STAGE_DIR,
    LAUNCH_FAILED,
    LAUNCHER_ENV,
    Stage,
    ensure_stage_dir,
    launcher_argv,
)
from tre.plural import count
from tre.states import JobState

if TYPE_CHECKING:  # the sandbox itself needs no pydantic; only the type is referenced
    from tre.config import Settings

log = logging.getLogger(__name__)

MIB = 1024 * 1024
_POLL_S = 0.2
_HEARTBEAT_S = 1.0
# How long a killed sandbox may take to report its end before everything is SIGKILLed.
_KILL_GRACE_S = 10.0
_TRE_PACKAGE_DIR = Path(__file__).resolve().parent.parent
_SANDBOX_PYTHONPATH = "/opt/tre/python"
# Where a job's Numba cache lives: inside its private /tmp, seeded from a trusted copy.
_SANDBOX_NUMBA_CACHE = "/tmp/.numba-cache"  # noqa: S108
_SEED_MAX_FILES = 2000
_SEED_MAX_BYTES = 512 * MIB
DEFAULT_JOB_USER = "tre-job"


def output_size(root: Path) -> int:
    """Total apparent size of the regular files under ``root`` (symlinks are not followed).

    Walked with `fstree.walk`: a file nested deeper than PATH_MAX still counts.
    """
    return fstree.usage(root).bytes


def job_limits(spec: JobSpec) -> CgroupLimits:
    """The cgroup limits of a job: its memory (no swap), processes and CPU as submitted.

    A function of its own so the backends' parity test (`tests/security/test_executor_parity.py`)
    compares exactly what the sandbox enforces with the Docker and Kubernetes configs."""
    return CgroupLimits(spec.memory_mb * MIB, spec.max_processes, spec.cpu, procview.job_cpu_set(spec.cpu))


def output_shape_problem(usage: fstree.Usage) -> str | None:
    """Why an output tree is unacceptable in shape (not size), if it is."""
    if usage.entries > fstree.MAX_ENTRIES:
        return reasons.output_entries(fstree.MAX_ENTRIES)
    if usage.depth > fstree.MAX_DEPTH:
        return reasons.output_depth(fstree.MAX_DEPTH)
    return None


def strip_special_modes(root: Path) -> int:
    """Clear setuid/setgid bits under ``root``; return how many.

    The sandbox already refuses to set them (seccomp) and /output is copied without them;
    this stays for trees other backends collect. The walk reaches every entry however deep
    the job nested it (`fstree.walk`).
    """
    cleared = 0
    for entry in fstree.walk(root):
        mode = entry.st.st_mode
        if stat.S_ISLNK(mode) or not mode & (stat.S_ISUID | stat.S_ISGID):
            continue
        with contextlib.suppress(OSError):
            os.chmod(entry.name, stat.S_IMODE(mode) & ~(stat.S_ISUID | stat.S_ISGID), dir_fd=entry.dir_fd)
            cleared += 1
    return cleared


class _LogPump(threading.Thread):
    """Copy the sandbox's stdout/stderr into the job log as it arrives, up to a cap.

    A pipe rather than handing bwrap the log file directly, so that a job cannot fill the
    host disk through its log: past ``limit`` bytes the output is drained and dropped.
    """

    def __init__(self, source: IO[bytes], log_file: IO[bytes], limit: int) -> None:
        super().__init__(daemon=True, name="tre-sandbox-log")
        self.source, self.log_file, self.limit = source, log_file, limit
        self.written = 0
        self.head = b""
        # The platform's disk refused the log (full): the rest of the output is drained and
        # dropped, so the job never blocks on a pipe no one reads, and its end says why.
        self.write_error: OSError | None = None

    def _write(self, data: bytes) -> None:
        if self.write_error is not None:
            return
        try:
            self.log_file.write(data)
            self.log_file.flush()
        except OSError as exc:
            self.write_error = exc

    def run(self) -> None:
        fd = self.source.fileno()
        truncated = False
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            if len(self.head) < 512:
                self.head += chunk[: 512 - len(self.head)]
            room = self.limit - self.written
            if room > 0:
                piece = chunk[:room]
                self._write(piece)
                self.written += len(piece)
            elif not truncated:
                truncated = True
                self._write(f"\n[tre] log truncated at {self.limit // MIB} MiB\n".encode())


@dataclass
class _Stop:
    """Why the supervisor killed the sandbox, if it did."""

    state: JobState
    reason: str


@dataclass
class _Ending:
    """What the supervisor learnt about the end of a job (all platform-made facts)."""

    returncode: int | None = None  # the sandbox's exit status, as the launcher saw it
    storage_full: bool = False  # the platform's disk was full while recording its log or outputs
    launched: bool = False  # bwrap finished its set-up and ran the job's command
    tmp_full: bool = False
    output_full: bool = False
    copy: outputfs.CopyResult = field(default_factory=outputfs.CopyResult)


# bubblewrap's options that take a descriptor (the number follows the option).
_BWRAP_FD_OPTIONS = frozenset(
    {"--seccomp", "--block-fd", "--ro-bind-data", "--bind-data", "--file", "--sync-fd"}
)


def _fds_named(argv: list[str], held: Iterable[int]) -> tuple[int, ...]:
    """The descriptors of ``held`` that ``argv`` hands to bubblewrap by number.

    Only these are passed to the launcher: bubblewrap consumes what it is told about, and
    any other descriptor would be inherited by the job (redteam round 10: the generated
    passwd/group/hosts, read only in the host-toolchain mode, reached image jobs)."""
    # Only bubblewrap's own options: after --clearenv come the environment and the job's
    # command, whose words the job chose (``--file 4`` there names nothing).
    options = argv[: argv.index("--clearenv")] if "--clearenv" in argv else []
    named = {options[i + 1] for i, arg in enumerate(options[:-1]) if arg in _BWRAP_FD_OPTIONS}
    return tuple(sorted(fd for fd in set(held) if str(fd) in named))


def _memfd(name: str, data: bytes) -> int:
    fd = os.memfd_create(name, 0)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _unread_bytes(fd: int) -> int:
    buf = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, buf)
    return buf[0]


class LocalExecutor(Executor):
    """Run jobs in bubblewrap sandboxes on this host (see docs/sandbox.md)."""

    name: ClassVar[str] = "local"
    supports_reattach: ClassVar[bool] = False

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        uid: int | None = None,
        gid: int | None = None,
        images_dir: Path | None = None,
        use_cgroups: bool = True,
        cgroup_parent: Path | None = None,
        use_seccomp: bool = True,
        expose_tre_package: bool = True,
        log_limit_bytes: int = 16 * MIB,
        extra_ro_binds: list[tuple[Path, str]] | None = None,
        bwrap_path: str | None = None,
        numba_cache_seed: Path | None = None,
        host_toolchain: bool | None = None,
        job_user: str | None = None,
        stage_dir: Path | None = None,
        uid_range: UidRange | None = None,
    ) -> None:
        """Configure from ``settings``, overridable per knob.

        ``uid``/``gid`` are the job's ids *inside* its sandbox (``sandbox_uid``); on the host
        every job runs as ``job_user``'s group (``sandbox_job_user``, default ``tre-job``)
        with a uid of its own from ``uid_range`` (``sandbox_uid_base``/``_count``; count 0:
        the job user's uid, shared by all jobs), and its copied outputs belong to ``job_user``.
        ``host_toolchain`` (``sandbox_host_toolchain``, default off) is the developer mode
        that runs jobs without an image on the host's /usr and Python; without it a job
        needs ``spec.rootfs`` (or a rootfs under ``images_dir``). ``images_dir`` holds optional
        local rootfs directories (``<images_dir>/<sanitised image ref>``); ``cgroup_parent``
        is a delegated cgroup v2 directory to create job cgroups under;
        ``expose_tre_package`` mounts this platform's ``tre`` package read-only at
        /opt/tre/python for host-toolchain jobs; ``numba_cache_seed`` (default
        ``<home>/numba-cache``) is a Numba cache made by `warm_numba_cache` that every
        host-toolchain job gets a private copy of; ``stage_dir`` is the empty host folder
        the launcher mounts its stage on (`tre.executors.stage`).
        """
        if settings is not None:
            uid = settings.sandbox_uid if uid is None else uid
            gid = settings.sandbox_gid if gid is None else gid
            images_dir = images_dir or settings.home / "images"
            parent = settings.sandbox_cgroup_parent
            cgroup_parent = cgroup_parent or (Path(parent) if parent else None)
            numba_cache_seed = numba_cache_seed or settings.home / "numba-cache"
            host_toolchain = settings.sandbox_host_toolchain if host_toolchain is None else host_toolchain
            job_user = job_user or settings.sandbox_job_user
            uid_range = uid_range or UidRange(settings.sandbox_uid_base, settings.sandbox_uid_count)
        self.uid = 10001 if uid is None else uid
        self.gid = 10001 if gid is None else gid
        if self.uid == 0 or self.gid == 0:
            raise ExecutorError("the sandbox uid/gid must not be 0")
        self.images_dir = images_dir
        self.use_cgroups = use_cgroups
        self.cgroup_parent = cgroup_parent
        self.use_seccomp = use_seccomp and seccomp.supported()
        self.expose_tre_package = expose_tre_package
        self.log_limit_bytes = log_limit_bytes
        self.extra_ro_binds = list(extra_ro_binds or [])
        self.bwrap_path = bwrap_path
        self.numba_cache_seed = numba_cache_seed
        self.host_toolchain = bool(host_toolchain)
        self.job_user = job_user or DEFAULT_JOB_USER
        self.stage_dir = stage_dir or DEFAULT_STAGE_DIR
        self.uid_range = uid_range or UidRange()
        # Empty output images, made once per quota and copied per job (private to root).
        template_root = (
            settings.home / "cache" / "output-fs"
            if settings is not None
            else Path(tempfile.gettempdir()) / f"tre-output-fs-{os.geteuid()}"
        )
        self.templates = outputfs.ImageTemplates(template_root)
        self._jobs_dir = settings.jobs_dir if settings is not None else None
        self.clean_leftovers()

    def clean_leftovers(self) -> int:
        """What sandboxes of workers that died left behind (`Executor.clean_leftovers`): at
        construction (a worker's start) and whenever the worker finds a job orphaned."""
        cleaned = len(sweep_stale()) if self.use_cgroups else 0
        if self._jobs_dir is not None and os.geteuid() == 0:
            cleaned += self._recover_stale_outputs(self._jobs_dir)
        return cleaned

    def _recover_stale_outputs(self, jobs_dir: Path) -> int:
        """Output file systems a SIGKILLed worker left mounted become plain folders again, so
        that what the job wrote before is kept (and the mounts do not pile up)."""
        try:
            ids = self.job_host_ids()
        except ExecutorError:
            return 0
        try:
            recovered = outputfs.recover_stale([jobs_dir], *ids)
        except (OSError, ExecutorError) as exc:
            log.warning("could not recover output file systems left under %s: %s", jobs_dir, exc)
            return 0
        if recovered:
            log.warning(
                "recovered %s left mounted by a worker that died: %s",
                count(len(recovered), "output folder"),
                ", ".join(str(p) for p in recovered),
            )
        return len(recovered)

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalExecutor:
        """Same as ``LocalExecutor(settings)``; matches the other backends' constructor."""
        return cls(settings)

    # -- public API -------------------------------------------------------------------

    def run(self, spec: JobSpec, control: RunControl) -> JobResult:
        return self._run(spec, control, warm_seed=None)

    def warm_numba_cache(self, spec: JobSpec, control: RunControl | None = None) -> JobResult:
        """Run a TRUSTED job (the platform's own kernels on sample data, never research code)
        with the Numba cache seed mounted writable, so later jobs start with compiled kernels.

        Jobs normally get an empty, private /tmp and would JIT-compile every kernel on each
        run (tens of seconds); a shared writable cache would let one job plant code that
        another project's job then executes. The seed is written only here and copied
        read-only into each job's /tmp, so jobs share compiled code but cannot affect it.
        """
        if self.numba_cache_seed is None:
            raise ExecutorError("no numba_cache_seed directory is configured")
        host_uid, host_gid = self.job_host_ids()
        self.numba_cache_seed.mkdir(parents=True, exist_ok=True)
        self.numba_cache_seed.chmod(0o700)
        # The warm-up writes the seed as the job user; jobs only ever get copies of it.
        for dirpath, _dirs, names in os.walk(self.numba_cache_seed):
            for p in [dirpath, *(os.path.join(dirpath, n) for n in names)]:
                os.chown(p, host_uid, host_gid, follow_symlinks=False)
        return self._run(spec, control or RunControl(), warm_seed=self.numba_cache_seed)

    def job_host_ids(self) -> tuple[int, int]:
        """The job user's host uid and gid; refuses root, the worker's own uid, a missing user."""
        try:
            return job_user_ids(self.job_user)
        except ValueError as exc:
            raise ExecutorError(f"{exc} (TRE_SANDBOX_JOB_USER)") from None

    def _rootfs(self, spec: JobSpec) -> Path | None:
        if spec.rootfs is not None:
            return Path(spec.rootfs)
        return image_rootfs(self.images_dir, spec.image)

    def _run(self, spec: JobSpec, control: RunControl, warm_seed: Path | None) -> JobResult:
        bwrap = self.bwrap_path or shutil.which("bwrap")
        if not bwrap:
            raise ExecutorError("bubblewrap (bwrap) is not installed; run scripts/install-system-deps")
        if min(spec.time_limit_s, spec.memory_mb, spec.max_processes, spec.output_limit_mb) <= 0:
            raise ExecutorError("job limits must be positive")
        rootfs = self._rootfs(spec)
        if rootfs is None and not self.host_toolchain:
            raise ExecutorError(
                "the job has no image root file system, and running on the host toolchain is a "
                "developer mode that is off (TRE_SANDBOX_HOST_TOOLCHAIN)"
            )
        if rootfs is not None and (not rootfs.is_dir() or rootfs.is_symlink()):
            raise ExecutorError("the job's image root file system is not a folder")
        if os.geteuid() != 0:
            raise ExecutorError(
                "the local sandbox must be started by root: it runs each job as the job user "
                f"{self.job_user!r} and mounts a size-limited /output for it"
            )
        host_ids = self.job_host_ids()
        ensure_stage_dir(self.stage_dir)
        spec.output_dir.mkdir(parents=True, exist_ok=True)
        spec.output_dir.chmod(0o700)
        self._open_inputs(spec, host_ids[1])
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        limits = job_limits(spec)
        scratch = spec.output_dir.parent / outputfs.scratch_name(uuid.uuid4().hex)
        scratch.mkdir(mode=0o700)
        # A host uid of the job's own (`tre.executors.jobuids`), released only after every
        # process of the job is gone (the cgroup is removed in the finally below). The trusted
        # cache warm-up writes the seed as the job user itself.
        held = self.uid_range.hold(host_ids[0]) if warm_seed is None else contextlib.nullcontext(host_ids[0])
        with held as run_uid:
            return self._run_held(
                spec, control, warm_seed, bwrap, rootfs, host_ids, (run_uid, host_ids[1]), limits, scratch
            )

    def _run_held(
        self,
        spec: JobSpec,
        control: RunControl,
        warm_seed: Path | None,
        bwrap: str,
        rootfs: Path | None,
        host_ids: tuple[int, int],
        run_ids: tuple[int, int],
        limits: CgroupLimits,
        scratch: Path,
    ) -> JobResult:
        """`_run` once the job has its host uid: ``run_ids`` is what its processes run as,
        ``host_ids`` the job user, who owns the copies of its outputs."""
        cgroup = self._make_cgroup(spec, limits)
        mounted = False
        try:
            image = scratch / "output.ext4"
            self.templates.make(image, spec.output_limit_mb * MIB, *host_ids)
            outputfs.mount_image(image, spec.output_dir)
            mounted = True
            os.chown(spec.output_dir, *run_ids)  # the template's root is the job user's
            seed = None if warm_seed is not None or rootfs is not None else self._seed_files(spec)
            # The job's clocks since boot count from its start (`tre.executors.jobclock`).
            clock = jobclock.JobClock.starting_now() if jobclock.supported() else None
            files = procview.job_files(
                spec.cpu, limits.memory_bytes, boottime_offset=clock.boottime_offset if clock else 0
            )
            with self._sandbox_fds(seed or []) as fds:
                stage = Stage(self.stage_dir)
                argv = self._argv(bwrap, spec, rootfs, limits, fds, stage, cgroup, warm_seed, files)
                # The raw log holds whatever the job printed: staff-only, never world-readable.
                log_fd = os.open(spec.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
                os.fchmod(log_fd, 0o600)
                log_file = open(log_fd, "ab")  # noqa: SIM115 - closed below, a full disk allowed for
                try:
                    return self._supervise(
                        argv,
                        spec,
                        rootfs,
                        control,
                        cgroup,
                        fds,
                        stage,
                        host_ids,
                        run_ids,
                        scratch,
                        log_file,
                        limits.cpus,
                        clock,
                    )
                finally:
                    # What a full disk kept in the buffer is lost (the reason says the disk was
                    # full); the descriptor is closed all the same.
                    with contextlib.suppress(OSError):
                        log_file.close()
        finally:
            if cgroup is not None:
                cgroup.remove()
            if mounted and outputfs.is_mount_point(spec.output_dir):
                # The job ended before its outputs were collected (set-up failure, a sandbox
                # that would not die): keep what it wrote all the same.
                with contextlib.suppress(ExecutorError, OSError):
                    outputfs.collect(spec.output_dir, scratch, *host_ids, spec.output_limit_mb * MIB)
            shutil.rmtree(scratch, ignore_errors=True)

    # -- setup ------------------------------------------------------------------------

    @staticmethod
    def _open_inputs(spec: JobSpec, gid: int) -> None:
        """Let the job user into each input job's output folder (read-only bind below).

        An output folder is the service user's, 0700, after its job (the files in it are the
        job user's own copies); bubblewrap resolves the staged bind as the job user, who must
        be able to enter it. Group job user, 0750: only jobs reach it, and only through the
        read-only bind, since the jobs folder above it stays private to the service user."""
        for mount in spec.inputs:
            try:
                fd = os.open(mount.host_path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError as exc:
                raise ExecutorError(f"the outputs of input job {mount.job_id} are not a folder") from exc
            try:
                os.fchown(fd, -1, gid)
                os.fchmod(fd, 0o750)  # noqa: S103 - the job user's group may read, nobody writes
            finally:
                os.close(fd)

    def _make_cgroup(self, spec: JobSpec, limits: CgroupLimits) -> JobCgroup | None:
        cgroup = None
        if self.use_cgroups:
            name = job_cgroup_name(spec.job_id, uuid.uuid4().hex)
            cgroup = create_job_cgroup(name, limits, self.cgroup_parent)
        if cgroup is None:
            log.warning(
                "%s for job %s: falling back to rlimits (memory as address space, no reliable process limit)",
                "no writable cgroup" if self.use_cgroups else "cgroups disabled",
                spec.job_id,
            )
        return cgroup

    def _seed_files(self, spec: JobSpec) -> list[tuple[Path, str]]:
        """(host file, path relative to the seed) for the Numba cache seed, if usable."""
        seed = self.numba_cache_seed
        if seed is None or not seed.is_dir() or seed.is_symlink():
            return []
        files: list[tuple[Path, str]] = []
        total = 0
        for dirpath, _dirs, names in os.walk(seed):
            for name in names:
                path = Path(dirpath) / name
                st = path.lstat()
                if not stat.S_ISREG(st.st_mode):
                    continue
                total += st.st_size
                files.append((path, path.relative_to(seed).as_posix()))
        if len(files) > _SEED_MAX_FILES or total > _SEED_MAX_BYTES:
            log.warning(
                "numba cache seed %s is too large (%d files, %d bytes); not used", seed, len(files), total
            )
            return []
        return files

    @contextlib.contextmanager
    def _sandbox_fds(self, seed_files: list[tuple[Path, str]]) -> Iterator[dict[str, int]]:
        """Files bwrap reads at start-up: seccomp program, /etc/passwd, group, hosts and the
        Numba cache seed (keys ``seed:<relative path>``). The job's own /proc files are
        staged instead (`Stage.data`, round 15)."""
        fds: dict[str, int] = {}
        try:
            for path, rel in seed_files:
                with contextlib.suppress(OSError):
                    fds[f"seed:{rel}"] = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            if self.use_seccomp:
                fds["seccomp"] = _memfd("tre-seccomp", seccomp.build_filter())
            fds["passwd"] = _memfd(
                "tre-passwd",
                f"root:x:0:0:root:/root:/usr/sbin/nologin\n"
                f"researcher:x:{self.uid}:{self.gid}:sandbox:/tmp:/bin/sh\n"
                "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n".encode(),
            )
            fds["group"] = _memfd(
                "tre-group", f"root:x:0:\nresearcher:x:{self.gid}:\nnogroup:x:65534:\n".encode()
            )
            fds["hosts"] = _memfd("tre-hosts", b"127.0.0.1 localhost tre-sandbox\n::1 localhost\n")
            # bwrap reads this byte only once every mount of the sandbox is in place: if it is
            # still there afterwards, the job's command never ran (see `_ending`).
            fds["block"], block_w = os.pipe()
            os.write(block_w, b"x")
            os.close(block_w)
            yield fds
        finally:
            for fd in fds.values():
                os.close(fd)

    def _argv(
        self,
        bwrap: str,
        spec: JobSpec,
        rootfs: Path | None,
        limits: CgroupLimits,
        fds: dict[str, int],
        stage: Stage,
        cgroup: JobCgroup | None,
        warm_seed: Path | None = None,
        proc_files: dict[str, bytes] | None = None,
    ) -> list[str]:
        """prlimit + bwrap's command line (the launcher is put around it by `_supervise`).
        ``proc_files``: the job's own /proc files (`tre.executors.procview.job_files`),
        staged (`Stage.data`) and bound over the procfs's."""
        binds = list(self.extra_ro_binds)
        extra_env: dict[str, str] = {}
        if rootfs is None and self.expose_tre_package:
            binds.append((_TRE_PACKAGE_DIR, f"{_SANDBOX_PYTHONPATH}/tre"))
            extra_env["PYTHONPATH"] = _SANDBOX_PYTHONPATH
        tmp_files = [
            (fd, f"{_SANDBOX_NUMBA_CACHE}/{key[5:]}") for key, fd in fds.items() if key.startswith("seed:")
        ]
        if rootfs is None and (tmp_files or warm_seed is not None):
            extra_env["NUMBA_CACHE_DIR"] = _SANDBOX_NUMBA_CACHE
        config = spec.image_config if rootfs is not None else None
        uid, gid = image_identity(config, self.uid, self.gid)
        # /tmp and /dev/shm get half the memory limit each: their pages are charged to the
        # job's memory cgroup, so a /tmp as large as the limit would end in the OOM killer
        # instead of "disk full in /tmp".
        scratch_bytes = max(limits.memory_bytes // 2, MIB)
        dev_source, dev_nodes = stage.devices()
        layout = SandboxLayout(
            uid=uid,
            gid=gid,
            tmp_size_bytes=scratch_bytes,
            rootfs=rootfs,
            seccomp_fd=fds.get("seccomp"),
            passwd_fd=fds.get("passwd") if rootfs is None else None,
            group_fd=fds.get("group") if rootfs is None else None,
            hosts_fd=fds.get("hosts") if rootfs is None else None,
            extra_ro_binds=binds,
            extra_env=extra_env,
            gpu=gpu_mounts(spec.gpu),
            tmp_files=tmp_files,
            rw_binds=[(warm_seed, _SANDBOX_NUMBA_CACHE)] if warm_seed is not None else [],
            stage=stage,
            output_source=stage.output(spec.output_dir),
            tmp_source=stage.tmp(scratch_bytes),
            shm_source=stage.tmp(scratch_bytes, "shm"),
            dev_source=dev_source,
            dev_nodes=dev_nodes,
            root_source=stage.tree(1 << 20, 1024, "root"),
            devroot_source=stage.tree(64 << 10, 64, "devroot"),
            empty_dir_source=stage.empty_dir(),
            proc_source=stage.proc(),
            empty_source=stage.empty(),
            proc_sources=[
                (stage.data(data, name), f"/proc/{name}") for name, data in (proc_files or {}).items()
            ],
            block_fd=fds.get("block"),
            image_config=config,
        )
        bwrap_args = build_args(spec, layout)
        # No core dumps (they would land in the working folder). The output quota needs no
        # rlimit: /output is a file system of exactly that size.
        rlimits = ["--core=0"]
        if cgroup is None:
            rlimits += [
                f"--as={limits.memory_bytes}",
                f"--nproc={limits.max_processes}",
                f"--cpu={spec.time_limit_s + 5}",
            ]
        prlimit = shutil.which("prlimit")
        prefix = [prlimit, *rlimits, "--"] if prlimit else []
        if not prlimit:
            log.warning("prlimit not found: core dumps are not disabled for job %s", spec.job_id)
        return [*prefix, bwrap, *bwrap_args]

    # -- supervision ------------------------------------------------------------------

    def _header(self, spec: JobSpec, rootfs: Path | None, cgroup: JobCgroup | None) -> bytes:
        root = "image rootfs" if rootfs else "host toolchain (developer mode)"
        enforcement = "cgroup" if cgroup is not None else "rlimit fallback"
        return (
            f"[tre] local sandbox: image {spec.image or '-'} ({root}); user {self.job_user}; limits: "
            f"{spec.time_limit_s} s, {spec.memory_mb} MiB, {spec.max_processes} processes, "
            f"{spec.output_limit_mb} MiB output ({enforcement}); GPUs: {spec.gpu}; network: none\n"
        ).encode()

    def _supervise(
        self,
        command: list[str],
        spec: JobSpec,
        rootfs: Path | None,
        control: RunControl,
        cgroup: JobCgroup | None,
        fds: dict[str, int],
        stage: Stage,
        host_ids: tuple[int, int],
        run_ids: tuple[int, int],
        scratch: Path,
        log_file: IO[bytes],
        cpus: tuple[int, ...] = (),
        clock: jobclock.JobClock | None = None,
    ) -> JobResult:
        log_file.write(self._header(spec, rootfs, cgroup))
        log_file.flush()
        status_r, status_w = os.pipe()
        hold_r, hold_w = os.pipe()
        procs = [str(p) for p in cgroup.procs_files] if cgroup is not None else []
        started = time.monotonic()
        # sysinfo(2) answered by this worker with the job's own figures (`tre.executors.sysinfo`).
        responder: sysinfo.Responder | None = None
        wrap: list[str] = []
        helper_end: socket.socket | None = None
        if self.use_seccomp and sysinfo.supported():
            ours, helper_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            responder = sysinfo.Responder(
                ours, procview.shown_memory(spec.memory_mb * MIB), clock.boottime_offset if clock else 0
            )
            wrap = sysinfo.helper_argv(sys.executable, helper_end.fileno())
        try:
            argv = launcher_argv(stage, procs, *run_ids, status_w, hold_r, command, wrap, cpus, clock)
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                pass_fds=(
                    *_fds_named(command, fds.values()),
                    status_w,
                    hold_r,
                    *([helper_end.fileno()] if helper_end is not None else []),
                ),
                start_new_session=True,
                env=LAUNCHER_ENV,
                # Not the worker's folder: bash exports it as PWD to bwrap, whose init's
                # environment the job can read at /proc/1/environ.
                cwd="/",
            )
        except BaseException:
            os.close(status_r)
            os.close(hold_w)
            raise
        finally:
            os.close(status_w)
            os.close(hold_r)
            if helper_end is not None:
                helper_end.close()
        if responder is not None:
            responder.start()
        assert proc.stdout is not None
        pump = _LogPump(proc.stdout, log_file, self.log_limit_bytes)
        pump.start()
        status = _StatusReader(status_r)
        stop: _Stop | None = None
        ending = _Ending()
        try:
            control.on_started(str(proc.pid))
            last_beat = 0.0
            killed_at: float | None = None
            while status.exit_status is None and proc.poll() is None:
                now = time.monotonic()
                if now - last_beat >= _HEARTBEAT_S:
                    control.heartbeat()
                    last_beat = now
                if stop is None:
                    if control.is_cancelled():
                        stop = _Stop(JobState.cancelled, reasons.CANCELLED)
                    elif now - started > spec.time_limit_s:
                        stop = _Stop(JobState.timed_out, reasons.time_limit(spec.time_limit_s))
                    if stop is not None:
                        killed_at = now
                        self._kill_sandbox(proc, status.bwrap_pid, cgroup)
                elif killed_at is not None and now - killed_at > _KILL_GRACE_S:
                    self._kill(proc, cgroup)
                status.wait(_POLL_S)
            if status.exit_status is not None and proc.poll() is None:
                ending = self._ending(spec, proc.pid, status.exit_status, fds["block"], host_ids, scratch)
        finally:
            os.close(hold_w)  # lets the launcher exit (and its namespace, mounts and loop go)
            if proc.poll() is None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=_KILL_GRACE_S)
            if proc.poll() is None:
                self._kill(proc, cgroup)
            proc.wait()
            pump.join(timeout=5)
            proc.stdout.close()
            status.close()
            if responder is not None:
                responder.stop()
                responder.join(timeout=5)
        if ending.returncode is None:
            ending.returncode = proc.returncode
            ending.launched = _unread_bytes(fds["block"]) == 0 and proc.returncode != LAUNCH_FAILED
        if pump.write_error is not None:
            ref = reasons.new_reference()
            log.warning(
                "the log of job %s could not be written (ref: %s): %s", spec.job_id, ref, pump.write_error
            )
            ending.storage_full = ending.storage_full or is_storage_full(pump.write_error)
            if not ending.storage_full:
                ending.copy = outputfs.CopyResult(problem=reasons.setup_failed(ref))
        result = self._result(spec, stop, cgroup, ending, pump.head)
        with contextlib.suppress(OSError):  # a full disk was said in the reason already
            log_file.write(f"\n[tre] {result.state}: {result.reason}\n".encode())
            log_file.flush()
        return result

    def _ending(
        self,
        spec: JobSpec,
        launcher_pid: int,
        exit_status: int,
        block_fd: int,
        host_ids: tuple[int, int],
        scratch: Path,
    ) -> _Ending:
        """Inspect the job's /tmp while its mount namespace still exists (the launcher waits
        for us) and its /output, then replace the output file system by a plain copy."""
        tmp = Path(f"/proc/{launcher_pid}/root") / str(self.stage_dir).lstrip("/") / "tmp"
        output = spec.output_dir
        ending = _Ending(returncode=exit_status, launched=_unread_bytes(block_fd) == 0)
        ending.tmp_full = outputfs.is_full(
            tmp, outputfs.full_margin(spec.memory_mb * MIB // 2)
        ) or outputfs.out_of_entries(tmp)
        ending.output_full = outputfs.is_full(output, outputfs.full_margin(spec.output_limit_mb * MIB))
        try:
            ending.copy = outputfs.collect(output, scratch, *host_ids, spec.output_limit_mb * MIB)
        except (OSError, ExecutorError) as exc:
            ref = reasons.new_reference()
            log.warning("copying the outputs of job %s failed (ref: %s): %s", spec.job_id, ref, exc)
            if is_storage_full(exc):
                # The platform's disk, not the job: said in fixed words, and the partial copy
                # goes (a failed job's outputs are never released, and it gives the room back).
                ending.storage_full = True
                outputfs.clear_folder(output)
            else:
                ending.copy = outputfs.CopyResult(problem=reasons.setup_failed(ref))
        return ending

    @staticmethod
    def _kill_sandbox(proc: subprocess.Popen[bytes], bwrap_pid: int | None, cgroup: JobCgroup | None) -> None:
        """SIGKILL bwrap: its pid-namespace init dies with it (--die-with-parent), and with
        that every process of the job. The launcher survives to let the outputs be copied."""
        if bwrap_pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(bwrap_pid, signal.SIGKILL)
        else:
            LocalExecutor._kill(proc, cgroup)

    @staticmethod
    def _kill(proc: subprocess.Popen[bytes], cgroup: JobCgroup | None) -> None:
        """SIGKILL the launcher's process group (bwrap and the job die with it), then sweep
        the cgroup for anything left."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        if cgroup is not None:
            cgroup.kill_all()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)

    def _result(
        self, spec: JobSpec, stop: _Stop | None, cgroup: JobCgroup | None, ending: _Ending, head: bytes
    ) -> JobResult:
        """The outcome, in the fixed vocabulary of `tre.executors.reasons` only."""
        pids_note = ""
        if cgroup is not None and cgroup.pids_limit_hit():
            pids_note = reasons.process_limit_note(spec.max_processes)
        rc = ending.returncode
        if stop is not None:
            return JobResult(stop.state, None, stop.reason + pids_note)
        if not ending.launched:
            # The job's command never ran, so what the sandbox printed is the launcher's or
            # bubblewrap's own; it is for staff (worker log), never for the reason.
            ref = reasons.new_reference()
            log.warning(
                "sandbox setup failed for job %s (ref: %s, status %s): %r",
                spec.job_id,
                ref,
                rc,
                head[:512].decode(errors="replace"),
            )
            return JobResult(JobState.failed, None, reasons.setup_failed(ref))
        if ending.storage_full:
            return JobResult(JobState.failed, rc, reasons.storage_full(reasons.new_reference()))
        if cgroup is not None and cgroup.oom_killed():
            return JobResult(JobState.failed, rc, reasons.memory_limit(spec.memory_mb))
        quota = reasons.output_quota(spec.output_limit_mb)
        if ending.copy.problem == quota or (rc != 0 and ending.output_full):
            return JobResult(JobState.failed, rc, quota)
        if rc != 0 and ending.tmp_full:
            return JobResult(JobState.failed, rc, reasons.TMP_FULL)
        if ending.copy.problem is not None:
            return JobResult(JobState.failed, rc, ending.copy.problem)
        if rc == 0:
            return JobResult(JobState.succeeded, 0, reasons.SUCCEEDED)
        if rc is not None and (rc > 128 or rc < 0):
            signum = rc - 128 if rc > 128 else -rc
            return JobResult(JobState.failed, rc, reasons.killed_by_signal(signum) + pids_note)
        return JobResult(JobState.failed, rc, reasons.exit_code(rc if rc is not None else -1) + pids_note)


class _StatusReader:
    """Lines the launcher writes on its status pipe: ``started <pid>``, ``exited <status>``."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = b""
        self.bwrap_pid: int | None = None
        self.exit_status: int | None = None
        self.eof = False

    def wait(self, timeout: float) -> None:
        if self.eof:
            time.sleep(timeout)
            return
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return
        chunk = os.read(self.fd, 4096)
        if not chunk:
            self.eof = True
            return
        self.buffer += chunk
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            word, _, value = line.decode(errors="replace").partition(" ")
            if word == "started" and value.isdigit():
                self.bwrap_pid = int(value)
            elif word == "exited" and value.isdigit():
                self.exit_status = int(value)

    def close(self) -> None:
        os.close(self.fd)
