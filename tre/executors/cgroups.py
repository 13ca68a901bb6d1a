"""Per-job control groups: the kernel-enforced memory, process-count and CPU limits.

Why cgroups and not rlimits: the sandbox's uid maps to the worker's uid on the host (root in
the embedded mode), so ``RLIMIT_NPROC`` counts every process of that user and is not
enforced for root at all, and ``RLIMIT_AS`` limits address space, not memory. A cgroup
counts exactly the job's processes and resident memory, and can be killed as a unit.

Both hierarchies are supported:

* cgroup v2 (standard Debian/systemd hosts): a child of a parent whose
  ``cgroup.controllers`` offers ``memory`` and ``pids``; ``pids.max``, ``memory.max``,
  ``memory.swap.max=0``, ``memory.oom.group=1``, ``cpu.max``. The parent is, in order, an
  explicitly configured one (a delegated, process-free cgroup such as
  ``/sys/fs/cgroup/tre.slice``), the worker's own cgroup, then the hierarchy root.
  v2's "no internal processes" rule means the worker's own cgroup usually cannot enable
  controllers for children, which is why a configured parent or the root (as root) is tried.
* cgroup v1 (this project's CI VM): one child per controller hierarchy (``pids``, ``memory``,
  optionally ``cpu``), under the worker's own cgroup in that hierarchy when writable, else
  under the hierarchy root.

The launcher writes its own pid into every ``cgroup.procs`` file of the job before it
``exec``s bubblewrap, so every sandbox process is born inside the limits.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from tre.executors import liveness
from tre.plural import count

log = logging.getLogger(__name__)

MIB = 1024 * 1024
_CPU_PERIOD_US = 100_000
# tre-<job id>-<pid>.<start time of the worker that created it>-<random>: they let a later
# worker tell a leftover (its creator is gone, even if its pid was reused) from a cgroup
# another live worker is about to use (`tre.executors.liveness`). Names without the start
# time (made before it was recorded) are judged on the pid alone.
_JOB_CGROUP = re.compile(r"^tre-[A-Za-z0-9_.-]+-(?P<pid>\d+)(?:\.(?P<start>\d+))?-[0-9a-f]{6}$")


def job_cgroup_name(job_id: str, token: str) -> str:
    """The directory name of a job's cgroup(s); see `sweep_stale`."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", job_id)[:64]
    return f"tre-{safe}-{liveness.owner_tag()}-{token[:6]}"


@dataclass(frozen=True)
class CgroupLimits:
    memory_bytes: int
    max_processes: int
    cpu: float
    # The CPUs the job may run on (a cpuset; `tre.executors.procview.job_cpu_set`): empty
    # leaves the job on every CPU of its parent.
    cpus: tuple[int, ...] = ()


@dataclass(frozen=True)
class _Mount:
    root: str
    mountpoint: Path
    fstype: str
    super_options: frozenset[str]


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def _mounts(mountinfo: Path = Path("/proc/self/mountinfo")) -> list[_Mount]:
    mounts = []
    for line in mountinfo.read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields, rfields = left.split(), right.split()
        if len(fields) < 5 or len(rfields) < 3:
            continue
        mounts.append(
            _Mount(
                root=_unescape(fields[3]),
                mountpoint=Path(_unescape(fields[4])),
                fstype=rfields[0],
                super_options=frozenset(rfields[2].split(",")),
            )
        )
    return mounts


def _own_cgroups(path: Path = Path("/proc/self/cgroup")) -> dict[str, str]:
    """Map controller name (``""`` for the v2 unified line) to this process's cgroup path."""
    own: dict[str, str] = {}
    for line in path.read_text().splitlines():
        _hid, controllers, cg_path = line.split(":", 2)
        for c in controllers.split(",") if controllers else [""]:
            own[c] = cg_path
    return own


def _host_dir(mount: _Mount, cg_path: str) -> Path:
    """Where the cgroup ``cg_path`` (as /proc/self/cgroup names it) lives under ``mount``."""
    rel = cg_path
    if mount.root != "/" and (rel == mount.root or rel.startswith(mount.root + "/")):
        rel = rel[len(mount.root) :]
    return mount.mountpoint / rel.lstrip("/")


def _write(path: Path, value: str) -> None:
    path.write_text(value)


