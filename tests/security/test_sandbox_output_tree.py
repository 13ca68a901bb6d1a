"""The same hostile output tree, written by a real job in the bubblewrap sandbox."""

from __future__ import annotations

import shutil
import stat
import uuid
from pathlib import Path

import pytest

from tre.executors import fstree
from tre.executors.base import JobSpec, RunControl
from tre.executors.local import LocalExecutor
from tre.jobs.outputs import scan_outputs

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")

JOB = r"""
import os
os.chdir("/output")
open("result.csv", "w").write("group,count\na,20\n")
open(b"bad-\xff.csv", "wb").write(b"x")
os.mkdir("deep"); os.chdir("deep")
for _ in range(2200):
    os.mkdir("a"); os.chdir("a")
with open("suid", "wb") as fh:
    fh.write(b"#!/bin/sh\n")
try:
    os.chmod("suid", 0o4755)
except PermissionError:
    print("setuid refused", flush=True)
print("done", flush=True)
"""


def test_deep_tree_from_a_real_job_fails_the_job_and_is_defused(tmp_path: Path, cleanup_deep) -> None:  # type: ignore[no-untyped-def]
    job_dir = cleanup_deep(tmp_path / uuid.uuid4().hex[:12])
    spec = JobSpec(
        job_id=job_dir.name,
        project_id="p1",
        image="tre/python:3.11",
        command=["python3", "-c", JOB],
        datasets=[],
        output_dir=job_dir / "output",
        log_path=job_dir / "log.txt",
        time_limit_s=60,
    )
    result = LocalExecutor(images_dir=tmp_path / "images", host_toolchain=True).run(spec, RunControl())
    # The watchdog ends the job as soon as it sees the nesting (or right after it exits).
    assert result.state == "failed" and "deeper than" in result.reason, (result, spec.log_path.read_text())
    assert not [e for e in fstree.walk(spec.output_dir) if e.st.st_mode & (stat.S_ISUID | stat.S_ISGID)]
    assert [p for p, _, _ in scan_outputs(spec.output_dir)] == ["result.csv"]
