"""What a worker that died leaves on its machine, cleaned for real: loop-mounted output file
systems (also when the worker died half-way through copying them out), their image files,
scratch folders and job cgroups; and a live worker's are never touched, even when a dead
worker's pid has since been reused by a live process (pid + start time, not pid alone)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tre.executors import liveness, outputfs
from tre.executors.cgroups import CgroupLimits, create_job_cgroup, stale_job_cgroups, sweep_stale

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting needs root")

BIG = bytes(range(256)) * 4096  # 1 MiB


def _own_start() -> int:
    start = liveness.process_start(os.getpid())
    assert start is not None
    return start


def _dead_owner_tag() -> str:
    """A creator that is gone although its pid is alive: our pid, another start time (what a
    reused pid looks like)."""
    return f"{os.getpid()}.{_own_start() + 1}"


def _make_job(root: Path, job: str, owner_tag: str) -> tuple[Path, Path]:
    """A job folder as the local executor leaves it mid-job: the output file system mounted
    on ``output``, its image in the scratch folder, files written into it."""
    job_dir = root / job
    output = job_dir / "output"
    output.mkdir(parents=True)
    scratch = job_dir / f".sandbox-{owner_tag}-0123abcd"
    scratch.mkdir(mode=0o700)
    outputfs.make_image(scratch / "output.ext4", 8 * 2**20, 0, 0)
    outputfs.mount_image(scratch / "output.ext4", output)
    (output / "sub").mkdir()
    (output / "sub" / "big.bin").write_bytes(BIG)
    (output / "note.txt").write_text("half done")
    return output, scratch


def _mounts_under(root: Path) -> list[str]:
    prefix = str(root)
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    return [line.split()[4] for line in lines if line.split()[4].startswith(prefix)]


@pytest.fixture
def jobs_root(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "jobs"
    root.mkdir()
    yield root
    for target in sorted(_mounts_under(root), key=len, reverse=True):  # a failed test's mounts
        subprocess.run(["umount", "-l", target], check=False)
    shutil.rmtree(root, ignore_errors=True)


def _tree(output: Path) -> dict[str, str]:
    return {
        str(p.relative_to(output)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(output.rglob("*"))
        if p.is_file()
    }


EXPECTED = {
    "note.txt": hashlib.sha256(b"half done").hexdigest(),
    "sub/big.bin": hashlib.sha256(BIG).hexdigest(),
}


def test_a_dead_workers_mount_is_recovered_even_when_its_pid_lives_again(jobs_root: Path) -> None:
    dead_output, dead_scratch = _make_job(jobs_root, "job-dead", _dead_owner_tag())
    live_output, live_scratch = _make_job(jobs_root, "job-live", liveness.owner_tag())

    recovered = outputfs.recover_stale([jobs_root], os.getuid(), os.getgid())

    assert recovered == [dead_output]
    assert not outputfs.is_mount_point(dead_output) and not dead_scratch.exists()
    assert _tree(dead_output) == EXPECTED
    # The live worker's job (same pid, its own start time) is left exactly as it was.
    assert outputfs.is_mount_point(live_output) and (live_scratch / "output.ext4").exists()
    assert _mounts_under(jobs_root) == [str(live_output)]


def test_a_copy_cut_short_by_the_crash_is_made_again_whole(jobs_root: Path) -> None:
    """The worker died inside `collect`: the output unmounted, the read-only view still
    mounted in the scratch folder, half a file copied. Recovery must not keep the half file."""
    output, scratch = _make_job(jobs_root, "job-cut", _dead_owner_tag())
    view = scratch / "view"
    view.mkdir()
    subprocess.run(["mount", "--bind", "-o", "ro", str(output), str(view)], check=True)
    outputfs.unmount(output)
    (output / "sub").mkdir()
    (output / "sub" / "big.bin").write_bytes(BIG[: len(BIG) // 3])  # the crash came here

    assert [left.copy_interrupted for left in outputfs.find_leftovers([jobs_root])] == [True]
    recovered = outputfs.recover_stale([jobs_root], os.getuid(), os.getgid())

    assert recovered == [output]
    assert _tree(output) == EXPECTED
    assert _mounts_under(jobs_root) == [] and not scratch.exists()


def test_killed_between_the_view_and_the_unmount(jobs_root: Path) -> None:
    output, scratch = _make_job(jobs_root, "job-both", _dead_owner_tag())
    view = scratch / "view"
    view.mkdir()
    subprocess.run(["mount", "--bind", "-o", "ro", str(output), str(view)], check=True)

    assert outputfs.recover_stale([jobs_root], os.getuid(), os.getgid()) == [output]
    assert _tree(output) == EXPECTED
    assert _mounts_under(jobs_root) == [] and not scratch.exists()


def test_leftover_without_a_mount_is_removed_and_old_names_still_understood(jobs_root: Path) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    job_dir = jobs_root / "job-old"
    (job_dir / "output").mkdir(parents=True)
    (job_dir / "output" / "kept.txt").write_text("kept")
    old_style = job_dir / f".sandbox-{gone.pid}-89abcdef"  # a name from before start times
    (old_style / "half").mkdir(parents=True)
    ours_old_style = job_dir / f".sandbox-{os.getpid()}-fedcba98"  # pid alive: kept

    ours_old_style.mkdir()
    assert outputfs.recover_stale([jobs_root], os.getuid(), os.getgid()) == []
    assert not old_style.exists() and ours_old_style.exists()
    assert (job_dir / "output" / "kept.txt").read_text() == "kept"


def test_stale_cgroups_of_a_reused_pid_are_swept() -> None:
    limits = CgroupLimits(64 * 2**20, 8, 1.0)
    stale = create_job_cgroup(f"tre-reuse-{_dead_owner_tag()}-aaaaaa", limits)
    if stale is None:
        pytest.skip("no writable cgroup (v1 or v2) on this host")
    ours = create_job_cgroup(f"tre-reuse-{liveness.owner_tag()}-bbbbbb", limits)
    assert ours is not None
    try:
        names = set(stale_job_cgroups())
        assert stale._dirs()[0].name in names and ours._dirs()[0].name not in names
        removed = sweep_stale()
        assert set(stale._dirs()) <= set(removed)
        assert all(d.exists() for d in ours._dirs())
    finally:
        assert ours.remove()
        stale.remove()


def test_owner_tag_reads_this_process() -> None:
    pid, _, start = liveness.owner_tag().partition(".")
    assert int(pid) == os.getpid() and liveness.owner_alive(int(pid), int(start))
    assert not liveness.owner_alive(int(pid), int(start) + 1)
    gone = subprocess.Popen(["true"])
    gone.wait()
    assert not liveness.owner_alive(gone.pid, None)
