"""The default job backend: a bubblewrap sandbox on the control-plane host.

One job = one ``bwrap`` process tree, started by a tiny ``sh`` launcher that first enrols
itself in the job's cgroups (so every sandbox process is born inside the memory, process
and CPU limits) and then ``exec``s ``prlimit`` -> ``bwrap``. This module supervises that
tree: it streams the combined stdout/stderr into ``spec.log_path``, polls for
cancellation, the wall-clock limit and the output quota, kills the whole sandbox when one
trips, and turns what happened into a `JobResult` with a reason a researcher can act on.

The security boundary itself (namespaces, mounts, environment, seccomp) is built in
`tre.executors.bwrap` and `tre.executors.seccomp`; limits in `tre.executors.cgroups`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import stat
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, ClassVar

from tre.executors import fstree, seccomp
from tre.executors.base import Executor, ExecutorError, JobResult, JobSpec, RunControl
from tre.executors.bwrap import SandboxLayout, build_args, image_rootfs, nvidia_devices
from tre.executors.cgroups import CgroupLimits, JobCgroup, create_job_cgroup, job_cgroup_name, sweep_stale

if TYPE_CHECKING:  # the sandbox itself needs no pydantic; only the type is referenced
    from tre.config import Settings

log = logging.getLogger(__name__)

MIB = 1024 * 1024
_POLL_S = 0.2
_HEARTBEAT_S = 1.0
# Enrol in each cgroup named before "--", then become the rest of the command line.
_LAUNCHER = (
    'while [ "$1" != "--" ]; do '
    'echo $$ > "$1" || { echo "tre-launch: cannot join cgroup $1" >&2; exit 125; }; shift; '
    'done; shift; exec "$@"'
)
_LAUNCH_FAILED = 125
_HOST_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
_TRE_PACKAGE_DIR = Path(__file__).resolve().parent.parent
_SANDBOX_PYTHONPATH = "/opt/tre/python"
# Where a job's Numba cache lives: inside its private /tmp, seeded from a trusted copy.
_SANDBOX_NUMBA_CACHE = "/tmp/.numba-cache"  # noqa: S108
_SEED_MAX_FILES = 2000
_SEED_MAX_BYTES = 512 * MIB


def output_size(root: Path) -> int:
    """Total apparent size of the regular files under ``root`` (symlinks are not followed).

    Walked with `fstree.walk`: a file nested deeper than PATH_MAX still counts.
    """
    return fstree.usage(root).bytes


def output_shape_problem(usage: fstree.Usage) -> str | None:
    """Why an output tree is unacceptable in shape (not size), if it is."""
    if usage.entries > fstree.MAX_ENTRIES:
        return f"output holds more than {fstree.MAX_ENTRIES} files and folders"
    if usage.depth > fstree.MAX_DEPTH:
        return f"output folders nest deeper than {fstree.MAX_DEPTH} levels"
    return None


def strip_special_modes(root: Path) -> int:
    """Clear setuid/setgid bits under ``root`` once the job has ended; return how many.

    Inside its user namespace the job owns /output, so it may ``chmod u+s`` what it wrote,
    and on the host those files belong to the worker's uid (root in the embedded mode): a
    setuid-root executable must not be left lying in the job directory. The walk reaches
    every entry however deep the job nested it (`fstree.walk`).
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


def _largest_file(root: Path) -> int:
    return max((e.st.st_size for e in fstree.walk(root) if stat.S_ISREG(e.st.st_mode)), default=0)


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
                self.log_file.write(piece)
                self.log_file.flush()
                self.written += len(piece)
            elif not truncated:
                truncated = True
                self.log_file.write(f"\n[tre] log truncated at {self.limit // MIB} MiB\n".encode())
                self.log_file.flush()


@dataclass
class _Stop:
    """Why the supervisor killed the sandbox, if it did."""

    state: str
    reason: str


