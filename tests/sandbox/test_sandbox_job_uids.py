"""Each running job has a host uid of its own: per-user kernel counters are not shared.

Redteam round 10: all jobs ran as the host user ``tre-job``, and the kernel counts pending
signals (``RLIMIT_SIGPENDING``), inotify instances, message-queue bytes and processes per
user, charged up to the host's user namespace whatever the job's own. One job that queued
signals until ``EAGAIN`` (96,365 here) or held 128 inotify instances made ``sigqueue`` and
``inotify_init`` fail in every other job, of any project, while it ran: a denial of service
and a covert channel. `tre.executors.jobuids` gives each running job its own host uid.
"""

from __future__ import annotations

import os
import pwd
import textwrap
import threading
import time
from pathlib import Path

import pytest

from tests.sandbox.conftest import Run, Sandbox, processes_with
from tre.executors.base import ExecutorError, InputMount
from tre.executors.jobuids import UidRange

HOG = textwrap.dedent(
    """
    import ctypes, os, signal, sys, time
    libc = ctypes.CDLL(None, use_errno=True)
    class sigval(ctypes.Union):
        _fields_ = [("i", ctypes.c_int), ("p", ctypes.c_void_p)]
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGRTMIN])
    queued = 0
    while libc.sigqueue(os.getpid(), int(signal.SIGRTMIN), sigval(1)) == 0:
        queued += 1
    instances = []
    while True:
        fd = libc.inotify_init()
        if fd < 0:
            break
        instances.append(fd)
    print(f"full: {queued} signals, {len(instances)} inotify instances", flush=True)
    time.sleep(float(sys.argv[1]))
    """
)

PROBE = textwrap.dedent(
    """
    import ctypes, json, os, signal
    libc = ctypes.CDLL(None, use_errno=True)
    class sigval(ctypes.Union):
        _fields_ = [("i", ctypes.c_int), ("p", ctypes.c_void_p)]
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGRTMIN])
    sig = libc.sigqueue(os.getpid(), int(signal.SIGRTMIN), sigval(1))
    sig_errno = ctypes.get_errno()
    ino = libc.inotify_init()
    print(json.dumps({"sigqueue": [sig, sig_errno if sig else 0], "inotify_init_ok": ino >= 0}))
    """
)


