"""Resource limits of the local sandbox: each runaway job is stopped with a clear reason,
and the host is unaffected afterwards (it can still fork and allocate; nothing is left)."""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import textwrap
import threading
import time

import pytest

from tests.sandbox.conftest import Run, Sandbox
from tre.executors import stage
from tre.executors.base import RunControl
from tre.executors.cgroups import CgroupLimits, create_job_cgroup, sweep_stale
from tre.executors.local import LocalExecutor


def host_is_healthy() -> None:
    """The host can still start processes and allocate memory."""
    assert subprocess.run(["true"]).returncode == 0
    block = bytearray(256 * 1024 * 1024)
    block[-1] = 1
    del block


@pytest.fixture(scope="module")
def cgroups_available() -> None:
    probe = create_job_cgroup("tre-probe-limits", CgroupLimits(64 * 2**20, 8, 1.0))
    if probe is None:
        pytest.skip("no writable cgroup (v1 or v2) on this host: kernel limits cannot be tested here")
    assert probe.remove()


def test_wall_clock_limit_kills_the_whole_sandbox(sandbox: Sandbox, assert_clean) -> None:
    code = textwrap.dedent(
        """
        import os, signal, subprocess, sys, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        # Background children that outlive nothing: they must die with the sandbox.
        for _ in range(3):
            subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', sys.argv[1]])
        print('started', flush=True)
        time.sleep(60)
        """
    )
    t0 = time.monotonic()
    run = sandbox.run(code, time_limit_s=1)
    elapsed = time.monotonic() - t0
    assert run.result.state == "timed_out", run.log
    assert run.result.reason == "exceeded time limit of 1 s"
    assert run.result.exit_code is None
    assert elapsed < 5
    assert "started" in run.log
    assert "[tre] timed_out: exceeded time limit of 1 s" in run.log
    assert_clean(run)
    host_is_healthy()


def test_memory_hog_is_oom_killed(sandbox: Sandbox, assert_clean, cgroups_available: None) -> None:
    code = textwrap.dedent(
        """
        chunks = []
        for i in range(40):  # 640 MiB, well past the limit
            chunks.append(bytearray(16 * 1024 * 1024))
            for j in range(0, len(chunks[-1]), 4096):
                chunks[-1][j] = 1
        print('survived', flush=True)
        """
    )
    run = sandbox.run(code, memory_mb=128, time_limit_s=20)
    assert run.result.state == "failed", run.log
    assert run.result.reason == "killed: out of memory (limit 128 MiB)"
    assert "survived" not in run.log
    assert_clean(run)
    host_is_healthy()


def test_fork_bomb_is_contained(sandbox: Sandbox, assert_clean, cgroups_available: None) -> None:
    code = textwrap.dedent(
        """
        import os
        while True:
            try:
                os.fork()
            except OSError:
                pass
        """
    )
    run = sandbox.run(code, max_processes=32, time_limit_s=2)
    assert run.result.state == "timed_out", run.log
    assert run.result.reason == "exceeded time limit of 2 s (process limit of 32 reached)"
    assert_clean(run)
    host_is_healthy()


def test_fork_failure_is_reported_when_the_job_gives_up(sandbox: Sandbox, cgroups_available: None) -> None:
    code = textwrap.dedent(
        """
        import os, sys, time
        kids = 0
        try:
            while True:
                if os.fork() == 0:
                    time.sleep(30)
                    os._exit(0)
                kids += 1
        except OSError as e:
            print(f'fork failed after {kids}: {e}', flush=True)
            sys.exit(2)
        """
    )
    run = sandbox.run(code, max_processes=16, time_limit_s=10)
    assert run.result.state == "failed", run.log
    assert run.result.reason == "exited with code 2 (process limit of 16 reached)"
    assert "Resource temporarily unavailable" in run.log
    kids = int(run.log.split("fork failed after ")[1].split(":")[0])
    assert kids < 16


def test_output_quota_many_files(sandbox: Sandbox, assert_clean) -> None:
    # 128 KiB every 20 ms: /output is a file system of exactly the quota, so the write that
    # does not fit fails with ENOSPC and the job ends; nothing past the quota ever exists.
    code = textwrap.dedent(
        """
        import itertools, time
        for i in itertools.count():
            with open(f'/output/part{i:04d}.bin', 'wb') as f:
                f.write(b'x' * 128 * 1024)
            time.sleep(0.02)
        """
    )
    run = sandbox.run(code, output_limit_mb=2, time_limit_s=20)
    assert run.result.state == "failed", run.log
    assert run.result.reason == "output quota of 2 MiB exceeded"
    kept = list(run.spec.output_dir.iterdir())
    total = sum(p.stat().st_size for p in kept)
    assert "No space left on device" in run.log
    # What fitted stays for inspection: up to the quota, never more.
    assert 2 * 2**20 - 256 * 1024 <= total <= 2 * 2**20
    assert_clean(run)


def test_output_quota_single_large_file(sandbox: Sandbox) -> None:
    code = textwrap.dedent(
        """
        with open('/output/big.bin', 'wb') as f:
            for _ in range(80):
                f.write(b'x' * 65536)
        """
    )
    run = sandbox.run(code, output_limit_mb=1, time_limit_s=20)
    assert run.result.state == "failed", run.log
    assert run.result.reason == "output quota of 1 MiB exceeded"
    assert "No space left on device" in run.log  # the file system refused the write itself
    assert 2**20 - 256 * 1024 <= (run.spec.output_dir / "big.bin").stat().st_size <= 2**20


