"""A job's output tree is hostile input for the control plane.

Research code decides what lies under /output: names that are not UTF-8 or carry control
characters, folders nested deeper than Python's recursion limit and PATH_MAX, symlinks to
host files, FIFOs, setuid bits. Before the fix a non-UTF-8 name or a deep tree made
``record_outputs`` raise, which left the job "running" for ever and crashed every restarted
worker on it (recover_orphans -> _finish), and ``strip_special_modes`` gave up part-way,
leaving a setuid bit on a host file.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from sqlalchemy import select

from tre import registry
from tre.executors import fstree
from tre.executors.base import Executor, JobResult, JobSpec, RunControl
from tre.executors.local import output_size, strip_special_modes
from tre.jobs.outputs import record_outputs, scan_outputs
from tre.jobs.worker import Worker
from tre.states import JobState
from tre.store.db import session_scope
from tre.store.models import Job, JobOutput, Project

DEEP = 2200  # "a/" * 2200 is longer than PATH_MAX (4096) and deeper than the recursion limit


def make_deep(
    root: Path, levels: int = DEEP, leaf: tuple[str, bytes] | None = None, leaf_mode: int | None = None
) -> None:
    """Nest ``levels`` folders named ``a`` under ``root`` (relative opens, as a job would)."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(levels):
            os.mkdir("a", dir_fd=fd)
            sub = os.open("a", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = sub
        if leaf is not None:
            name, data = leaf
            ffd = os.open(name, os.O_WRONLY | os.O_CREAT, 0o755, dir_fd=fd)
            os.write(ffd, data)
            if leaf_mode is not None:
                os.fchmod(ffd, leaf_mode)
            os.close(ffd)
    finally:
        os.close(fd)


def hostile_tree(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "summary.csv").write_text("group,count\na,20\n")
    (root / "figs").mkdir()
    (root / "figs" / "plot.png").write_bytes(b"png")
    with open(os.path.join(os.fsencode(root), b"latin1-\xe9.csv"), "wb") as fh:
        fh.write(b"x")
    (root / "two\nlines.csv").write_text("y")
    (root / "esc\x1b[31mred.txt").write_text("z")
    (root / "report\u202etxt.exe").write_text("bidi")
    os.symlink("/etc/passwd", root / "passwd-link")
    os.mkfifo(root / "fifo")
    (root / "deep").mkdir()
    make_deep(root / "deep", leaf=("hidden.csv", b"deep"))


def test_scan_survives_hostile_names_depth_links_and_fifos(tmp_path: Path, cleanup_deep) -> None:  # type: ignore[no-untyped-def]
    out = cleanup_deep(tmp_path / "output")
    hostile_tree(out)
    paths = [p for p, _size, _sha in scan_outputs(out)]
    assert paths == ["figs/plot.png", "summary.csv"]


def test_record_outputs_with_hostile_tree_does_not_raise(engine, tmp_path: Path, cleanup_deep) -> None:  # type: ignore[no-untyped-def]
    out = cleanup_deep(tmp_path / "output")
    hostile_tree(out)
    with session_scope(engine) as s:
        registry.create_user(s, "test", "u1", ["researcher"])
        s.add(Project(id="p", name="p"))
        s.flush()
        job = Job(
            project_id="p", submitted_by="u1", image="i", command=["x"], dataset_ids=[], state="running"
        )
        s.add(job)
        s.flush()
        rows = record_outputs(s, job.id, out)
        assert sorted(r.path for r in rows) == ["figs/plot.png", "summary.csv"]


def test_long_path_is_not_recorded(tmp_path: Path) -> None:
    out = tmp_path / "output"
    folder = out / ("d" * 200) / ("e" * 200) / ("f" * 200) / ("g" * 200) / ("h" * 200)
    folder.mkdir(parents=True)
    (folder / ("x" * 100)).write_text("1")
    (out / "ok.txt").write_text("2")
    assert [p for p, _, _ in scan_outputs(out)] == ["ok.txt"]


def test_setuid_bit_deep_in_the_tree_is_cleared(tmp_path: Path, cleanup_deep) -> None:  # type: ignore[no-untyped-def]
    out = cleanup_deep(tmp_path / "output")
    out.mkdir()
    make_deep(out, leaf=("suid", b"#!/bin/sh\n"), leaf_mode=0o4755)
    (out / "top").write_text("x")
    os.chmod(out / "top", 0o2755)
    assert strip_special_modes(out) == 2
    remaining = [e for e in fstree.walk(out) if e.st.st_mode & (stat.S_ISUID | stat.S_ISGID)]
    assert remaining == []


def test_output_size_counts_files_beyond_path_max(tmp_path: Path, cleanup_deep) -> None:  # type: ignore[no-untyped-def]
    out = cleanup_deep(tmp_path / "output")
    out.mkdir()
    make_deep(out, leaf=("big", b"\0" * 5000))
    assert output_size(out) == 5000
    usage = fstree.usage(out)
    assert usage.depth == DEEP + 1 and usage.entries == DEEP + 1


class TreeWritingExecutor(Executor):
    """Stands in for a sandbox whose job left a hostile tree in /output."""

    name = "local"

    def run(self, spec: JobSpec, control: RunControl) -> JobResult:
        hostile_tree(spec.output_dir)
        return JobResult(JobState.succeeded, 0, "exited with code 0")


def test_worker_ends_the_job_and_keeps_running(engine, settings, cleanup_deep) -> None:  # type: ignore[no-untyped-def]
    cleanup_deep(settings.jobs_dir)
    with session_scope(engine) as s:
        registry.create_user(s, "test", "u1", ["researcher"])
        s.add(Project(id="p", name="p"))
        s.flush()
        first = Job(
            project_id="p",
            submitted_by="u1",
            image="i",
            command=["x"],
            dataset_ids=[],
            state="queued",
            executor="local",
        )
        second = Job(
            project_id="p",
            submitted_by="u1",
            image="i",
            command=["x"],
            dataset_ids=[],
            state="queued",
            executor="local",
        )
        s.add_all([first, second])
        s.flush()
        ids = [first.id, second.id]
    worker = Worker(settings, engine, executor=TreeWritingExecutor(), concurrency=1)
    try:
        worker.run_until_idle(timeout_s=60)
        for fut in worker._running.values():
            assert fut.exception() is None
    finally:
        worker._pool.shutdown(wait=True)
    with session_scope(engine) as s:
        for job_id in ids:
            job = s.get(Job, job_id)
            assert job is not None and job.state == "succeeded", (job.state, job.reason)
            assert "were not recorded" in job.reason
            paths = sorted(s.scalars(select(JobOutput.path).where(JobOutput.job_id == job_id)))
            assert paths == ["figs/plot.png", "summary.csv"]


@pytest.mark.parametrize("name", ["ok.csv", "sub/dir/ok.csv", "naïve-résumé.csv", "with space.csv"])
def test_ordinary_names_are_still_recorded(tmp_path: Path, name: str) -> None:
    out = tmp_path / "output"
    (out / name).parent.mkdir(parents=True, exist_ok=True)
    (out / name).write_text("1")
    assert [p for p, _, _ in scan_outputs(out)] == [name]
