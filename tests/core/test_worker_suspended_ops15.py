"""A worker whose host was suspended (or cut off) for longer than TRE_WORKER_STALE_AFTER_S
finds, when it resumes, that another worker ended its job as lost: it stops its copy.

Before, the resumed worker's heartbeat quietly matched nothing and its sandbox ran the
research code on to the job's own end, for a job the record already called failed
("the local sandbox died with it"), holding a slot and reading data. Now the heartbeat that
matches no running job of this worker's stops the local sandbox (the executor's cancel
poll), and the other worker's record stands. Real local sandbox (bubblewrap), real database;
the suspension is the second worker ending the job while the first still runs it.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from tests.worlds import job_body
from tre.config import Settings
from tre.jobs.worker import WORKER_LOST, Worker
from tre.store.db import session_scope
from tre.store.models import AuditEntry, Job

pytestmark = pytest.mark.skipif(
    not Path("/usr/bin/bwrap").exists() or os.geteuid() != 0,
    reason="the local sandbox needs root and bubblewrap",
)


def _wait(what, timeout: float = 60.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not what() and time.monotonic() < deadline:
        time.sleep(0.1)
    return bool(what())


def test_a_resumed_worker_stops_the_job_another_worker_ended_as_lost(  # type: ignore[no-untyped-def]
    app_client, world, engine: Engine, settings: Settings
) -> None:
    script = "import time, pathlib; pathlib.Path('/output/started').write_text('1'); time.sleep(25)"
    job_id = app_client.post(
        "/api/v1/jobs", headers=world.headers["alice"], json=job_body(command=["python3", "-c", script])
    ).json()["id"]
    first = Worker(settings, engine, concurrency=1)
    runner = threading.Thread(target=first.serve_forever, daemon=True)
    runner.start()
    try:
        assert _wait((settings.jobs_dir / job_id / "output" / "started").exists), "the job never started"
        # While the first worker was not heard from, a second one ended the job as lost.
        Worker(settings, engine, concurrency=1)._fail_orphan(job_id)
        # The first stops its copy within a few heartbeats, long before the job's own 25 s.
        assert _wait(lambda: (f := first._running.get(job_id)) is None or f.done(), timeout=15)
    finally:
        first.stop()
        runner.join(timeout=60)
    with session_scope(engine) as s:
        job = s.get(Job, job_id)
        assert job is not None and job.state == "failed" and WORKER_LOST in (job.reason or "")
        ended = s.scalar(
            select(func.count()).where(AuditEntry.job_id == job_id, AuditEntry.action == "job.ended")
        )
        assert ended == 1