def test_sparse_output_counts_at_its_apparent_size(sandbox: Sandbox) -> None:
    """A sparse file costs the file system nothing but would be released at full size."""
    code = "f = open('/output/sparse.bin', 'wb'); f.seek(50 * 2**20); f.write(b'x'); f.close()"
    run = sandbox.run(code, output_limit_mb=1, time_limit_s=20)
    assert run.result.state == "failed", run.log
    assert run.result.reason == "output quota of 1 MiB exceeded"
    assert not (run.spec.output_dir / "sparse.bin").exists()


def test_cancellation_stops_the_job(sandbox: Sandbox, assert_clean) -> None:
    cancel = threading.Event()
    timer = threading.Timer(0.5, cancel.set)
    timer.start()
    t0 = time.monotonic()
    try:
        run = sandbox.run(
            "import time; time.sleep(60)", time_limit_s=30, control=RunControl(is_cancelled=cancel.is_set)
        )
    finally:
        timer.cancel()
    assert run.result.state == "cancelled"
    assert run.result.reason == "cancelled on request"
    assert time.monotonic() - t0 < 5
    assert_clean(run)


def test_rlimit_fallback_still_limits_memory_and_time(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture, assert_clean
) -> None:
    executor = LocalExecutor(use_cgroups=False, host_toolchain=True)
    with caplog.at_level(logging.WARNING, logger="tre.executors.local"):
        run: Run = sandbox.run(
            "x = bytearray(512 * 1024 * 1024); print('allocated')", executor=executor, memory_mb=256
        )
    assert "falling back to rlimits" in caplog.text
    assert run.result.state == "failed"
    assert "MemoryError" in run.log and "allocated" not in run.log
    assert "rlimit fallback" in run.log
    slow = sandbox.run("import time; time.sleep(30)", executor=executor, time_limit_s=1)
    assert slow.result.state == "timed_out"
    assert_clean(slow)


def test_sweep_removes_only_cgroups_of_dead_workers(cgroups_available: None) -> None:
    """A SIGKILLed worker leaves an empty job cgroup; the next worker removes it, and only it."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    limits = CgroupLimits(64 * 2**20, 8, 1.0)
    stale = create_job_cgroup(f"tre-sweep-{gone.pid}-aaaaaa", limits)
    ours = create_job_cgroup(f"tre-sweep-{os.getpid()}-bbbbbb", limits)
    busy = create_job_cgroup(f"tre-sweep-{gone.pid}-cccccc", limits)
    assert stale is not None and ours is not None and busy is not None
    sleeper = subprocess.Popen(
        [
            "sh",
            "-c",
            'for f in "$@"; do echo $$ > "$f"; done; exec sleep 30',
            "sh",
            *map(str, busy.procs_files),
        ]
    )
    try:
        deadline = time.monotonic() + 5
        while not busy.pids() and time.monotonic() < deadline:
            time.sleep(0.01)
        removed = sweep_stale()
        assert all(not d.exists() for d in stale._dirs())
        assert set(stale._dirs()) <= set(removed)
        assert all(d.exists() for d in ours._dirs())  # creator alive: might be about to be used
        assert all(d.exists() for d in busy._dirs())  # still has a process: rmdir refuses
    finally:
        sleeper.kill()
        sleeper.wait()
        assert ours.remove() and busy.remove()


def test_sweep_keeps_a_job_cgroup_whole_while_any_controller_holds_a_process(
    cgroups_available: None,
) -> None:
    """A process that has joined one controller's directory of a job cgroup but not yet the
    others (cgroup v1) keeps the whole group: removing the rest would leave it unlimited."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    group = create_job_cgroup(f"tre-sweep-{gone.pid}-dddddd", CgroupLimits(64 * 2**20, 8, 1.0))
    assert group is not None
    first = group.procs_files[0]
    sleeper = subprocess.Popen(["sh", "-c", 'echo $$ > "$1"; exec sleep 30', "sh", str(first)])
    try:
        deadline = time.monotonic() + 5
        while not first.read_text().split() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert first.read_text().split()
        removed = sweep_stale()
        assert all(d.exists() for d in group._dirs())
        assert not set(group._dirs()) & set(removed)
    finally:
        sleeper.kill()
        sleeper.wait()
        assert group.remove()


def test_millions_of_tiny_files_fill_tmp_and_shm_not_memory(sandbox: Sandbox, assert_clean) -> None:
    """Empty files cost kernel memory that a tmpfs size limit never sees: /tmp and /dev/shm
    bound their entries, so creating files ends in ENOSPC (and `disk full in /tmp`), not in
    the OOM killer (or, without a cgroup, in host memory the job was never given)."""
    code = textwrap.dedent(
        """
        import errno, json, os, sys
        out = {}
        for where in ('/dev/shm', '/tmp'):
            n = 0
            try:
                while n < 400_000:
                    os.close(os.open(f'{where}/f{n}', os.O_CREAT | os.O_WRONLY, 0o600))
                    n += 1
                out[where] = [n, 0]
            except OSError as exc:
                out[where] = [n, exc.errno]
            if where == '/dev/shm':
                for i in range(n):
                    os.unlink(f'{where}/f{i}')
        print(json.dumps(out), flush=True)
        sys.exit(1)
        """
    )
    run = sandbox.run(code, memory_mb=64)
    (out,) = run.json_lines()
    scratch = 32 * 2**20  # half the memory limit
    for where in ("/dev/shm", "/tmp"):
        made, err = out[where]
        assert err == errno.ENOSPC, (where, out, run.log)
        assert 0 < made <= stage.scratch_inodes(scratch), (where, made)
    assert run.result.state == "failed"
    assert run.result.reason == "disk full in /tmp"
    assert_clean(run)
