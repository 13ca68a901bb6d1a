"""Two jobs running at once cannot signal or watch each other through shared inodes.

Redteam round 10: every job of every project is the same host user, and advisory locks
(``flock``, POSIX ``fcntl`` locks and their ``F_GETLK`` query) and inotify watches belong to
the *inode*, not to the mount or the namespace. Any inode two sandboxes shared therefore
carried a lock, or an open/read event, from one job to the other: a dataset two projects are
granted (and an image root they both run, staged the same way), bubblewrap's /dev nodes (the
host's own /dev/null) and the /proc entries bound read-only from the host's procfs
(/proc/sys). A job with the data holding or releasing a lock is one bit to a concurrent job
of another project, thousands of times a second, whose outputs then face that project's
(weaker) airlock policy; a watch also told which files of a shared dataset the other job
read. Now each job reaches those through inodes of its own: read-only folders through a
private read-only overlay, /dev's nodes made afresh in a private tmpfs, the read-only /proc
entries from a procfs of the launcher's own.
"""

from __future__ import annotations

import json
import os
import textwrap
import threading
import time
from pathlib import Path

import pytest

from tests.sandbox.conftest import Run, Sandbox
from tests.sandbox.test_sandbox_image import image_sandbox  # noqa: F401 - fixture
from tre.executors.base import DatasetMount, ExecutorError, ImageConfig
from tre.executors.stage import Stage, launcher_argv

# (label, path, how): every inode the holder locks and the probe tests.
TARGETS = [
    ("dataset file", "/data/scan.dcm", "flock"),
    ("dataset folder", "/data", "flock"),
    ("dataset file, POSIX read lock", "/data/other.dcm", "posix"),
    ("/dev/null", "/dev/null", "flock"),
    ("/dev/urandom", "/dev/urandom", "flock"),
    ("/proc/sys entry", "/proc/sys/kernel/ostype", "flock"),
]

HOLDER = textwrap.dedent(
    """
    import fcntl, json, os, sys, time
    targets = json.loads(sys.argv[1])
    held = []
    for label, path, how in targets:
        fd = os.open(path, os.O_RDONLY)
        if how == "flock":
            fcntl.flock(fd, fcntl.LOCK_EX)
        else:
            fcntl.lockf(fd, fcntl.LOCK_SH)
        held.append(fd)
    print("holding", flush=True)
    time.sleep(float(sys.argv[2]))
    """
)

PROBE = textwrap.dedent(
    """
    import fcntl, json, os, struct, sys
    targets = json.loads(sys.argv[1])
    fmt = "hhqqi"
    def state(path, how):
        fd = os.open(path, os.O_RDONLY)
        try:
            if how == "flock":
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return "held"
                return "free"
            query = struct.pack(fmt, fcntl.F_WRLCK, 0, 0, 0, 0)
            kind = struct.unpack(fmt, fcntl.fcntl(fd, fcntl.F_GETLK, query))[0]
            return "free" if kind == fcntl.F_UNLCK else "held"
        finally:
            os.close(fd)
    seen = {label: state(path, how) for label, path, how in targets}
    # Locks still work inside one job: a lock this job holds is seen by its own second open.
    own = os.open("/data/scan.dcm", os.O_RDONLY)
    fcntl.flock(own, fcntl.LOCK_EX)
    seen["own lock, same job"] = state("/data/scan.dcm", "flock")
    print(json.dumps(seen))
    """
)


def _dataset(tmp_path: Path) -> Path:
    folder = tmp_path / "shared-dataset"
    folder.mkdir()
    for name in ("scan.dcm", "other.dcm"):
        (folder / name).write_bytes(b"DICM")
        (folder / name).chmod(0o644)
    folder.chmod(0o755)
    return folder


def test_a_lock_in_one_job_is_invisible_to_a_concurrent_job(sandbox: Sandbox, tmp_path: Path) -> None:
    dataset = _dataset(tmp_path)
    mounts = [DatasetMount("ct", host_path=dataset)]
    spec_targets = json.dumps(TARGETS)
    holder: dict[str, Run] = {}

    def hold() -> None:
        holder["run"] = sandbox.run(
            "", command=["python3", "-c", HOLDER, spec_targets, "8"], datasets=mounts, time_limit_s=60
        )

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        # Wait until the holder has every lock (its log is written as it runs).
        deadline = time.monotonic() + 30
        logs = list(tmp_path.glob("*/log.txt"))
        while time.monotonic() < deadline:
            logs = list(tmp_path.glob("*/log.txt"))
            if logs and "holding" in logs[0].read_text(errors="replace"):
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the holding job never took its locks: " + str(logs))
        probe = sandbox.run("", command=["python3", "-c", PROBE, spec_targets], datasets=mounts)
        assert probe.result.state == "succeeded", probe.log
        seen = probe.json_lines()[0]
    finally:
        thread.join()
    assert holder["run"].result.state == "succeeded", holder["run"].log
    assert seen.pop("own lock, same job") == "held"  # the probe can tell a held lock
    crossed = {label: what for label, what in seen.items() if what != "free"}
    assert crossed == {}, f"locks held by one job were seen by another: {crossed}"
    # The holder's dataset is still the host's, unchanged, and readable by the probe.
    assert (dataset / "scan.dcm").read_bytes() == b"DICM"


