"""What a job reads in /proc about the machine: its own figures, or nothing that moves.

Why (redteam round 12): a fresh procfs of the job's pid namespace still shows the *host's*
global counters, and they move with every other job: `/proc/loadavg` and `/proc/stat`
(CPU time, forks, context switches), `/proc/meminfo`, `/proc/vmstat`, `/proc/diskstats`,
`/proc/interrupts`, `/proc/softirqs`, `/proc/schedstat`, `/proc/pressure/*`, `/proc/locks`
(every lock on the host), `/proc/cgroups` (how many cgroups: one more per running job),
`/proc/zoneinfo`, `/proc/buddyinfo`, the idle time in `/proc/uptime`, the CPU clock in
`/proc/cpuinfo`, and under `/proc/sys` the file, inode, dentry, AIO and pty counts and the
entropy pool. Two concurrent jobs of different projects could signal each other through
any of them (one forks or writes, the other reads the counter) and a job could watch the
others work. `tests/sandbox/test_sandbox_proc_counters.py` reads every file of the job's
/proc twice while the host works and shows which moved.

The class is closed deny-by-default, as lxcfs does for containers:

* the files programs read to size themselves (`meminfo`, `cpuinfo`, `stat`, `loadavg`,
  `uptime`) are written per job by `job_files` from the job's own limits (its memory limit
  as the machine's memory, ``ceil(cpu)`` processors) and bound read-only over the
  procfs's: fixed for the job's life, the same whatever else runs;
* every other top-level file or folder of /proc that is not per-process or
  per-namespace (`KEPT`) is masked (an empty file, an empty read-only folder), so a counter
  a newer kernel adds is masked too;
* the counters under `/proc/sys` (`SYS_COUNTERS`) are masked; the rest of /proc/sys are
  settings that do not move.

The Docker backend binds the same files and has the runtime mask the rest
(`tre.executors.docker.masked_paths`); Kubernetes jobs get a
kernel of their own (gVisor or Kata), whose /proc knows only the pod.
"""

from __future__ import annotations

import math
import os
import re
import secrets
from pathlib import Path

MIB = 1024 * 1024

# Top-level /proc entries that stay as the job's procfs gives them: the job's own processes
# (numbered folders, self, thread-self), its own namespaces (net, sysvipc, mounts), the
# per-job files written here, /sys (read-only; its counters masked below), and static
# descriptions of the kernel (version, filesystems) that do not move.
SYNTHESISED = ("cpuinfo", "loadavg", "meminfo", "stat", "uptime")
KEPT = frozenset(
    {"self", "thread-self", "net", "sys", "mounts", "sysvipc", "version", "filesystems", *SYNTHESISED}
)
# Counters under /proc/sys that move with every process on the host (the rest are settings).
SYS_COUNTERS = (
    "fs/file-nr",
    "fs/inode-nr",
    "fs/inode-state",
    "fs/dentry-state",
    "fs/aio-nr",
    "fs/quota",
    "kernel/random/entropy_avail",
    "kernel/pty/nr",
    "kernel/tainted",
    "kernel/keys",
    # Not a counter but the host's boot, named: the same in every job on the host until it
    # reboots (a fingerprint of the machine; redteam round 15, `tre.executors.jobclock`).
    "kernel/random/boot_id",
)
# /proc/cpuinfo lines that are live readings, not descriptions (the clock moves with load).
_LIVE_CPUINFO = re.compile(r"^(cpu MHz|BogoMIPS|bogomips)\s*:", re.IGNORECASE)
_MEMINFO_KEYS = (
    "MemTotal", "MemFree", "MemAvailable", "Buffers", "Cached", "SwapCached", "Active",
    "Inactive", "Active(anon)", "Inactive(anon)", "Active(file)", "Inactive(file)",
    "Unevictable", "Mlocked", "SwapTotal", "SwapFree", "Dirty", "Writeback", "AnonPages",
    "Mapped", "Shmem", "KReclaimable", "Slab", "SReclaimable", "SUnreclaim", "KernelStack",
    "PageTables", "CommitLimit", "Committed_AS", "VmallocTotal", "VmallocUsed", "VmallocChunk",
    "HugePages_Total", "HugePages_Free", "HugePages_Rsvd", "HugePages_Surp", "Hugepagesize",
)  # fmt: skip


def job_cpus(cpu: float, host_cpus: int) -> int:
    """The processors a job is shown: its CPU limit rounded up, at most the host's."""
    wanted = math.ceil(cpu) if cpu and cpu > 0 else host_cpus
    return max(1, min(wanted, host_cpus))


def job_cpu_set(cpu: float, host: set[int] | None = None) -> tuple[int, ...]:
    """The CPUs a job runs on: `job_cpus` of the worker's own, drawn at random.

    Why at random: the set is the job's affinity (``sched_getaffinity``, ``nproc``,
    ``Cpus_allowed_list``), so it must not depend on what other jobs hold (a job would read
    their pinning in its own) and must not crowd every job onto the first CPUs (which would
    make CPU contention between jobs, a covert channel, as strong as it can be). The numbers
    themselves still bound the host's size, as ``getcpu`` does (SECURITY.md)."""
    if host is None:
        try:
            host = os.sched_getaffinity(0)
        except OSError:
            host = set(range(os.cpu_count() or 1))
    pool = sorted(host)
    return tuple(sorted(secrets.SystemRandom().sample(pool, job_cpus(cpu, len(pool)))))


