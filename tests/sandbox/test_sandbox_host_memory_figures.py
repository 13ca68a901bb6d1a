"""No file system of a job tells it how much memory the host has (redteam round 15).

A tmpfs mounted without a size or an entry count gets half the host's RAM as both, and
``statfs`` says so. Before: the sandbox's root (bubblewrap's own tmpfs), its /dev, the
masked /proc folders and the job's own /proc files (``--ro-bind-data`` writes them into
bubblewrap's tmpfs) answered 3,085,511 blocks and 3,085,511 inodes on a 24,684,092 kB host,
whose jobs' meminfo and ``sysinfo`` show their own 1 GiB limit; and /proc/self/mountinfo
listed the host's devtmpfs (``size=12334492k``), whose nodes ``--dev`` had bound. Now each is
a file system of the job's stage with a fixed size and entry count
(`tre.executors.stage.Stage.tree`, ``empty_dir``, ``data``) and /dev holds the job's own
nodes only.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.sandbox.conftest import Sandbox
from tests.sandbox.test_sandbox_image import image_sandbox, run_sh  # noqa: F401 - fixture

# Every mount point of the job, then its statfs figures: name, blocks, block size, inodes.
PROBE = "for m in $(cut -d' ' -f5 /proc/self/mountinfo); do stat -f -c 'fs %n %b %S %c' \"$m\"; done"


def _default_tmpfs_figures(tmp_path: Path) -> tuple[int, int]:
    """(blocks, inodes) of a tmpfs mounted with no size: what the host's RAM makes them."""
    where = tmp_path / "default-tmpfs"
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "tre-test", str(where)], check=True)
    try:
        st = os.statvfs(where)
        return st.f_blocks, st.f_files
    finally:
        subprocess.run(["umount", str(where)], check=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs to compare with needs root")
def test_no_mount_of_a_job_tells_the_hosts_memory(
    image_sandbox: tuple[Sandbox, Path],  # noqa: F811 - fixture
    tmp_path: Path,
) -> None:
    blocks, inodes = _default_tmpfs_figures(tmp_path)
    sandbox, rootfs = image_sandbox
    run = run_sh(sandbox, rootfs, PROBE + "; cat /proc/self/mountinfo", memory_mb=512)
    assert run.result.state == "succeeded", run.log
    figures = {}
    for line in run.log.splitlines():
        if line.startswith("fs "):
            _, name, b, _size, files = line.split()
            figures[name] = (int(b), int(files))
    assert {"/", "/dev", "/proc/meminfo", "/proc/cpuinfo", "/dev/null", "/tmp", "/output"} <= set(figures)
    leaking = {name: f for name, f in figures.items() if blocks in f or inodes in f}
    assert leaking == {}, (blocks, inodes, leaking)
    assert "devtmpfs" not in run.log