def _read_flat_keyed(path: Path) -> dict[str, int]:
    """Parse files such as ``memory.events`` or ``pids.events`` ("key value" per line)."""
    out: dict[str, int] = {}
    try:
        text = path.read_text()
    except OSError:
        return out
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


def _pids_in(procs_file: Path) -> list[int]:
    try:
        return [int(p) for p in procs_file.read_text().split()]
    except (OSError, ValueError):
        return []


def _rmdir_patiently(directory: Path, timeout_s: float) -> bool:
    """rmdir fails with EBUSY until the last process (or zombie) has left the cgroup."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            directory.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)


class JobCgroup(ABC):
    """A job's cgroup(s): where the launcher enrols itself, and what happened inside."""

    limits: CgroupLimits

    @property
    @abstractmethod
    def procs_files(self) -> list[Path]:
        """The ``cgroup.procs`` files the launcher must write its pid into."""

    @property
    @abstractmethod
    def description(self) -> str:
        """A one-line summary for logs."""

    @abstractmethod
    def oom_killed(self) -> bool:
        """Whether the kernel OOM-killed a process of the job."""

    @abstractmethod
    def pids_limit_hit(self) -> bool:
        """Whether a fork/clone was refused because of the process limit."""

    @abstractmethod
    def pids(self) -> list[int]:
        """Processes still in the job's cgroup."""

    @abstractmethod
    def _dirs(self) -> list[Path]:
        """Every directory to remove at the end."""

    def kill_all(self, timeout_s: float = 2.0) -> None:
        """SIGKILL everything in the cgroup, repeating while it keeps forking."""
        deadline = time.monotonic() + timeout_s
        while True:
            pids = self.pids()
            if not pids or time.monotonic() >= deadline:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.01)

    def remove(self, timeout_s: float = 3.0) -> bool:
        """Kill stragglers and remove the cgroup directories; False if any had to be left."""
        self.kill_all()
        ok = True
        for d in self._dirs():
            if not _rmdir_patiently(d, timeout_s):
                log.warning("could not remove job cgroup %s (still busy)", d)
                ok = False
        return ok


class CgroupV1Job(JobCgroup):
    def __init__(self, dirs: dict[str, Path], limits: CgroupLimits) -> None:
        self.dirs = dirs
        self.limits = limits

    @property
    def procs_files(self) -> list[Path]:
        return [d / "cgroup.procs" for d in self.dirs.values()]

    @property
    def description(self) -> str:
        return "cgroup v1 " + ", ".join(str(d) for d in self.dirs.values())

    def oom_killed(self) -> bool:
        return _read_flat_keyed(self.dirs["memory"] / "memory.oom_control").get("oom_kill", 0) > 0

    def pids_limit_hit(self) -> bool:
        return _read_flat_keyed(self.dirs["pids"] / "pids.events").get("max", 0) > 0

    def pids(self) -> list[int]:
        return sorted({p for f in self.procs_files for p in _pids_in(f)})

    def _dirs(self) -> list[Path]:
        return list(self.dirs.values())


class CgroupV2Job(JobCgroup):
    def __init__(self, directory: Path, limits: CgroupLimits) -> None:
        self.dir = directory
        self.limits = limits

    @property
    def procs_files(self) -> list[Path]:
        return [self.dir / "cgroup.procs"]

    @property
    def description(self) -> str:
        return f"cgroup v2 {self.dir}"

    def oom_killed(self) -> bool:
        return _read_flat_keyed(self.dir / "memory.events").get("oom_kill", 0) > 0

    def pids_limit_hit(self) -> bool:
        return _read_flat_keyed(self.dir / "pids.events").get("max", 0) > 0

    def pids(self) -> list[int]:
        return _pids_in(self.dir / "cgroup.procs")

    def kill_all(self, timeout_s: float = 2.0) -> None:
        kill_file = self.dir / "cgroup.kill"
        if kill_file.exists():
            with contextlib.suppress(OSError):
                _write(kill_file, "1")
        super().kill_all(timeout_s)

    def _dirs(self) -> list[Path]:
        return [self.dir]


def _cpu_quota_us(cpu: float) -> int:
    return max(1000, int(cpu * _CPU_PERIOD_US))


def cpu_list(cpus: tuple[int, ...]) -> str:
    """The kernel's list syntax for a CPU set (``0,3,5``)."""
    return ",".join(str(c) for c in sorted(cpus))


