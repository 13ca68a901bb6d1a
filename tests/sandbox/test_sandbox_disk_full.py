"""The platform's disk fills while the local executor records a job's log or outputs.

A real small tmpfs (as root) holds the job's folder. Before: a copy that found no room
failed the job as "sandbox setup failed" (a folder or an empty file that found none was
skipped, and the job could succeed with outputs missing), and a log that found no room
killed the log pump, so the job blocked on its full stdout pipe until its time limit. Now
the job ends failed at once with the API's fixed sentence (`reasons.STORAGE_FULL`), no
half copy is kept, and the worker keeps running.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sandbox.conftest import Sandbox
from tre.executors import reasons
from tre.executors.local import LocalExecutor
from tre.states import JobState


@pytest.fixture
def small_sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(small)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield Sandbox(small, LocalExecutor(images_dir=tmp_path / "images", host_toolchain=True))
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)


def _assert_storage_full(reason: str) -> None:
    assert reason.startswith(reasons.STORAGE_FULL), reason
    assert "/" not in reason.replace("(ref: ", "") and "Errno" not in reason


def test_outputs_that_find_no_room_fail_the_job_in_fixed_words(small_sandbox: Sandbox) -> None:
    """4 MiB of outputs (within the job's own 64 MiB quota) into 2 MiB of platform disk."""
    run = small_sandbox.run(
        "import os\n"
        "os.makedirs('/output/a/b')\n"
        "for i in range(4):\n"
        "    open(f'/output/a/b/f{i}', 'wb').write(os.urandom(1 << 20))\n"
        "print('wrote')\n",
        output_limit_mb=64,
    )
    assert run.result.state == JobState.failed, run.result
    _assert_storage_full(run.result.reason)
    assert list(run.spec.output_dir.iterdir()) == []  # no half copy kept


def test_a_log_that_finds_no_room_ends_the_job_without_waiting_for_its_time_limit(
    small_sandbox: Sandbox,
) -> None:
    """8 MiB printed (within the 16 MiB log cap) into 2 MiB of disk: the job must not block."""
    started = time.monotonic()
    run = small_sandbox.run(
        "import sys\nfor _ in range(128):\n    sys.stdout.write('x' * 65535 + '\\n')\nsys.stdout.flush()\n",
        time_limit_s=120,
    )
    assert time.monotonic() - started < 100, "the job waited for its time limit"
    assert run.result.state == JobState.failed, run.result
    _assert_storage_full(run.result.reason)


def test_the_same_job_succeeds_with_room(sandbox: Sandbox) -> None:
    run = sandbox.run(
        "import os\nos.makedirs('/output/a/b')\nopen('/output/a/b/f', 'wb').write(os.urandom(1 << 20))\n"
    )
    assert run.result.state == JobState.succeeded, run.result
    assert (run.spec.output_dir / "a" / "b" / "f").stat().st_size == 1 << 20
