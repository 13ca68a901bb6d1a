"""No file of a job's /proc moves with what other jobs or the host do (redteam round 12).

A fresh procfs of the job's pid namespace still showed the host's global counters: before
the fix, a job that read every file of its /proc (1,007 readable, /sys absent) twice while
another job forked, wrote and locked, and the host wrote to its disk, saw 22 of them change:
/proc/stat, uptime, vmstat, loadavg, meminfo, softirqs, zoneinfo, buddyinfo, diskstats,
interrupts, pressure/io and pressure/cpu, fs/ext4/<disk>/mb_groups (free blocks per group),
irq/<n>/spurious, sys/fs/dentry-state, file-nr, inode-nr, inode-state (plus
sys/kernel/random/uuid, which is random, and the reader's own /proc/self/stat), and so did
``sysinfo(2)``'s load, free, shared and buffer RAM and process count. Each is a covert
channel between two concurrent jobs of different projects and an activity monitor.
Now the job reads its own meminfo, cpuinfo, stat, loadavg and uptime
(`tre.executors.procview`), every other host-wide top-level entry is masked deny by
default, /proc/sys's counters are masked, and the worker answers ``sysinfo`` with the job's
own figures (`tre.executors.sysinfo`). Programs still size themselves to the job.
"""

from __future__ import annotations

import fcntl
import math
import os
import textwrap
import threading
import time
from pathlib import Path

from tests.sandbox.conftest import Run, Sandbox
from tests.sandbox.test_sandbox_image import image_sandbox, run_sh  # noqa: F401 - fixture
from tre.executors import jobclock

# Reads every file of /proc that is not one of its own processes' (and /sys, if it exists),
# then again every 0.1 s until told time is up, and reports each file whose bytes changed.
READER = textwrap.dedent(
    """
    import json, os, sys, time
    def files():
        out = []
        for top in ("/proc", "/sys"):
            for dp, dns, fns in os.walk(top):
                if dp == "/proc":
                    dns[:] = [d for d in dns if not d.isdigit() and d not in ("self", "thread-self")]
                out += [os.path.join(dp, f) for f in fns]
        return out + ["/proc/self/mountinfo", "/proc/self/cgroup", "/proc/self/limits"]
    def read(p):
        try:
            with open(p, "rb") as fh:
                return fh.read(1 << 20)
        except OSError:
            return None
    import ctypes
    class SI(ctypes.Structure):
        _fields_ = [("uptime", ctypes.c_long), ("rest", ctypes.c_ulong * 9), ("procs", ctypes.c_ushort),
                    ("pad", ctypes.c_ushort), ("high", ctypes.c_ulong * 2), ("unit", ctypes.c_uint),
                    ("f", ctypes.c_char * 8)]
    libc = ctypes.CDLL(None, use_errno=True)
    def sysinfo():  # everything but the uptime (a clock)
        s = SI()
        assert libc.sysinfo(ctypes.byref(s)) == 0
        return [*s.rest, s.procs, *s.high, s.unit]
    paths = files()
    first = {p: read(p) for p in paths}
    first_sysinfo = sysinfo()
    readable = [p for p in paths if first[p] is not None]
    print(json.dumps({"ready": len(readable)}), flush=True)
    moved = set()
    end = time.monotonic() + float(sys.argv[1])
    while time.monotonic() < end:
        moved |= {p for p in readable if p not in moved and read(p) != first[p]}
        if sysinfo() != first_sysinfo:
            moved.add("sysinfo(2)")
        time.sleep(0.1)
    print(json.dumps({"moved": sorted(moved)}), flush=True)
    """
)

# What the other project's job does: forks, writes and syncs, holds locks and open files,
# allocates memory, keeps the CPUs busy.
NOISE = textwrap.dedent(
    """
    import fcntl, os, time
    keep = []
    for i in range(300):
        fh = open(f"/tmp/f{i}", "wb"); keep.append(fh)
        fcntl.lockf(fh, fcntl.LOCK_EX)
    for i in range(100):
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
    with open("/output/big", "wb") as fh:
        fh.write(os.urandom(8 << 20)); fh.flush(); os.fsync(fh.fileno())
    blob = bytearray(96 << 20)
    end = time.monotonic() + 1.5
    while time.monotonic() < end:
        sum(range(20000))
    print("noise done", flush=True)
    """
)

# The one file that changes on every read by design: a fresh random UUID.
RANDOM_BY_DESIGN = {"/proc/sys/kernel/random/uuid"}


