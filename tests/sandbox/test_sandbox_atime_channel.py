"""A job's reads of a shared dataset do not show in another job's access times (round 13).

Two projects granted one dataset reach the same host files (through overlays of their own,
round 10). If a read updated the file's access time, the other job could watch ``st_atime``
of the dataset's files to learn which ones a job of another project read and when, or two
jobs could signal through it, with no lock, watch or write. The stage binds every source
read-only and overlayfs reaches its lower layer through that read-only mount, so no read
through a job's /data updates an access time: measured here with two real concurrent jobs
and the host's own view of the file.
"""

from __future__ import annotations

import os
import textwrap
import threading
import time
from pathlib import Path

from tests.sandbox.conftest import Run, Sandbox
from tre.executors.base import DatasetMount

WATCHER = textwrap.dedent(
    """
    import json, os, sys, time
    first = os.stat("/data/scan.dcm").st_atime_ns
    print(json.dumps({"ready": True}), flush=True)
    seen = set()
    end = time.monotonic() + float(sys.argv[1])
    while time.monotonic() < end:
        seen.add(os.stat("/data/scan.dcm").st_atime_ns)
        time.sleep(0.02)
    print(json.dumps({"first": first, "seen": sorted(seen)}), flush=True)
    """
)

READER = textwrap.dedent(
    """
    import os, time
    for _ in range(50):
        with open("/data/scan.dcm", "rb") as fh:
            fh.read()
        os.stat("/data/scan.dcm")
        time.sleep(0.02)
    print("reader done", flush=True)
    """
)


def test_reads_of_a_shared_dataset_leave_no_access_time(sandbox: Sandbox, tmp_path: Path) -> None:
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    scan = dataset / "scan.dcm"
    scan.write_bytes(b"DICM" * 1024)
    scan.chmod(0o644)
    dataset.chmod(0o755)
    old = 946_684_800  # 2000-01-01: older than mtime, so even relatime would update it
    os.utime(scan, (old, time.time()))
    mount = [DatasetMount("ct", host_path=dataset)]
    holder: dict[str, Run] = {}

    def watch() -> None:
        holder["run"] = sandbox.run(
            "", command=["python3", "-c", WATCHER, "4"], datasets=mount, time_limit_s=60
        )

    thread = threading.Thread(target=watch)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            logs = list(tmp_path.glob("*/log.txt"))
            if logs and '"ready"' in logs[0].read_text(errors="replace"):
                break
            time.sleep(0.05)
        reader = sandbox.run(READER, datasets=mount, time_limit_s=60)
    finally:
        thread.join()
    assert reader.result.exit_code == 0 and "reader done" in reader.log, reader.log
    run = holder["run"]
    assert run.result.exit_code == 0, run.log
    lines = {k: v for line in run.json_lines() for k, v in line.items()}
    assert lines["seen"] == [lines["first"]] == [old * 10**9], lines
    assert scan.stat().st_atime == old  # the host's view: no job's read touched it
    scan.read_bytes()  # while a read on the host does: the file system keeps access times
    assert scan.stat().st_atime != old