def host_cpu_count() -> int:
    """Processors the worker may run on (its affinity), the ceiling for `job_cpus`."""
    try:
        return len(os.sched_getaffinity(0))
    except OSError:
        return os.cpu_count() or 1


def meminfo(memory_bytes: int) -> bytes:
    """A /proc/meminfo for a machine of the job's memory limit, all of it free, no swap."""
    total_kib = max(memory_bytes // 1024, 1024)
    values = dict.fromkeys(_MEMINFO_KEYS, 0)
    for key in ("MemTotal", "MemFree", "MemAvailable", "CommitLimit"):
        values[key] = total_kib
    values["Hugepagesize"] = 2048
    lines = []
    for key in _MEMINFO_KEYS:
        unit = "" if key.startswith("HugePages_") else " kB"
        lines.append(f"{key + ':':<16}{values[key]:>8}{unit}")
    return ("\n".join(lines) + "\n").encode()


def cpuinfo(host_text: str, cpus: int) -> bytes:
    """The host's description of its first ``cpus`` processors, renumbered, without the live
    clock readings (``cpu MHz`` moves with load: another job's work shows in it)."""
    blocks = [b for b in host_text.split("\n\n") if b.strip()]
    out: list[str] = []
    shown = 0
    for block in blocks:
        lines = block.splitlines()
        is_processor = any(re.match(r"^processor\s*:\s*\d+\s*$", line) for line in lines)
        if is_processor:
            if shown >= cpus:
                continue
            lines = [f"processor\t: {shown}" if re.match(r"^processor\s*:", line) else line for line in lines]
            shown += 1
        out.append("\n".join(line for line in lines if not _LIVE_CPUINFO.match(line)))
    if shown == 0:  # an architecture without per-processor blocks: name the count only
        out = [f"processor\t: {i}" for i in range(cpus)]
    return ("\n\n".join(out) + "\n\n").encode()


def stat(cpus: int, btime: int) -> bytes:
    """A /proc/stat listing ``cpus`` processors (glibc counts its ``cpuN`` lines for
    ``sysconf(_SC_NPROCESSORS_ONLN)`` when /sys is absent) and no activity at all."""
    zeros = " ".join(["0"] * 10)
    lines = [f"cpu  {zeros}", *(f"cpu{i} {zeros}" for i in range(cpus))]
    lines += ["intr 0", "ctxt 0", f"btime {btime}", "processes 1", "procs_running 1", "procs_blocked 0"]
    lines.append("softirq " + " ".join(["0"] * 11))
    return ("\n".join(lines) + "\n").encode()


def host_btime(host_proc: Path = Path("/proc")) -> int:
    """The host's boot time (seconds since the epoch): a constant, and what process start
    times in /proc/<pid>/stat count from, so ``ps`` still shows the right start times."""
    try:
        for line in (host_proc / "stat").read_text().splitlines():
            if line.startswith("btime "):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def uptime(seconds: float) -> bytes:
    """The host's uptime when the job started (a clock, fixed from then on) and no idle
    time: the idle field sums every processor's idle time, which other jobs' work moves."""
    return f"{max(seconds, 0.0):.2f} 0.00\n".encode()


def shown_memory(memory_bytes: int, host_proc: Path = Path("/proc")) -> int:
    """The memory a job is told the machine has: its limit, at most the host's."""
    try:
        host = int(next(line.split()[1] for line in (host_proc / "meminfo").read_text().splitlines()
                        if line.startswith("MemTotal:"))) * 1024  # fmt: skip
    except (OSError, StopIteration, ValueError, IndexError):
        return memory_bytes
    return min(memory_bytes, host) if host > 0 else memory_bytes


def job_files(
    cpu: float, memory_bytes: int, host_proc: Path = Path("/proc"), boottime_offset: int = 0
) -> dict[str, bytes]:
    """name -> content of each file in `SYNTHESISED`, for a job with these limits.

    ``boottime_offset``: seconds the job's boot-time clock is shifted by (its time namespace,
    `tre.executors.jobclock`): its uptime and boot time (``btime``) are then its own."""
    try:
        host_cpuinfo = (host_proc / "cpuinfo").read_text(errors="replace")
    except OSError:
        host_cpuinfo = ""
    try:
        up = float((host_proc / "uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        up = 0.0
    cpus = job_cpus(cpu, host_cpu_count())
    return {
        "cpuinfo": cpuinfo(host_cpuinfo, cpus),
        "loadavg": b"0.00 0.00 0.00 1/1 1\n",
        "meminfo": meminfo(shown_memory(memory_bytes, host_proc)),
        "stat": stat(cpus, host_btime(host_proc) - boottime_offset),
        "uptime": uptime(up + boottime_offset),
    }


def masked(host_proc: Path = Path("/proc")) -> tuple[list[str], list[str]]:
    """(files, folders) of /proc to mask for a job: every top-level entry of the host's
    procfs that is not `KEPT` (deny by default) and each of `SYS_COUNTERS` present, as
    paths relative to /proc. Symbolic links are left alone (self, mounts, net point into
    the job's own process)."""
    files: list[str] = []
    folders: list[str] = []
    try:
        names = sorted(os.listdir(host_proc))
    except OSError:
        names = []
    for name in names:
        if name.isdigit() or name in KEPT:
            continue
        path = host_proc / name
        if path.is_symlink():
            continue
        (folders if path.is_dir() else files).append(name)
    for rel in SYS_COUNTERS:
        path = host_proc / "sys" / rel
        if path.is_symlink() or not path.exists():
            continue
        (folders if path.is_dir() else files).append(f"sys/{rel}")
    return files, folders