def _host_noise(folder: Path) -> None:
    """What the host (another worker, an image import) does meanwhile: disk writes, forks,
    a POSIX lock (listed in /proc/locks)."""
    folder.mkdir(exist_ok=True)
    with open(folder / "locked", "wb") as lock:
        fcntl.lockf(lock, fcntl.LOCK_EX)
        for i in range(8):
            with open(folder / f"w{i}", "wb") as fh:
                fh.write(os.urandom(2 << 20))
                fh.flush()
                os.fsync(fh.fileno())
            os.system("true")  # noqa: S605, S607 - a fork and exec on the host, nothing more
        time.sleep(0.5)


def test_no_file_of_the_jobs_proc_moves_with_another_job_or_the_host(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    holder: dict[str, Run] = {}

    def reader() -> None:
        holder["run"] = sandbox.run("", command=["python3", "-c", READER, "14"], time_limit_s=90)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline:
            logs = list(tmp_path.glob("*/log.txt"))
            if logs and '"ready"' in logs[0].read_text(errors="replace"):
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the reading job did not start")
        noise = sandbox.run(NOISE, memory_mb=512, time_limit_s=60)
        _host_noise(tmp_path / "host-noise")
        reader_log = logs[0].read_text(errors="replace")
    finally:
        thread.join()
    assert noise.result.exit_code == 0 and "noise done" in noise.log, noise.log
    assert '"moved"' not in reader_log, "the noise ended after the reader stopped looking"
    run = holder["run"]
    assert run.result.exit_code == 0, run.log
    lines = {k: v for line in run.json_lines() for k, v in line.items()}
    assert lines["ready"] > 500  # /proc/sys and the rest were read, not refused
    assert set(lines["moved"]) <= RANDOM_BY_DESIGN, lines["moved"]


PROGRAM = textwrap.dedent(
    """
    import json, multiprocessing, os, subprocess
    import numpy as np
    mem = dict(line.split(":", 1) for line in open("/proc/meminfo"))
    cpuinfo = open("/proc/cpuinfo").read()
    a = np.ones((300, 300))
    print(json.dumps({
        "cpu_count": os.cpu_count(),
        "mp": multiprocessing.cpu_count(),
        "onln": os.sysconf("SC_NPROCESSORS_ONLN"),
        "phys": os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"),
        "free": subprocess.run(["free", "-b"], capture_output=True, text=True).stdout.split()[7],
        "getconf": subprocess.run(["getconf", "_NPROCESSORS_ONLN"], capture_output=True, text=True).stdout,
        "mem_total": mem["MemTotal"].strip(),
        "mem_available": mem["MemAvailable"].strip(),
        "swap": mem["SwapTotal"].strip(),
        "processors": cpuinfo.count("processor\\t:"),
        "mhz": "MHz" in cpuinfo,
        "model": "model name" in cpuinfo or "CPU part" in cpuinfo,
        "loadavg": open("/proc/loadavg").read().split()[:3],
        "uptime": float(open("/proc/uptime").read().split()[0]),
        "btime": [l for l in open("/proc/stat") if l.startswith("btime")][0].split()[1],
        "numpy": float((a @ a).sum()),
        "masked": [open(p).read() for p in ("/proc/vmstat", "/proc/locks", "/proc/sys/fs/file-nr")],
    }))
    """
)


def test_programs_size_themselves_to_the_jobs_limits(sandbox: Sandbox) -> None:
    """Python, multiprocessing, glibc's sysconf (which counts /proc/stat's cpuN lines when
    /sys is absent), getconf and NumPy see the job's CPU limit rounded up and its memory
    limit, not the host's (``sysconf(_SC_PHYS_PAGES)`` asks ``sysinfo``, ``free`` reads
    /proc/meminfo); the model name is still there, the live clock is not."""
    run = sandbox.run(PROGRAM, cpu=1.5, memory_mb=640, time_limit_s=60)
    assert run.result.exit_code == 0, run.log
    got = run.json_lines()[0]
    cpus = min(math.ceil(1.5), len(os.sched_getaffinity(0)))
    assert got["cpu_count"] == got["mp"] == got["onln"] == got["processors"] == cpus
    assert int(got["getconf"].strip()) == cpus
    assert got["mem_total"] == got["mem_available"] == f"{640 * 1024} kB"
    assert got["phys"] == int(got["free"]) == 640 * 1024 * 1024  # sysinfo(2), /proc/meminfo
    assert got["swap"] == "0 kB"
    assert not got["mhz"] and got["model"]
    assert got["loadavg"] == ["0.00", "0.00", "0.00"]
    host_btime = next(line.split()[1] for line in open("/proc/stat") if line.startswith("btime"))
    # ps computes start times from it: the job's own boot, its start (its time namespace,
    # round 15), where the kernel has time namespaces; the host's otherwise.
    assert int(got["btime"]) > int(host_btime) if jobclock.supported() else got["btime"] == host_btime
    host_uptime = float(Path("/proc/uptime").read_text().split()[0])
    # The job's clock starts at 0 when the job starts: a job that reads it within 10 ms sees
    # 0.00, and it can never exceed the job's time limit; without time namespaces, the host's.
    if jobclock.supported():
        assert 0 <= got["uptime"] <= min(60.0, host_uptime)
    else:
        assert 0 < got["uptime"] <= host_uptime
    assert got["numpy"] == 300.0**3
    assert got["masked"] == ["", "", ""]


def test_an_image_job_reads_the_same_proc(
    image_sandbox: tuple[Sandbox, Path],  # noqa: F811 - fixture
) -> None:
    """The image mode gets the same files: busybox's ``nproc`` (sched_getaffinity: the host's
    CPUs, a constant) aside, /proc says what the job was given."""
    sandbox, rootfs = image_sandbox
    script = (
        "head -1 /proc/meminfo; cat /proc/loadavg; wc -c < /proc/diskstats; "
        "if [ -e /proc/pressure/cpu ]; then echo pressure-shown; else echo pressure-masked; fi"
    )
    run = run_sh(sandbox, rootfs, script, memory_mb=384)
    assert run.result.exit_code == 0, run.log
    lines = [line.split() for line in run.log.splitlines() if line and not line.startswith("[")]
    assert ["MemTotal:", str(384 * 1024), "kB"] in lines, run.log
    assert ["0.00", "0.00", "0.00", "1/1", "1"] in lines, run.log
    assert lines.count(["0"]) == 1, run.log  # diskstats is empty
    assert ["pressure-masked"] in lines, run.log


def test_the_free_space_of_every_mount_of_an_image_job_is_its_own(
    image_sandbox: tuple[Sandbox, Path],  # noqa: F811 - fixture
    tmp_path: Path,
) -> None:
    """``statfs`` of each mount point the job has (its whole mount table: the image's
    entries, /data, /code, /output, /tmp, /dev/shm, /dev, /proc and the /proc files bound
    over it) does not move while another job fills its /output and /tmp and the host writes
    32 MiB beside the image store: every figure is a file system of the job's own or fixed."""
    sandbox, rootfs = image_sandbox
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    (dataset / "a.dcm").write_bytes(b"DICM")
    dataset.chmod(0o755)
    script = (
        "s() { for m in $(cut -d' ' -f2 /proc/self/mounts); do "
        'stat -f -c "$m %b %f %a %c %d" "$m"; done; }; '
        'a=$(s); echo ready; sleep 8; b=$(s); echo "mounts $(echo "$a" | wc -l)"; '
        'if [ "$a" = "$b" ]; then echo statfs-same; else echo statfs-moved; echo "$a"; echo "$b"; fi'
    )
    holder: dict[str, Run] = {}

    def job() -> None:
        from tre.executors.base import DatasetMount

        holder["run"] = run_sh(
            sandbox, rootfs, script, datasets=[DatasetMount("ct", host_path=dataset)], time_limit_s=60
        )

    thread = threading.Thread(target=job)
    thread.start()
    try:
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline:
            logs = list(tmp_path.glob("*/log.txt"))
            if logs and "ready" in logs[0].read_text(errors="replace"):
                break
            time.sleep(0.05)
        noise = run_sh(
            sandbox,
            rootfs,
            "dd if=/dev/zero of=/output/f bs=1M count=16; dd if=/dev/zero of=/tmp/f bs=1M count=16",
        )
        _host_noise(tmp_path / "host-noise")
    finally:
        thread.join()
    assert noise.result.exit_code == 0, noise.log
    run = holder["run"]
    assert run.result.exit_code == 0, run.log
    assert "statfs-same" in run.log, run.log
    count = next(int(line.split()[1]) for line in run.log.splitlines() if line.startswith("mounts "))
    assert count >= 10, run.log  # the image's entries, /data, /output, /tmp, /proc and its files


SYSINFO_CALLS = textwrap.dedent(
    """
    import ctypes, json, threading, time
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(128)
    def spin(n):
        for _ in range(n):
            assert libc.sysinfo(buf) == 0
    start = time.monotonic()
    threads = [threading.Thread(target=spin, args=(2000,)) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    elapsed = time.monotonic() - start
    bad = libc.sysinfo(ctypes.c_void_p(16))
    print(json.dumps({"per_call_us": elapsed / 8000 * 1e6, "bad": [bad, ctypes.get_errno()]}))
    """
)


def test_sysinfo_is_answered_for_every_thread_and_a_bad_pointer_is_efault(sandbox: Sandbox) -> None:
    """8,000 calls from four threads are each answered (none hangs, none falls through to
    the host); a pointer the job does not own gets EFAULT, as from the kernel."""
    run = sandbox.run(SYSINFO_CALLS, time_limit_s=60)
    assert run.result.exit_code == 0, run.log
    got = run.json_lines()[0]
    assert got["bad"] == [-1, 14], got
    assert got["per_call_us"] > 0
