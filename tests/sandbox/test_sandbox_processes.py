"""Adversarial runs against the process boundary of the local sandbox: a job that signals
everything it can, or leaves a daemon behind, touches nothing outside its own sandbox."""

from __future__ import annotations

import pwd
import shutil
import subprocess
import textwrap

import pytest

from tests.sandbox.conftest import Sandbox


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
        run = sandbox.run(code, time_limit_s=20)
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