READER = textwrap.dedent(
    """
    import os, sys, time
    print("reading", flush=True)
    end = time.monotonic() + float(sys.argv[1])
    while time.monotonic() < end:
        for path in ("/data/scan.dcm", "/dev/null", "/proc/sys/kernel/ostype"):
            with open(path, "rb") as f:
                f.read(1)
        os.listdir("/data")
        time.sleep(0.01)
    """
)

WATCHER = textwrap.dedent(
    """
    import ctypes, json, os, struct, time
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_NONBLOCK)
    paths = ["/data/scan.dcm", "/data", "/dev/null", "/proc/sys/kernel/ostype", "/tmp"]
    # IN_ACCESS | IN_OPEN | IN_CLOSE_NOWRITE | IN_CREATE
    watches = {libc.inotify_add_watch(fd, p.encode(), 0x1 | 0x20 | 0x10 | 0x100): p for p in paths}
    assert -1 not in watches, "a watch could not be added"
    time.sleep(2)
    open("/tmp/own-event", "w").close()  # an event of the job's own: the watch works
    counts = {p: 0 for p in paths}
    try:
        buf = os.read(fd, 1 << 20)
    except BlockingIOError:
        buf = b""
    i = 0
    while i < len(buf):
        wd, mask, cookie, size = struct.unpack_from("iIII", buf, i)
        counts[watches[wd]] += 1
        i += 16 + size
    print(json.dumps(counts))
    """
)


def test_a_job_cannot_watch_another_jobs_reads(sandbox: Sandbox, tmp_path: Path) -> None:
    """inotify watches belong to the inode too: on shared inodes a job saw every open and
    read of a concurrent job (hundreds of events a second, and which files of a shared
    dataset another project's job reads)."""
    dataset = _dataset(tmp_path)
    mounts = [DatasetMount("ct", host_path=dataset)]
    reader: dict[str, Run] = {}

    def read() -> None:
        reader["run"] = sandbox.run("", command=["python3", "-c", READER, "6"], datasets=mounts)

    thread = threading.Thread(target=read)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            logs = list(tmp_path.glob("*/log.txt"))
            if logs and "reading" in logs[0].read_text(errors="replace"):
                break
            time.sleep(0.1)
        watcher = sandbox.run("", command=["python3", "-c", WATCHER], datasets=mounts)
    finally:
        thread.join()
    assert reader["run"].result.state == "succeeded", reader["run"].log
    assert watcher.result.state == "succeeded", watcher.log
    counts = watcher.json_lines()[0]
    assert counts.pop("/tmp") >= 1  # the watcher's own events arrive
    assert counts == {path: 0 for path in counts}, f"another job's reads were seen: {counts}"


def test_an_image_job_reaches_its_image_data_and_code_through_private_overlays(
    image_sandbox: tuple[Sandbox, Path],  # noqa: F811 - fixture
    tmp_path: Path,
) -> None:
    """The image root, shared by every job that runs the image, gets the same private inodes
    (busybox has no ``flock``, so this reads the mount table): each top-level entry, /data
    and /code come from a read-only overlay, /dev's nodes from the job's tmpfs, /proc/sys
    from its procfs; and no host path of theirs is left in the job's mount table."""
    sandbox, rootfs = image_sandbox
    dataset = _dataset(tmp_path)
    code = tmp_path / "code"
    code.mkdir()
    (code / "run.sh").write_text("echo ran\n")
    run = sandbox.run(
        "",
        command=["sh", "-c", "cat /proc/self/mountinfo; cat /data/scan.dcm; echo; sh run.sh"],
        rootfs=rootfs,
        image_config=ImageConfig(env={"PATH": "/bin"}),
        datasets=[DatasetMount("ct", host_path=dataset)],
        code_dir=code,
    )
    assert run.result.state == "succeeded", run.log
    assert "DICM" in run.log and "ran" in run.log
    mounts = {}
    for line in run.log.splitlines():
        fields = line.split(" ")
        if len(fields) > 9 and " - " in line:
            after = line.split(" - ", 1)[1].split(" ")
            mounts[fields[4]] = (after[0], after[1])
    for point in ("/bin", "/etc", "/data", "/code"):
        assert mounts[point] == ("overlay", "tre-ro"), (point, mounts.get(point))
    for name in ("null", "urandom"):
        assert mounts[f"/dev/{name}"] == ("tmpfs", "tre-dev")
    assert mounts["/proc/sys"] == ("proc", "tre-proc")
    assert str(tmp_path) not in run.log  # the host's folders are not named


def test_stage_devices_and_procfs_entries(tmp_path: Path) -> None:
    stage = Stage(Path("/run/tre-stage"))
    source, names = stage.devices()
    assert source == "/run/tre-stage/dev"
    assert "null" in names and "urandom" in names
    kind, nodes, name = stage.entries[0]
    assert (kind, name) == ("dev", "dev")
    null = os.stat("/dev/null").st_rdev
    assert f"null:{os.major(null)}:{os.minor(null)}" in nodes.split(" ")
    assert stage.proc() == "/run/tre-stage/proc"
    assert stage.entries[1] == ("proc", "-", "proc")
    # The stage folder is written into overlay's options: no commas, colons or spaces.
    with pytest.raises(ExecutorError, match="plain absolute path"):
        launcher_argv(Stage(Path("/run/tre,stage")), [], 1, 1, 3, 4, ["true"])
