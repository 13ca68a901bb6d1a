"""A jump of the wall clock must not make a worker end another's live job, nor keep a dead
worker's job running (round 14, operations).

Failing before: a worker judged another's heartbeat by the wall clock, so a forward jump
(the heartbeat an hour old at once) made it end a job running in the real local sandbox under
a live worker as "lost", and a backward jump (the heartbeat in the future) kept a dead
worker's job "running" until the clock caught up. Now a heartbeat is stale when this worker
has seen it unchanged for ``worker_stale_after_s`` of its own monotonic time.

The jump is made in the database (the heartbeat moved by an hour): jumping the machine's
clock would disturb every other process on it.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from tests.worlds import job_body
from tre.jobs.worker import Worker
from tre.store.base import utcnow
from tre.store.db import session_scope
from tre.store.models import Job

pytestmark = pytest.mark.skipif(not Path("/usr/bin/bwrap").exists(), reason="bubblewrap not installed")


def _state(engine, job_id: str) -> tuple[str, str | None]:  # type: ignore[no-untyped-def]
    with session_scope(engine, read_only=True) as s:
        job = s.get(Job, job_id)
        assert job is not None
        return job.state, job.heartbeat_at and job.heartbeat_at.isoformat()


def test_a_forward_jump_does_not_end_a_live_workers_job(app_client, world, engine, settings) -> None:  # type: ignore[no-untyped-def]
    settings.worker_heartbeat_s, settings.worker_stale_after_s = 0.2, 5.0
    script = "import time, pathlib; pathlib.Path('/output/started').write_text('1'); time.sleep(60)"
    job_id = app_client.post(
        "/api/v1/jobs",
        headers=world.headers["alice"],
        json=job_body(command=["python3", "-c", script], time_limit_s=120),
    ).json()["id"]
    first = Worker(settings, engine, concurrency=1)
    runner = threading.Thread(target=first.serve_forever, daemon=True)
    runner.start()
    second = Worker(settings, engine, concurrency=1)
    try:
        started = settings.jobs_dir / job_id / "output" / "started"
        for _ in range(600):
            if started.exists():
                break
            threading.Event().wait(0.1)
        assert started.exists(), "the job never started"
        with session_scope(engine) as s:  # the clock jumped an hour ahead since the last beat
            s.execute(update(Job).where(Job.id == job_id).values(heartbeat_at=utcnow() - timedelta(hours=1)))
        second.recover_orphans()
        assert _state(engine, job_id)[0] == "running"
        # The live worker goes on beating: the second never sees its heartbeat stand still
        # (rounds until it saw the heartbeat change several times, past worker_stale_after_s).
        seen = {_state(engine, job_id)[1]}
        for _ in range(40):
            threading.Event().wait(0.25)
            second.recover_orphans()
            state, beat = _state(engine, job_id)
            assert state == "running"
            seen.add(beat)
        assert len(seen) > 4, seen
    finally:
        with session_scope(engine) as s:
            s.execute(update(Job).where(Job.id == job_id).values(cancel_requested=True))
        first.stop()
        runner.join(timeout=60)


@pytest.mark.parametrize("jump", [timedelta(hours=-1), timedelta(hours=1)])
def test_a_dead_workers_job_elsewhere_ends_after_its_heartbeat_stood_still(  # type: ignore[no-untyped-def]
    app_client, world, engine, settings, jump: timedelta
) -> None:
    """Another host's worker died; its last heartbeat reads an hour ago or (a backward jump)
    an hour ahead: either way the job is ended once the heartbeat stood still long enough."""
    settings.worker_heartbeat_s, settings.worker_stale_after_s = 0.2, 1.0
    job_id = app_client.post("/api/v1/jobs", headers=world.headers["alice"], json=job_body()).json()["id"]
    with session_scope(engine) as s:
        s.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(
                state="running",
                worker_id="elsewhere.example:4242:deadbeef",
                heartbeat_at=utcnow() - jump,
                started_at=utcnow(),
            )
        )
    now = [0.0]
    worker = Worker(settings, engine, concurrency=1, clock=lambda: now[0])
    worker.recover_orphans()
    now[0] += 0.5
    worker.recover_orphans()
    assert _state(engine, job_id)[0] == "running"  # not stood still long enough yet
    now[0] += 1.0
    worker.recover_orphans()
    with session_scope(engine) as s:
        job = s.get(Job, job_id)
        assert job is not None and job.state == "failed", job.state
        assert "stopped while the job was running" in (job.reason or "")
