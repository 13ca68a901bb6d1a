"""The per-job /proc files and the deny-by-default mask list (`tre.executors.procview`).

The sandbox tests (`tests/sandbox/test_sandbox_proc_counters.py`) show the effect in real
jobs; these pin the rules: an entry a newer kernel adds to /proc is masked without anyone
listing it, processes and the job's own namespaces are not, and the files programs read to
size themselves follow the job's limits.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from tre.executors import cgroups, procview

HOST_CPUINFO = "\n\n".join(
    f"processor\t: {i}\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\ncpu MHz\t\t: {2000 + i}.5\n"
    f"bogomips\t: 5192.24\nflags\t\t: fpu sse2"
    for i in range(4)
)


def _fake_proc(root: Path) -> Path:
    proc = root / "proc"
    for folder in ("1234", "pressure", "sys/fs", "sys/kernel/random", "sys/net/ipv4", "fs/ext4/vda"):
        (proc / folder).mkdir(parents=True, exist_ok=True)
    for name in ("loadavg", "meminfo", "version", "locks", "cgroups", "a_counter_from_a_newer_kernel"):
        (proc / name).write_text("1\n")
    for rel in (
        "sys/fs/file-nr",
        "sys/fs/nr_open",
        "sys/kernel/random/entropy_avail",
        "sys/net/ipv4/ip_forward",
    ):
        (proc / rel).write_text("1\n")
    (proc / "self").symlink_to("1234")
    (proc / "mounts").symlink_to("self/mounts")
    return proc


def test_every_top_level_entry_not_kept_is_masked(tmp_path: Path) -> None:
    files, folders = procview.masked(_fake_proc(tmp_path))
    assert "a_counter_from_a_newer_kernel" in files  # deny by default
    assert {"locks", "cgroups"} <= set(files)
    assert {"pressure", "fs"} <= set(folders)
    assert {"sys/fs/file-nr", "sys/kernel/random/entropy_avail"} <= set(files)
    kept = {"1234", "self", "mounts", "loadavg", "meminfo", "version", "sys", "sys/fs/nr_open"}
    assert not kept & {*files, *folders}
    assert "sys/net/ipv4/ip_forward" not in files  # a setting of the job's own namespace


def test_the_hosts_proc_counters_are_on_the_list() -> None:
    files, folders = procview.masked()
    present = {
        n
        for n in ("vmstat", "diskstats", "interrupts", "softirqs", "zoneinfo", "locks")
        if Path("/proc", n).exists()
    }
    assert present <= set(files)
    assert {d for d in ("pressure", "fs", "irq") if Path("/proc", d).is_dir()} <= set(folders)
    assert "sys/fs/file-nr" in files and "sys/fs/dentry-state" in files
    assert not any(name.isdigit() for name in files + folders)


def test_cpuinfo_shows_the_jobs_processors_without_the_live_clock() -> None:
    text = procview.cpuinfo(HOST_CPUINFO, 2).decode()
    assert text.count("processor\t:") == 2 and "processor\t: 1" in text and "processor\t: 2" not in text
    assert "MHz" not in text and "bogomips" not in text and "model name\t: AMD EPYC" in text
    # An architecture without per-processor blocks still gets the count.
    assert procview.cpuinfo("Hardware\t: board\n", 3).decode().count("processor\t:") == 3


def test_cpus_follow_the_limit_within_the_hosts() -> None:
    assert procview.job_cpus(0.5, 8) == 1
    assert procview.job_cpus(2.5, 8) == 3
    assert procview.job_cpus(16, 4) == 4
    assert procview.job_cpus(0, 4) == 4


def test_the_files_follow_the_jobs_limits() -> None:
    files = procview.job_files(1.5, 300 * 1024 * 1024)
    assert set(files) == set(procview.SYNTHESISED)
    meminfo = dict(line.split(":", 1) for line in files["meminfo"].decode().splitlines())
    assert meminfo["MemTotal"].split() == [str(300 * 1024), "kB"] == meminfo["MemAvailable"].split()
    assert meminfo["SwapTotal"].split() == ["0", "kB"]
    cpus = min(math.ceil(1.5), len(os.sched_getaffinity(0)))
    stat = files["stat"].decode().splitlines()
    assert [line.split()[0] for line in stat[: cpus + 1]] == ["cpu", *(f"cpu{i}" for i in range(cpus))]
    assert files["loadavg"] == b"0.00 0.00 0.00 1/1 1\n"
    assert files["uptime"].split()[1] == b"0.00"  # no idle time summed over the host's CPUs
    # Twice the same: nothing in them depends on what else runs (uptime aside: a clock).
    again = procview.job_files(1.5, 300 * 1024 * 1024)
    assert {k: v for k, v in again.items() if k != "uptime"} == {
        k: v for k, v in files.items() if k != "uptime"
    }


def test_a_jobs_cpu_set_is_its_limit_drawn_from_the_workers_cpus() -> None:
    """Round 13: the set is the job's affinity. Its size is ``ceil(cpu)`` (at most the
    worker's), its CPUs are the worker's, and it is drawn at random, never from what other
    jobs hold (nothing but the worker's CPUs goes in)."""
    host = {0, 3, 5, 8, 13, 21}
    drawn = {procview.job_cpu_set(1.5, host) for _ in range(200)}
    assert all(len(cpus) == 2 and set(cpus) <= host and list(cpus) == sorted(cpus) for cpus in drawn)
    assert len(drawn) > 5  # spread over the host's CPUs, not always the first ones
    assert procview.job_cpu_set(64, host) == tuple(sorted(host))
    assert len(procview.job_cpu_set(0.1, host)) == 1
    assert set(procview.job_cpu_set(1)) <= os.sched_getaffinity(0)


def test_a_cpuset_gets_the_cpus_and_on_v1_the_parents_memory_nodes(tmp_path: Path) -> None:
    parent, child = tmp_path / "parent", tmp_path / "parent" / "tre-job"
    child.mkdir(parents=True)
    (parent / "cpuset.mems").write_text("0-1\n")
    for name in ("cpuset.mems", "cpuset.cpus"):
        (child / name).write_text("\n")  # what the kernel shows in a new v1 cpuset
    cgroups._set_cpuset(child, (5, 1), parent)
    assert (child / "cpuset.cpus").read_text() == "1,5"
    assert (child / "cpuset.mems").read_text() == "0-1"
    v2 = tmp_path / "v2"
    (v2 / "tre-job").mkdir(parents=True)  # a v2 root has no cpuset.mems; the child's stays empty
    (v2 / "tre-job" / "cpuset.mems").write_text("\n")
    (v2 / "tre-job" / "cpuset.cpus").write_text("\n")
    cgroups._set_cpuset(v2 / "tre-job", (2,), v2)
    assert (v2 / "tre-job" / "cpuset.mems").read_text() == "\n"
    assert (v2 / "tre-job" / "cpuset.cpus").read_text() == "2"
