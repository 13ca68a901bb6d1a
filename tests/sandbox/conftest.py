"""Fixtures for the local sandbox tests: real bubblewrap, real cgroups, no mocks.

Every job command carries a unique marker in its argv so that a test can prove that no
process of the job is left on the host afterwards, and the job id is part of the cgroup
name so a test can prove that no cgroup is left either.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tre.executors.base import DatasetMount, JobResult, JobSpec, RunControl
from tre.executors.local import LocalExecutor
from tre.states import JobState

if shutil.which("bwrap") is None:
    if os.environ.get("CI"):
        raise RuntimeError("bubblewrap missing in CI: scripts/install-system-deps must install it")
    pytest.skip(
        "bubblewrap (bwrap) is not installed; run scripts/install-system-deps", allow_module_level=True
    )


def processes_with(marker: str) -> list[int]:
    """Host pids whose command line mentions ``marker`` (sandboxed processes included)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    found.append(int(entry))
        except OSError:
            continue
    return found


def cgroups_with(name_part: str) -> list[str]:
    """Cgroup directories anywhere under /sys/fs/cgroup whose name contains ``name_part``."""
    hits = []
    for dirpath, dirnames, _files in os.walk("/sys/fs/cgroup"):
        hits += [os.path.join(dirpath, d) for d in dirnames if name_part in d]
    return hits


@dataclass
class Run:
    spec: JobSpec
    result: JobResult
    log: str
    marker: str
    started_refs: list[str] = field(default_factory=list)
    heartbeats: int = 0

    def json_lines(self) -> list[dict]:
        """The job's ``print(json.dumps(...))`` lines from the log."""
        return [json.loads(line) for line in self.log.splitlines() if line.startswith("{")]


@dataclass
class Sandbox:
    tmp: Path
    executor: LocalExecutor

    def run(
        self,
        code: str,
        *,
        datasets: list[DatasetMount] | None = None,
        control: RunControl | None = None,
        command: list[str] | None = None,
        executor: LocalExecutor | None = None,
        **limits: object,
    ) -> Run:
        marker = f"tre-test-{uuid.uuid4().hex}"
        job_id = uuid.uuid4().hex[:12]
        job_dir = self.tmp / job_id
        spec = JobSpec(
            job_id=job_id,
            project_id="p1",
            image=str(limits.pop("image", "tre/python:3.11")),
            command=command if command is not None else ["python", "-c", code, marker],
            datasets=datasets or [],
            output_dir=job_dir / "output",
            log_path=job_dir / "log.txt",
            **limits,  # type: ignore[arg-type]
        )
        run = Run(spec, JobResult(JobState.failed, None, "not run yet"), "", marker)
        base = control or RunControl()

        def on_started(ref: str) -> None:
            run.started_refs.append(ref)
            base.on_started(ref)

        def heartbeat() -> None:
            run.heartbeats += 1
            base.heartbeat()

        ctl = RunControl(is_cancelled=base.is_cancelled, on_started=on_started, heartbeat=heartbeat)
        run.result = (executor or self.executor).run(spec, ctl)
        run.log = spec.log_path.read_text(errors="replace")  # a job may print any bytes
        return run


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    """A sandbox in the host-toolchain developer mode, enabled explicitly: most of these
    tests run Python job code, and the host's interpreter is the one at hand. The tests in
    ``test_sandbox_image.py`` run jobs in a real image root file system instead."""
    return Sandbox(tmp_path, LocalExecutor(images_dir=tmp_path / "images", host_toolchain=True))


@pytest.fixture
def assert_clean() -> Callable[[Run], None]:
    """After a run: no process of the job and no cgroup of the job remain on the host."""

    def check(run: Run) -> None:
        assert processes_with(run.marker) == []
        assert cgroups_with(f"tre-{run.spec.job_id}-") == []

    return check