def _memfd(name: str, data: bytes) -> int:
    fd = os.memfd_create(name, 0)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


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
    ) -> None:
        """Configure from ``settings`` (sandbox uid/gid, ``<home>/images``), overridable per knob.

        ``images_dir`` holds optional local rootfs directories (``<images_dir>/<sanitised
        image ref>``); ``cgroup_parent`` is a delegated cgroup v2 directory to create job
        cgroups under (default: the ``sandbox_cgroup_parent`` setting if there is one);
        ``expose_tre_package`` mounts this platform's ``tre`` package read-only at
        /opt/tre/python so host-toolchain jobs can import ``tre.kernels``;
        ``numba_cache_seed`` (default ``<home>/numba-cache``) is a Numba cache made by
        `warm_numba_cache` that every host-toolchain job gets a private copy of.
        """
        if settings is not None:
            uid = settings.sandbox_uid if uid is None else uid
            gid = settings.sandbox_gid if gid is None else gid
            images_dir = images_dir or settings.home / "images"
            parent = settings.sandbox_cgroup_parent
            cgroup_parent = cgroup_parent or (Path(parent) if parent else None)
            numba_cache_seed = numba_cache_seed or settings.home / "numba-cache"
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
        if use_cgroups:
            sweep_stale()

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
        self.numba_cache_seed.mkdir(parents=True, exist_ok=True)
        self.numba_cache_seed.chmod(0o755)
        return self._run(spec, control or RunControl(), warm_seed=self.numba_cache_seed)

    def _run(self, spec: JobSpec, control: RunControl, warm_seed: Path | None) -> JobResult:
        bwrap = self.bwrap_path or shutil.which("bwrap")
        if not bwrap:
            raise ExecutorError("bubblewrap (bwrap) is not installed; run scripts/install-system-deps")
        if min(spec.time_limit_s, spec.memory_mb, spec.max_processes, spec.output_limit_mb) <= 0:
            raise ExecutorError("job limits must be positive")
        spec.output_dir.mkdir(parents=True, exist_ok=True)
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        limits = CgroupLimits(spec.memory_mb * MIB, spec.max_processes, spec.cpu)
        cgroup = self._make_cgroup(spec, limits)
        try:
            seed = None if warm_seed is not None else self._seed_files(spec)
            with self._sandbox_fds(seed or []) as fds:
                argv = self._argv(bwrap, spec, limits, cgroup, fds, warm_seed)
                with open(spec.log_path, "ab") as log_file:
                    return self._supervise(argv, spec, control, cgroup, fds, log_file)
        finally:
            if cgroup is not None:
                cgroup.remove()

    # -- setup ------------------------------------------------------------------------

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
        if image_rootfs(self.images_dir, spec.image) is not None:
            return []  # compiled for the host toolchain, meaningless in another rootfs
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
        """Files bwrap reads at start-up: seccomp program, /etc/passwd, group, hosts, and the
        Numba cache seed (keys ``seed:<relative path>``)."""
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
            yield fds
        finally:
            for fd in fds.values():
                os.close(fd)

    def _argv(
        self,
        bwrap: str,
        spec: JobSpec,
        limits: CgroupLimits,
        cgroup: JobCgroup | None,
        fds: dict[str, int],
        warm_seed: Path | None = None,
    ) -> list[str]:
        rootfs = image_rootfs(self.images_dir, spec.image)
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
        layout = SandboxLayout(
            uid=self.uid,
            gid=self.gid,
            # tmpfs pages are charged to the job's memory cgroup, so sizing /tmp by the
            # memory limit cannot let it exceed that limit; it only bounds the fallback.
            tmp_size_bytes=limits.memory_bytes,
            rootfs=rootfs,
            seccomp_fd=fds.get("seccomp"),
            passwd_fd=fds.get("passwd") if rootfs is None else None,
            group_fd=fds.get("group") if rootfs is None else None,
            hosts_fd=fds.get("hosts") if rootfs is None else None,
            extra_ro_binds=binds,
            extra_env=extra_env,
            devices=nvidia_devices(spec.gpu),
            tmp_files=tmp_files,
            rw_binds=[(warm_seed, _SANDBOX_NUMBA_CACHE)] if warm_seed is not None else [],
        )
        bwrap_args = build_args(spec, layout)
        quota = spec.output_limit_mb * MIB
        # RLIMIT_FSIZE caps any single file at the output quota (the watchdog handles many
        # files); no core dumps, which would land in /output.
        rlimits = [f"--fsize={quota}", "--core=0"]
        if cgroup is None:
            rlimits += [
                f"--as={limits.memory_bytes}",
                f"--nproc={limits.max_processes}",
                f"--cpu={spec.time_limit_s + 5}",
            ]
        prlimit = shutil.which("prlimit")
        prefix = [prlimit, *rlimits, "--"] if prlimit else []
        if not prlimit:
            log.warning("prlimit not found: no per-file size limit for job %s", spec.job_id)
        procs = [str(p) for p in cgroup.procs_files] if cgroup is not None else []
        return ["/bin/sh", "-c", _LAUNCHER, "tre-launch", *procs, "--", *prefix, bwrap, *bwrap_args]

    # -- supervision ------------------------------------------------------------------

    def _header(self, spec: JobSpec, cgroup: JobCgroup | None) -> bytes:
        rootfs = image_rootfs(self.images_dir, spec.image)
        root = f"rootfs {rootfs}" if rootfs else "host toolchain"
        enforcement = "cgroup" if cgroup is not None else "rlimit fallback"
        return (
            f"[tre] local sandbox: image {spec.image or '-'} ({root}); limits: {spec.time_limit_s} s, "
            f"{spec.memory_mb} MiB, {spec.max_processes} processes, {spec.output_limit_mb} MiB output "
            f"({enforcement}); GPUs: {spec.gpu}; network: none\n"
        ).encode()

    def _supervise(
        self,
        argv: list[str],
        spec: JobSpec,
        control: RunControl,
        cgroup: JobCgroup | None,
        fds: dict[str, int],
        log_file: IO[bytes],
    ) -> JobResult:
        log_file.write(self._header(spec, cgroup))
        log_file.flush()
        quota = spec.output_limit_mb * MIB
        started = time.monotonic()
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            pass_fds=tuple(fds.values()),
            start_new_session=True,
            env=_HOST_ENV,
        )
        assert proc.stdout is not None
        pump = _LogPump(proc.stdout, log_file, self.log_limit_bytes)
        pump.start()
        stop: _Stop | None = None
        try:
            control.on_started(str(proc.pid))
            last_beat = 0.0
            while proc.poll() is None:
                now = time.monotonic()
                if now - last_beat >= _HEARTBEAT_S:
                    control.heartbeat()
                    last_beat = now
                if control.is_cancelled():
                    stop = _Stop("cancelled", "cancelled on request")
                elif now - started > spec.time_limit_s:
                    stop = _Stop("timed_out", f"exceeded time limit of {spec.time_limit_s} s")
                else:
                    try:
                        used = fstree.usage(spec.output_dir)
                    except OSError:  # the job moved a folder mid-walk: measure at the next poll
                        used = fstree.Usage()
                    shape = output_shape_problem(used)
                    if used.bytes > quota:
                        stop = _Stop("failed", f"output quota of {spec.output_limit_mb} MiB exceeded")
                    elif shape is not None:
                        stop = _Stop("failed", shape)
                if stop is not None:
                    self._kill(proc, cgroup)
                    break
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=_POLL_S)
        finally:
            if proc.poll() is None and stop is None:
                # An exception in a control hook: never leave the sandbox running.
                self._kill(proc, cgroup)
            proc.wait()
            pump.join(timeout=5)
            proc.stdout.close()
        stripped = strip_special_modes(spec.output_dir)
        if stripped:
            log_file.write(f"\n[tre] cleared setuid/setgid bits on {stripped} output path(s)\n".encode())
        result = self._result(spec, proc.returncode, stop, cgroup, pump.head, quota)
        log_file.write(f"\n[tre] {result.state}: {result.reason}\n".encode())
        log_file.flush()
        return result

    @staticmethod
    def _kill(proc: subprocess.Popen[bytes], cgroup: JobCgroup | None) -> None:
        """SIGKILL bwrap's process group; its pid-namespace init dies with it (and with it
        every process in the namespace); then sweep the cgroup for anything left."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        if cgroup is not None:
            cgroup.kill_all()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)

    def _result(
        self,
        spec: JobSpec,
        returncode: int,
        stop: _Stop | None,
        cgroup: JobCgroup | None,
        head: bytes,
        quota: int,
    ) -> JobResult:
        pids_note = ""
        if cgroup is not None and cgroup.pids_limit_hit():
            pids_note = f" (process limit of {spec.max_processes} reached)"
        if stop is not None:
            return JobResult(stop.state, None, stop.reason + pids_note)
        if returncode == _LAUNCH_FAILED and head.startswith(b"tre-launch:"):
            raise ExecutorError(head.decode(errors="replace").strip())
        if returncode == 1 and head.startswith(b"bwrap:"):
            raise ExecutorError("sandbox setup failed: " + head.decode(errors="replace").strip())
        if cgroup is not None and cgroup.oom_killed():
            return JobResult("failed", returncode, f"killed: out of memory (limit {spec.memory_mb} MiB)")
        used = fstree.usage(spec.output_dir)
        if used.bytes > quota or (returncode != 0 and _largest_file(spec.output_dir) >= quota):
            return JobResult("failed", returncode, f"output quota of {spec.output_limit_mb} MiB exceeded")
        shape = output_shape_problem(used)
        if shape is not None:
            return JobResult("failed", returncode, shape)
        if returncode == 0:
            return JobResult("succeeded", 0, "exited with code 0")
        if returncode > 128 or returncode < 0:
            signum = returncode - 128 if returncode > 128 else -returncode
            return JobResult("failed", returncode, f"killed by {_signal_name(signum)}{pids_note}")
        return JobResult("failed", returncode, f"exited with code {returncode}{pids_note}")