def _wait_for(tmp_path: Path, text: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for log in tmp_path.glob("*/log.txt"):
            if text in log.read_text(errors="replace"):
                return
        time.sleep(0.1)
    raise AssertionError(f"no job printed {text!r}")


def test_a_job_filling_its_users_counters_leaves_other_jobs_theirs(sandbox: Sandbox, tmp_path: Path) -> None:
    hog: dict[str, Run] = {}
    thread = threading.Thread(
        target=lambda: hog.setdefault(
            "run", sandbox.run("", command=["python3", "-c", HOG, "6"], time_limit_s=60)
        )
    )
    thread.start()
    try:
        _wait_for(tmp_path, "full: ")
        probe = sandbox.run("", command=["python3", "-c", PROBE])
    finally:
        thread.join()
    assert hog["run"].result.state == "succeeded", hog["run"].log
    assert probe.result.state == "succeeded", probe.log
    seen = probe.json_lines()[0]
    assert seen == {"sigqueue": [0, 0], "inotify_init_ok": True}, (seen, hog["run"].log)


def test_concurrent_jobs_run_as_different_host_uids_of_the_job_group(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    group = pwd.getpwnam(sandbox.executor.job_user).pw_gid
    code = "import time; open('/output/x', 'w').write('1'); time.sleep(4)"
    runs: list[Run] = []
    threads = [threading.Thread(target=lambda: runs.append(sandbox.run(code))) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 60
        ids: set[tuple[int, int]] = set()
        while time.monotonic() < deadline and len(ids) < 2:
            time.sleep(0.2)
            ids = set()
            for pid in processes_with("time.sleep(4)"):
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                uid = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
                gid = int(next(line for line in status.splitlines() if line.startswith("Gid:")).split()[1])
                if uid != 0:
                    ids.add((uid, gid))
    finally:
        for t in threads:
            t.join()
    assert all(r.result.state == "succeeded" for r in runs), [r.log for r in runs]
    assert len({uid for uid, _ in ids}) == 2, ids
    rng = sandbox.executor.uid_range
    for uid, gid in ids:
        assert rng.base <= uid < rng.base + rng.count and gid == group
    # The copies of the outputs still belong to the job user, whatever uid wrote them.
    job_user = pwd.getpwnam(sandbox.executor.job_user)
    for run in runs:
        assert (run.spec.output_dir / "x").stat().st_uid == job_user.pw_uid
    assert job_user.pw_uid not in {uid for uid, _ in ids}


def test_uids_are_held_one_job_each_and_released(tmp_path: Path) -> None:
    rng = UidRange(base=2_000_000_000, count=2, lock_dir=tmp_path / "uids")
    with rng.hold(999) as first, rng.hold(999) as second:
        assert {first, second} == {2_000_000_000, 2_000_000_001}
        with pytest.raises(ExecutorError, match="all 2 sandbox uids are in use"), rng.hold(999):
            pass
    with rng.hold(999) as again:
        assert again == 2_000_000_000  # released when its job ended
    assert oct(os.stat(tmp_path / "uids").st_mode & 0o777) == "0o700"
    with UidRange(count=0, lock_dir=tmp_path / "off").hold(999) as shared:
        assert shared == 999  # switched off: the job user's uid
    nobody = pwd.getpwnam("nobody").pw_uid
    with UidRange(base=nobody, count=2, lock_dir=tmp_path / "u2").hold(999) as uid:
        assert uid == nobody + 1  # an account's uid is never handed out
    with pytest.raises(ExecutorError, match="between 1000 and 2"):
        UidRange(base=0, count=5)


def test_subordinate_ids_of_host_users_are_never_a_jobs_uid(tmp_path: Path) -> None:
    """Redteam round 11: only uids naming an account were skipped. A host user's rootless
    containers run as, and own files as, the uids /etc/subuid and /etc/subgid delegate to
    them; an operator who delegates a range overlapping the job uids made jobs share those
    uids (per-uid counters, ownership of the user's container files)."""
    subuid, subgid = tmp_path / "subuid", tmp_path / "subgid"
    subuid.write_text("alice:2000000000:2\n# a comment\nbob:x:y\n")
    subgid.write_text("carol:2000000003:1\n")
    rng = UidRange(base=2_000_000_000, count=5, lock_dir=tmp_path / "uids", subid_files=(subuid, subgid))
    with rng.hold(999) as first, rng.hold(999) as second:
        assert (first, second) == (2_000_000_002, 2_000_000_004)
        with pytest.raises(ExecutorError, match="subordinate"), rng.hold(999):
            pass
    # The range's last uid is handed out like any other; a missing file delegates nothing.
    edge = UidRange(
        base=0x7FFFFFFF - 2, count=2, lock_dir=tmp_path / "edge", subid_files=(tmp_path / "none",)
    )
    with edge.hold(999) as a, edge.hold(999) as b:
        assert (a, b) == (0x7FFFFFFD, 0x7FFFFFFE)


def test_the_lock_folder_must_be_private(tmp_path: Path) -> None:
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    loose.chmod(0o755)
    with pytest.raises(ExecutorError, match="private"), UidRange(count=1, lock_dir=loose).hold(999):
        pass


def test_a_later_job_reads_an_earlier_jobs_private_files_as_its_input(sandbox: Sandbox) -> None:
    """Jobs no longer share a uid, so the copies of an earlier job's outputs (the job user's)
    must be readable through the group: a file the earlier job wrote 0600 in a 0700 folder
    was readable by the next job only because both were the same user."""
    writer = sandbox.run(
        "import os\n"
        "os.makedirs('/output/private', mode=0o700)\n"
        "fd = os.open('/output/private/table.csv', os.O_WRONLY | os.O_CREAT, 0o600)\n"
        "os.write(fd, b'a,b\\n'); os.close(fd)\n"
    )
    assert writer.result.state == "succeeded", writer.log
    source = "ab" * 16
    reader = sandbox.run(
        f"print(open('/inputs/{source}/private/table.csv').read().strip())",
        inputs=[InputMount(source, host_path=writer.spec.output_dir, mount_path=f"/inputs/{source}")],
    )
    assert reader.result.state == "succeeded", reader.log
    assert "a,b" in reader.log
    copied = writer.spec.output_dir / "private" / "table.csv"
    assert copied.stat().st_mode & 0o777 == 0o640  # the owner's bits, group read; nobody else
    assert (writer.spec.output_dir / "private").stat().st_mode & 0o777 == 0o750
