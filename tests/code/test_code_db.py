"""The store side of code on SQLite and PostgreSQL: uploads per project, admission of a job's
code, the hash on the job, in the worker's JobSpec and in the disclosure record."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from egress_review.disclosure import build_record
from tests.code.hostile import file, targz
from tre import registry
from tre.auth.principal import Principal
from tre.code import service
from tre.code.archive import CodeLimits
from tre.code.store import CodeStore
from tre.config import Settings
from tre.errors import AdmissionDenied
from tre.executors.base import Executor, JobResult, JobSpec, RunControl
from tre.jobs.worker import Worker
from tre.store.db import session_scope
from tre.store.models import CodeArchive, CodeUpload, EgressRequest, Job, Project


class _NeverRuns(Executor):
    name = "local"

    def run(self, spec: JobSpec, control: RunControl) -> JobResult:  # pragma: no cover - never called
        raise AssertionError


def test_code_from_upload_to_disclosure(engine_any, settings: Settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    alice = Principal("alice", frozenset({"researcher"}))
    with session_scope(engine_any) as s:
        registry.create_user(s, "t", "alice", ["researcher"])
        registry.create_project(s, "t", "p1", "P1")
        registry.create_project(s, "t", "p2", "P2", quota={"max_code_files": 1})
        registry.add_member(s, "t", "p1", "alice")
        registry.add_member(s, "t", "p2", "alice")
    archive = tmp_path / "code.tar.gz"
    archive.write_bytes(targz(file("analysis.py"), file("util.py")))
    stored = CodeStore(settings).store_file(archive, CodeLimits())
    with session_scope(engine_any) as s:
        service.record_upload(s, alice, "p1", stored)
        service.record_upload(s, alice, "p1", stored)  # the same upload again: still one row each
        service.record_upload(s, alice, "p2", stored)
    with session_scope(engine_any) as s:
        # What a concurrent request inserting the same row meets: the duplicate is dropped.
        service._add_once(s, CodeUpload(project_id="p1", sha256=stored.sha256, uploaded_by="mallory"))
    with session_scope(engine_any) as s:
        assert s.get(CodeUpload, ("p1", stored.sha256)).uploaded_by == "alice"
        assert s.scalar(select(func.count()).select_from(CodeArchive)) == 1
        assert sorted(u.project_id for u in s.scalars(select(CodeUpload))) == ["p1", "p2"]
        row = s.get(CodeArchive, stored.sha256)
        assert (row.size, row.entry_count) == (archive.stat().st_size, 2)
        p1, p2 = s.get(Project, "p1"), s.get(Project, "p2")
        assert (p1.max_code_mb, p1.max_code_files) == (50, 10_000)
        service.check_job_code(s, p1, stored.sha256)
        service.check_job_code(s, p1, None)
        with pytest.raises(AdmissionDenied, match="more entries than project 'p2' quota of 1"):
            service.check_job_code(s, p2, stored.sha256)
        job = Job(
            project_id="p1",
            submitted_by="alice",
            image="img@sha256:" + "0" * 64,
            command=["python3", "analysis.py"],
            code_hash=stored.sha256,
        )
        s.add(job)
        s.flush()
        req = EgressRequest(
            job_id=job.id, project_id="p1", requested_by="alice", justification="counts", state="approved"
        )
        s.add(req)
        s.flush()
        record = build_record(req)
        assert record["job"] == {
            "id": job.id,
            "image": "img@sha256:" + "0" * 64,
            "code_hash": stored.sha256,
            "command": ["python3", "analysis.py"],
        }
        job_id = job.id
    # The worker hands the executor the unpacked read-only tree and the hash.
    worker = Worker(settings, engine_any, executor=_NeverRuns(), concurrency=1)
    with session_scope(engine_any) as s:
        job = s.get(Job, job_id)
        assert job.code_hash == stored.sha256
        spec = worker._spec(job, [])
    assert spec.code_hash == stored.sha256
    assert spec.code_dir == CodeStore(settings).tree_path(stored.sha256)
    assert sorted(p.name for p in spec.code_dir.iterdir()) == ["analysis.py", "util.py"]
