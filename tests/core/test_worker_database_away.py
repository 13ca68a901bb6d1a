"""The database goes away while a worker runs a job in the real local sandbox (a PostgreSQL
server of this test's own, crashed with ``pg_ctl -m immediate`` and started again): the job
goes on, its end is recorded once the server is back, exactly once, with its outputs and one
`job.ended` audit entry; no job is lost, none runs twice."""

from __future__ import annotations

import contextlib
import logging
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from tests.api.test_database_away import StoppablePg
from tests.worlds import job_body
from tre import audit
from tre.jobs.worker import Worker
from tre.store.db import init_db, make_engine, session_scope
from tre.store.models import AuditEntry, Job, JobOutput

pytestmark = pytest.mark.skipif(not Path("/usr/bin/bwrap").exists(), reason="bubblewrap not installed")


@pytest.fixture
def pg() -> Iterator[StoppablePg]:
    server = StoppablePg()
    yield server
    with contextlib.suppress(subprocess.CalledProcessError):
        server.server.stop()


@pytest.fixture
def engine(pg: StoppablePg) -> Iterator[Engine]:  # the app, the world and the worker on it
    eng = make_engine(pg.server.create_database())
    init_db(eng)
    yield eng
    eng.dispose()


def _state(engine, job_id: str) -> str | None:  # type: ignore[no-untyped-def]
    try:
        with session_scope(engine) as s:
            return s.scalar(select(Job.state).where(Job.id == job_id))
    except Exception:  # noqa: BLE001 - the server is down
        return None


def test_a_job_outlives_a_database_restart_and_ends_once(
    app_client, world, engine, settings, pg: StoppablePg, caplog
) -> None:  # type: ignore[no-untyped-def]
    script = (
        "import time, pathlib; pathlib.Path('/output/started').write_text('1'); time.sleep(6);"
        "pathlib.Path('/output/result.txt').write_text('done'); print('finished')"
    )
    job_id = app_client.post(
        "/api/v1/jobs", headers=world.headers["alice"], json=job_body(command=["python3", "-c", script])
    ).json()["id"]
    worker = Worker(settings, engine, concurrency=1)
    runner = threading.Thread(target=worker.serve_forever, daemon=True)
    runner.start()
    try:
        started = settings.jobs_dir / job_id / "output" / "started"
        deadline = time.monotonic() + 60
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert started.exists(), "the job never started"
        with caplog.at_level(logging.WARNING, logger="tre.jobs.worker"):
            pg.crash()
            time.sleep(8)  # the job ends while the server is down (heartbeats, cancel checks fail)
            assert "database unreachable while job" in caplog.text
            pg.restart()
            deadline = time.monotonic() + 60
            while _state(engine, job_id) in (None, "running") and time.monotonic() < deadline:
                time.sleep(0.2)
    finally:
        worker.stop()
        runner.join(timeout=60)
    with session_scope(engine) as s:
        job = s.get(Job, job_id)
        assert job is not None
        assert (job.state, job.exit_code) == ("succeeded", 0), job.reason
        paths = sorted(s.scalars(select(JobOutput.path).where(JobOutput.job_id == job_id)))
        assert paths == ["result.txt", "started"]
        counts = dict(
            s.execute(
                select(AuditEntry.action, func.count())
                .where(AuditEntry.job_id == job_id)
                .group_by(AuditEntry.action)
            ).all()
        )
    assert counts["job.started"] == 1 and counts["job.ended"] == 1
    log_text = (settings.jobs_dir / job_id / "job.log").read_text(errors="replace")
    assert log_text.count("finished") == 1  # ran once
    # The log is whole: dense leaf indexes, and a new entry extends the signed tree (the
    # append proves the stored frontier extends the last signed checkpoint).
    with session_scope(engine) as s:
        idxs = list(s.scalars(select(AuditEntry.idx).order_by(AuditEntry.idx)))
        assert idxs == list(range(len(idxs)))
        audit.checkpoint(s, max_age_s=0)
