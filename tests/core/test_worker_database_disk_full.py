"""The disk under the SQLite database fills up while a worker runs a job in the real local
sandbox (a real small tmpfs holding the database, a file taking what is left): the job goes
on, its end cannot be written (SQLite's "database or disk is full"), the worker says so in
its log and keeps the result; once there is room it records the end, once, with the outputs."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from tests.api.test_database_disk_full import _fill
from tests.api.test_disk_full import small_fs as small_fs  # noqa: F401 - the fixture
from tests.worlds import job_body
from tre.jobs.worker import Worker
from tre.store.db import init_db, make_engine, session_scope
from tre.store.models import AuditEntry, Job, JobOutput

pytestmark = pytest.mark.skipif(not Path("/usr/bin/bwrap").exists(), reason="bubblewrap not installed")


@pytest.fixture
def engine(small_fs, tmp_path: Path) -> Iterator[Engine]:  # type: ignore[no-untyped-def]
    folder = small_fs(tmp_path / "dbfs", "16m")
    eng = make_engine(f"sqlite:///{folder / 'tre.db'}")
    init_db(eng)
    yield eng
    eng.dispose()


def _state(engine: Engine, job_id: str) -> str | None:
    with session_scope(engine, read_only=True) as s:
        return s.scalar(select(Job.state).where(Job.id == job_id))


def test_a_jobs_end_waits_for_room_on_the_databases_disk(  # type: ignore[no-untyped-def]
    app_client, world, engine, settings, tmp_path: Path, caplog
) -> None:
    script = (
        "import time, pathlib; pathlib.Path('/output/started').write_text('1'); time.sleep(5);"
        "pathlib.Path('/output/result.txt').write_text('done')"
    )
    job_id = app_client.post(
        "/api/v1/jobs", headers=world.headers["alice"], json=job_body(command=["python3", "-c", script])
    ).json()["id"]
    worker = Worker(settings, engine, concurrency=1)
    runner = threading.Thread(target=worker.serve_forever, daemon=True)
    filler: Path | None = None
    with caplog.at_level(logging.WARNING, logger="tre.jobs.worker"):
        runner.start()
        try:
            started = settings.jobs_dir / job_id / "output" / "started"
            deadline = time.monotonic() + 60
            while not started.exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert started.exists(), "the job never started"
            # An empty write-ahead log on a full disk: the next write must grow it, and fails.
            with contextlib.closing(sqlite3.connect(tmp_path / "dbfs" / "tre.db")) as c:
                busy, _, _ = c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            assert busy == 0
            filler = _fill(tmp_path / "dbfs")
            deadline = time.monotonic() + 60
            while "cannot record the end of job" not in caplog.text and time.monotonic() < deadline:
                time.sleep(0.2)
            assert "cannot record the end of job" in caplog.text
            assert _state(engine, job_id) == "running"  # nothing half-written
            os.unlink(filler)
            filler = None
            deadline = time.monotonic() + 60
            while _state(engine, job_id) == "running" and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            if filler is not None:
                os.unlink(filler)
            worker.stop()
            runner.join(timeout=60)
    with session_scope(engine) as s:
        job = s.get(Job, job_id)
        assert job is not None and (job.state, job.exit_code) == ("succeeded", 0), job.reason
        paths = sorted(s.scalars(select(JobOutput.path).where(JobOutput.job_id == job_id)))
        assert paths == ["result.txt", "started"]
        ended = s.scalar(
            select(func.count()).where(AuditEntry.job_id == job_id, AuditEntry.action == "job.ended")
        )
        assert ended == 1