def _set_cpuset(directory: Path, cpus: tuple[int, ...], parent: Path) -> None:
    """Confine a cgroup to ``cpus``: the kernel then keeps every process in it on those
    CPUs, whatever the process asks ``sched_setaffinity`` for (redteam round 13: a job's
    affinity listed the host's CPUs). v1 also needs the memory nodes, copied from the
    parent (a v1 cpuset without them takes no process)."""
    mems, parent_mems = directory / "cpuset.mems", parent / "cpuset.mems"
    if mems.exists() and not mems.read_text().strip() and parent_mems.exists():
        value = parent_mems.read_text().strip()
        if value:  # v2: empty means the parent's, and a v2 root has no cpuset.mems at all
            _write(mems, value)
    _write(directory / "cpuset.cpus", cpu_list(cpus))


def _try_v2(parent: Path, name: str, limits: CgroupLimits) -> CgroupV2Job | None:
    try:
        available = set((parent / "cgroup.controllers").read_text().split())
    except OSError:
        return None
    if not {"memory", "pids"} <= available:
        return None
    try:
        enabled = set((parent / "cgroup.subtree_control").read_text().split())
        missing = {"memory", "pids"} - enabled
        if missing:
            _write(parent / "cgroup.subtree_control", " ".join(f"+{c}" for c in sorted(missing)))
        for optional_controller in ("cpu", "cpuset"):
            if optional_controller in available and optional_controller not in enabled:
                with contextlib.suppress(OSError):
                    _write(parent / "cgroup.subtree_control", f"+{optional_controller}")
    except OSError as exc:
        log.debug("cannot enable cgroup v2 controllers under %s: %s", parent, exc)
        return None
    child = parent / name
    try:
        child.mkdir()
    except OSError as exc:
        log.debug("cannot create %s: %s", child, exc)
        return None
    try:
        _write(child / "pids.max", str(limits.max_processes))
        _write(child / "memory.max", str(limits.memory_bytes))
        for optional, value in (
            ("memory.swap.max", "0"),
            ("memory.oom.group", "1"),
            ("cpu.max", f"{_cpu_quota_us(limits.cpu)} {_CPU_PERIOD_US}"),
        ):
            if (child / optional).exists():
                _write(child / optional, value)
        if limits.cpus and (child / "cpuset.cpus").exists():
            # Best effort: without it the launcher's own affinity (`taskset`) still holds.
            try:
                _set_cpuset(child, limits.cpus, parent)
            except OSError as exc:
                log.warning("cannot confine %s to CPUs %s: %s", child, cpu_list(limits.cpus), exc)
    except OSError as exc:
        log.debug("cannot configure %s: %s", child, exc)
        _rmdir_patiently(child, 0.5)
        return None
    return CgroupV2Job(child, limits)


def _v1_child(mount: _Mount, own: str | None, name: str) -> Path | None:
    parents = []
    if own is not None:
        parents.append(_host_dir(mount, own))
    parents.append(mount.mountpoint)
    for parent in dict.fromkeys(parents):
        child = parent / name
        try:
            child.mkdir()
            return child
        except OSError as exc:
            log.debug("cannot create %s: %s", child, exc)
    return None


def _try_v1(mounts: list[_Mount], own: dict[str, str], name: str, limits: CgroupLimits) -> CgroupV1Job | None:
    by_controller = {
        c: m
        for m in mounts
        if m.fstype == "cgroup"
        for c in ("pids", "memory", "cpu", "cpuset")
        if c in m.super_options
    }
    if "pids" not in by_controller or "memory" not in by_controller:
        return None
    dirs: dict[str, Path] = {}
    job = CgroupV1Job(dirs, limits)
    try:
        for controller, mount in by_controller.items():
            child = _v1_child(mount, own.get(controller), name)
            if child is None:
                if controller in ("cpu", "cpuset"):
                    continue
                raise OSError(f"no writable {controller} cgroup")
            dirs[controller] = child
        _write(dirs["pids"] / "pids.max", str(limits.max_processes))
        _write(dirs["memory"] / "memory.limit_in_bytes", str(limits.memory_bytes))
        memsw = dirs["memory"] / "memory.memsw.limit_in_bytes"
        if memsw.exists():
            # Forbid swapping the excess out; the limit must mean "RAM + swap".
            with contextlib.suppress(OSError):
                _write(memsw, str(limits.memory_bytes))
        if "cpu" in dirs:
            with contextlib.suppress(OSError):
                _write(dirs["cpu"] / "cpu.cfs_period_us", str(_CPU_PERIOD_US))
                _write(dirs["cpu"] / "cpu.cfs_quota_us", str(_cpu_quota_us(limits.cpu)))
        if "cpuset" in dirs:
            try:
                if not limits.cpus:
                    raise OSError("no CPU set asked for")
                _set_cpuset(dirs["cpuset"], limits.cpus, dirs["cpuset"].parent)
            except OSError as exc:
                # A v1 cpuset without CPUs or memory nodes would take no process at all.
                log.warning("no cpuset for %s: %s", dirs["cpuset"], exc)
                _rmdir_patiently(dirs.pop("cpuset"), 0.5)
    except OSError as exc:
        log.debug("cgroup v1 setup failed: %s", exc)
        for d in dirs.values():
            _rmdir_patiently(d, 0.5)
        return None
    return job


