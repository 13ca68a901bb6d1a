"""Adversarial runs against the process boundary of the local sandbox: a job that signals
everything it can, or leaves a daemon behind, touches nothing outside its own sandbox."""

from __future__ import annotations

import errno
import os
import pwd
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.sandbox.conftest import Sandbox
from tre.executors.jobuids import UidRange
from tre.executors.local import LocalExecutor


def test_kill_minus_one_reaches_no_host_process_of_the_job_user(sandbox: Sandbox, assert_clean) -> None:
    """Every job runs as the host user ``tre-job``; without its own pid namespace a job's
    ``kill(-1, SIGKILL)`` would kill every other job (and their sandboxes) of that user."""
    try:
        job_user = pwd.getpwnam(sandbox.executor.job_user)
    except KeyError:
        pytest.skip("the job user does not exist here; run scripts/install-system-deps")
    setpriv = shutil.which("setpriv")
    assert setpriv is not None
    victim = subprocess.Popen(
        [setpriv, f"--reuid={job_user.pw_uid}", f"--regid={job_user.pw_gid}", "--clear-groups",
         "sleep", "60"]
    )  # fmt: skip
    try:
        code = textwrap.dedent(
            """
            import os, signal
            try:
                os.kill(-1, signal.SIGKILL)
                print('signalled')
            except ProcessLookupError:
                print('nobody to signal')
            """
        )
        # The job user's own uid (a uid range of 0): the pid namespace alone must keep the
        # victim out of reach, not the per-job uid (tre.executors.jobuids) that would also.
        shared = LocalExecutor(
            images_dir=sandbox.tmp / "images", host_toolchain=True, uid_range=UidRange(count=0)
        )
        run = sandbox.run(code, time_limit_s=20, executor=shared)
        assert victim.poll() is None, "the job killed a host process of its own user"
    finally:
        victim.kill()
        victim.wait()
    # kill(-1) spares the caller and its namespace's init: nothing else is in its reach.
    assert run.result.state == "succeeded", run.log
    assert "nobody to signal" in run.log
    assert_clean(run)


def test_a_daemon_left_behind_dies_with_the_job(sandbox: Sandbox, assert_clean) -> None:
    """A double-forked, setsid'd child that outlives the job's main process is killed when
    the job ends (its pid namespace goes with bubblewrap's init), not left running on the host."""
    code = textwrap.dedent(
        """
        import os, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                os.close(1); os.close(2)
                time.sleep(60)
            os._exit(0)
        os.wait()
        print('parent done', flush=True)
        """
    )
    run = sandbox.run(code, time_limit_s=20)
    assert run.result.state == "succeeded", run.log
    assert "parent done" in run.log
    assert_clean(run)


def test_the_job_cannot_signal_its_own_sandbox_init_to_death(sandbox: Sandbox) -> None:
    """bubblewrap's init is pid 1 of the job's namespace: signals from inside are ignored
    (the kernel protects a namespace's init), so the job cannot end it early to skip the
    supervision or its exit status."""
    code = "import os, signal; os.kill(1, signal.SIGKILL); os.kill(1, signal.SIGTERM); print('alive')"
    run = sandbox.run(code)
    assert run.result.state == "succeeded", run.log
    assert "alive" in run.log


def test_a_flood_of_binary_log_output_is_capped_on_disk(sandbox: Sandbox, tmp_path: Path) -> None:
    """A job that writes megabytes of NUL bytes, invalid UTF-8 and terminal escapes without a
    newline, then closes stdout and stderr and carries on, leaves a log no larger than the cap
    (plus the worker's own lines), and ends with its own exit status."""
    limit = 64 * 1024
    executor = LocalExecutor(images_dir=tmp_path / "images", host_toolchain=True, log_limit_bytes=limit)
    code = textwrap.dedent(
        """
        import os
        chunk = b'\\x00\\xff\\xfe\\x1b[2J\\x1b]0;pwned\\x07' * 4096
        for _ in range(200):
            os.write(1, chunk)
        os.close(1); os.close(2)
        try:
            os.open('/dev/tty', os.O_WRONLY)
        except OSError:
            pass
        os._exit(3)
        """
    )
    run = sandbox.run(code, executor=executor)
    assert run.result.state == "failed" and run.result.reason == "exited with code 3", run.log
    size = run.spec.log_path.stat().st_size
    assert limit < size <= limit + 1024  # the header, the truncation line and the result line
    assert "[tre] log truncated" in run.log


def test_no_host_descriptor_reaches_the_job_or_its_init(sandbox: Sandbox, tmp_path: Path) -> None:
    """A descriptor the worker holds (the database, a key file, the job's own log) must not be
    inherited into the sandbox, where ``/proc/self/fd`` or bubblewrap's init (``/proc/1/fd``,
    readable by the job: same user) would hand it over. Even one marked inheritable stays out."""
    secret = tmp_path / "worker-secret.key"
    secret.write_text("k")
    held = os.open(secret, os.O_RDONLY)
    os.set_inheritable(held, True)
    code = textwrap.dedent(
        """
        import json, os
        out = {}
        for pid in ('self', '1'):
            links = []
            for fd in os.listdir(f'/proc/{pid}/fd'):
                try:
                    links.append(os.readlink(f'/proc/{pid}/fd/{fd}'))
                except OSError:
                    pass  # the listing's own descriptor, closed by now
            out[pid] = links
        print(json.dumps(out))
        """
    )
    try:
        run = sandbox.run(code)
    finally:
        os.close(held)
    assert run.result.state == "succeeded", run.log
    (out,) = run.json_lines()
    for pid in ("self", "1"):
        for link in out[pid]:
            # Only the null device, the log pipe, the listing itself and bubblewrap's eventfd.
            assert link == "/dev/null" or link.startswith(("pipe:", "anon_inode:", "/proc/")), (pid, link)


def test_no_nested_user_namespace_through_clone(sandbox: Sandbox) -> None:
    """seccomp refuses ``unshare``, but ``clone`` (and ``clone3``) take namespace flags too: a
    new user namespace would give the job a full capability set inside it, the usual first
    step of a kernel exploit. bubblewrap's ``--disable-userns`` caps the count at zero."""
    if os.uname().machine != "x86_64":
        pytest.skip("the clone syscall number below is x86_64's")
    code = textwrap.dedent(
        """
        import ctypes, json, os
        libc = ctypes.CDLL(None, use_errno=True)
        out = {}
        for name, flag in (('user', 0x10000000), ('net', 0x40000000), ('mount', 0x00020000)):
            rc = libc.syscall(56, flag | 17, 0, 0, 0, 0)  # clone(flag | SIGCHLD)
            if rc == 0:
                os._exit(0)
            out[name] = [rc, ctypes.get_errno()]
        print(json.dumps(out))
        """
    )
    run = sandbox.run(code)
    assert run.result.state == "succeeded", run.log
    (out,) = run.json_lines()
    assert out["user"] == [-1, errno.ENOSPC], out  # no user namespace may be made at all
    for name in ("net", "mount"):
        assert out[name] == [-1, errno.EPERM], out  # the others need capabilities the job lacks
