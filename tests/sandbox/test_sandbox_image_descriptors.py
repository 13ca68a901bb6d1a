"""No descriptor of the worker reaches a job in an image either.

Redteam round 10: the host-descriptor test ran in the host-toolchain mode only. In an image
the worker still opened the generated /etc/passwd, group and hosts (memfds bubblewrap reads
only in the host-toolchain mode) and passed them to the launcher, so they reached the job
read-write at /proc/self/fd/4-6 and through bubblewrap's init. Now the launcher gets only the
descriptors bubblewrap's command line names, and those files are made only when used.
"""

from __future__ import annotations

from pathlib import Path

from tests.sandbox.conftest import Sandbox
from tests.sandbox.test_sandbox_image import image_sandbox  # noqa: F401 - fixture
from tre.executors.base import ImageConfig
from tre.executors.local import _fds_named

LIST_FDS = 'for p in self 1; do for f in /proc/$p/fd/*; do l=$(readlink "$f") && echo "fd $p $l"; done; done'


def test_an_image_job_inherits_no_descriptor_of_the_worker(
    image_sandbox: tuple[Sandbox, Path],  # noqa: F811 - fixture
) -> None:
    sandbox, rootfs = image_sandbox
    run = sandbox.run(
        "", command=["sh", "-c", LIST_FDS], rootfs=rootfs, image_config=ImageConfig(env={"PATH": "/bin"})
    )
    assert run.result.state == "succeeded", run.log
    links = [line.split(" ", 2)[2] for line in run.log.splitlines() if line.startswith("fd ")]
    assert links, run.log
    for link in links:
        # The null device, the log pipe, bubblewrap's eventfd, the listing's own folder.
        assert link == "/dev/null" or link.startswith(("pipe:", "anon_inode:", "/proc/")), link


def test_only_descriptors_named_on_bwraps_command_line_are_passed() -> None:
    argv = [
        "/usr/bin/prlimit", "--core=0", "--", "/usr/bin/bwrap", "--ro-bind-data", "5", "/etc/passwd",
        "--file", "8", "/tmp/x", "--seccomp", "3", "--block-fd", "7", "--clearenv",
        "--setenv", "N", "--file", "--setenv", "M", "6", "--", "sh", "--file", "9",
    ]  # fmt: skip
    held = [3, 4, 5, 6, 7, 8, 9]
    # What follows --clearenv (environment, the job's command) is the job's: it names nothing.
    assert _fds_named(argv, held) == (3, 5, 7, 8)
    assert _fds_named(["bwrap", "--file", "4", "/tmp/x"], [4]) == ()  # no --clearenv: nothing