def create_job_cgroup(name: str, limits: CgroupLimits, v2_parent: Path | None = None) -> JobCgroup | None:
    """Create and configure the job's cgroup, or return None when no writable one exists."""
    try:
        mounts = _mounts()
        own = _own_cgroups()
    except OSError as exc:
        log.debug("cannot inspect cgroups: %s", exc)
        return None
    v2_mounts = [m for m in mounts if m.fstype == "cgroup2"]
    candidates: list[Path] = []
    if v2_parent is not None:
        candidates.append(v2_parent)
    for m in v2_mounts:
        if "" in own:
            candidates.append(_host_dir(m, own[""]))
        candidates.append(m.mountpoint)
    for parent in dict.fromkeys(candidates):
        job: JobCgroup | None = _try_v2(parent, name, limits)
        if job is not None:
            return job
    return _try_v1(mounts, own, name, limits)


def _holds_processes(path: Path) -> bool:
    """Whether a cgroup directory has a member process (unreadable counts as yes)."""
    try:
        return bool((path / "cgroup.procs").read_text().split())
    except FileNotFoundError:
        return False
    except OSError:
        return True


def stale_job_cgroups(max_depth: int = 5) -> dict[str, list[Path]]:
    """The job cgroups whose creating worker no longer exists, by name (one directory per
    controller hierarchy on cgroup v1, one on v2); nothing is removed (see `sweep_stale`)."""
    groups: dict[str, list[Path]] = {}
    try:
        mounts = [m for m in _mounts() if m.fstype in ("cgroup", "cgroup2")]
    except OSError:
        return groups
    for mount in mounts:
        base_depth = len(mount.mountpoint.parts)
        for dirpath, dirnames, _files in os.walk(mount.mountpoint):
            if len(Path(dirpath).parts) - base_depth >= max_depth:
                dirnames[:] = []
            for name in list(dirnames):
                match = _JOB_CGROUP.match(name)
                if match is None:
                    continue
                dirnames.remove(name)
                start = int(match["start"]) if match["start"] is not None else None
                if not liveness.owner_alive(int(match["pid"]), start):
                    groups.setdefault(name, []).append(Path(dirpath) / name)
    return groups


def sweep_stale(max_depth: int = 5) -> list[Path]:
    """Remove empty job cgroups whose creating worker no longer exists; return them.

    A worker that is SIGKILLed mid-job takes its sandbox down (``--die-with-parent``) but
    cannot remove the job's cgroup; the next worker does it here. ``rmdir`` refuses a
    cgroup that still holds processes, so this can never pull limits from under a job.
    A job cgroup is one directory per controller hierarchy (cgroup v1); it is removed as
    a unit, and kept whole while any of its directories still holds a process: a process
    that has joined some controllers but not yet the rest would otherwise lose the limits
    it was about to join.
    """
    removed: list[Path] = []
    groups = stale_job_cgroups(max_depth)
    for name, paths in groups.items():
        if any(_holds_processes(path) for path in paths):
            log.debug("leaving job cgroup %s: it still holds processes", name)
            continue
        for path in paths:
            try:
                path.rmdir()
                removed.append(path)
            except OSError as exc:
                log.debug("leaving %s: %s", path, exc)
    if removed:
        log.warning(
            "removed %s left by a worker that died: %s",
            count(len(removed), "job cgroup"),
            ", ".join(str(p) for p in removed),
        )
    return removed
