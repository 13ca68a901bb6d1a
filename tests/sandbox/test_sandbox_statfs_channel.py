"""A job cannot read the host's free space through its read-only folders (redteam round 11).

Each read-only folder (dataset, code, inputs, each top-level entry of the image root) reaches
the job through a read-only overlay of its own (round 10). overlayfs answers ``statfs`` from
its topmost layer, which was the bound host folder: a job's ``os.statvfs("/data")`` returned
the *host* file system's free blocks and free inodes, live. That file system usually also
holds tre's state (other jobs' /output images as they fill, their logs, code unpacks, image
imports), so a job could watch other projects' jobs write (how much, when) and two
concurrent jobs could signal each other through it (one writes and deletes a file, the
other reads the counter), with no lock or inode shared. Now the overlay's topmost layer is
an empty folder on the job's own sealed stage tmpfs (same owner, mode and times as the
folder it covers), so ``statfs`` answers the stage's fixed figures.
"""

from __future__ import annotations

import json
import os
import textwrap
import threading
import time
from pathlib import Path

from tests.sandbox.conftest import Run, Sandbox
from tests.sandbox.test_sandbox_image import image_sandbox, run_sh  # noqa: F401 - fixture
from tre.executors.base import DatasetMount

SAMPLER = textwrap.dedent(
    """
    import json, os, sys, time
    paths = json.loads(sys.argv[1])
    def sample():
        out = {}
        for p in paths:
            s = os.statvfs(p)
            out[p] = [s.f_blocks, s.f_bfree, s.f_bavail, s.f_files, s.f_ffree]
        return out
    first = sample()
    print(json.dumps({"first": first}), flush=True)
    changed = {}
    end = time.monotonic() + float(sys.argv[2])
    while time.monotonic() < end:
        now = sample()
        for p in paths:
            if now[p] != first[p]:
                changed[p] = now[p]
        time.sleep(0.05)
    print(json.dumps({"changed": changed}), flush=True)
    st = os.stat("/data")
    print(json.dumps({"data_mode": oct(st.st_mode & 0o7777), "listing": sorted(os.listdir("/data"))}))
    """
)


def _host_figures(path: Path) -> list[int]:
    s = os.statvfs(path)
    return [s.f_blocks, s.f_bfree, s.f_bavail, s.f_files, s.f_ffree]


def test_free_space_of_the_host_is_not_a_counter_the_job_reads(sandbox: Sandbox, tmp_path: Path) -> None:
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    (dataset / "scan.dcm").write_bytes(b"DICM")
    (dataset / "scan.dcm").chmod(0o644)
    dataset.chmod(0o750)
    os.chown(dataset, 0, sandbox.executor.job_host_ids()[1])
    code = tmp_path / "code"
    code.mkdir()
    (code / "main.py").write_text("print('hi')\n")
    code.chmod(0o755)
    paths = ["/data", "/code"]
    holder: dict[str, Run] = {}

    def job() -> None:
        holder["run"] = sandbox.run(
            "",
            command=["python3", "-c", SAMPLER, json.dumps(paths), "4"],
            datasets=[DatasetMount("ct", host_path=dataset)],
            code_dir=code,
            time_limit_s=60,
        )

    thread = threading.Thread(target=job)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            logs = list(tmp_path.glob("*/log.txt"))
            if logs and '"first"' in logs[0].read_text(errors="replace"):
                break
            time.sleep(0.05)
        # What another job's /output, a log or an import does to the host's file system:
        # 32 MiB and 200 files appear on it, then go.
        noise = tmp_path / "noise"
        noise.mkdir()
        with open(noise / "big", "wb") as fh:
            fh.write(os.urandom(32 * 1024 * 1024))
            fh.flush()
            os.fsync(fh.fileno())
        for i in range(200):
            (noise / f"f{i}").write_bytes(b"x")
        os.sync()
        time.sleep(1.0)
        host_during = _host_figures(dataset)
    finally:
        thread.join()
    run = holder["run"]
    assert run.result.exit_code == 0, run.log
    lines = {k: v for line in run.json_lines() for k, v in line.items()}
    first = lines["first"]
    # The job's figures did not move while the host's did, and they are not the host's.
    assert lines["changed"] == {}, (first, lines["changed"])
    for path in paths:
        assert first[path] != host_during, (path, first[path], host_during)
        assert first[path][0] != _host_figures(dataset)[0], path  # not even the host's size
    # The folder itself is unchanged for the job: same mode, same entries.
    assert lines["data_mode"] == "0o750"
    assert lines["listing"] == ["scan.dcm"]


def test_an_image_jobs_folders_show_no_host_figures(
    image_sandbox: tuple[Sandbox, Path],  # noqa: F811 - fixture
    tmp_path: Path,
) -> None:
    """The image root's entries are staged the same way: busybox's ``stat -f`` on /bin (the
    image) and /data answers the stage's figures, not those of the host file system holding
    the image store."""
    sandbox, rootfs = image_sandbox
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    (dataset / "a.dcm").write_bytes(b"DICM")
    dataset.chmod(0o755)
    script = "for p in /bin /data; do stat -f -c '%b %f %c %d' $p; done"
    run = run_sh(sandbox, rootfs, script, datasets=[DatasetMount("ct", host_path=dataset)])
    assert run.result.exit_code == 0, run.log
    host = os.statvfs(rootfs)
    figures = [line.split() for line in run.log.splitlines() if line and line[0].isdigit()]
    assert len(figures) == 2, run.log
    for blocks, _free, _files, _ffree in figures:
        assert int(blocks) != host.f_blocks
