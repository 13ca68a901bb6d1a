"""`tre admin doctor`'s `jobs` check is not fooled by a wall clock that jumps.

Before, it read a heartbeat's age by the wall clock: after a step forward (NTP, a resumed
virtual machine) a live worker's jobs were reported orphaned, and after a step back a dead
worker's jobs were reported running. Now it watches each heartbeat by its own monotonic
clock, as workers do (`HeartbeatWatch`). The jump is made by the heartbeat's recorded time,
which a worker on another host writes by its own clock: an hour behind or ahead of ours.
Real database, real worker-like writer thread.
"""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy import Engine, update

from tre.config import Settings
from tre.doctor import OK, WARN, check_running_jobs
from tre.store.base import utcnow
from tre.store.db import session_scope
from tre.store.models import Job


def _running(engine: Engine, job_id: str, worker: str, beat_offset: timedelta) -> None:
    with session_scope(engine) as s:
        s.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(state="running", worker_id=worker, heartbeat_at=utcnow() + beat_offset)
        )


def _submit(app_client, world) -> str:  # type: ignore[no-untyped-def]
    from tests.worlds import job_body

    return str(app_client.post("/api/v1/jobs", headers=world.headers["alice"], json=job_body()).json()["id"])


def test_a_live_worker_whose_clock_is_an_hour_behind_is_not_reported_gone(
    settings: Settings,
    engine: Engine,
    app_client,
    world,  # type: ignore[no-untyped-def]
) -> None:
    job_id = _submit(app_client, world)
    behind = timedelta(hours=-1)
    _running(engine, job_id, "other-host:4242:cafebabe", behind)
    stop = threading.Event()

    def beat() -> None:  # the other host's worker, alive, writing by its own clock
        while not stop.wait(settings.worker_heartbeat_s):
            _running(engine, job_id, "other-host:4242:cafebabe", behind)

    writer = threading.Thread(target=beat, daemon=True)
    writer.start()
    try:
        check = check_running_jobs(settings, engine)
    finally:
        stop.set()
        writer.join(timeout=10)
    assert check.status == OK, check.detail
    assert "1 running, none orphaned" in check.detail


def test_a_dead_worker_whose_heartbeat_lies_in_the_future_is_reported_gone(
    settings: Settings,
    engine: Engine,
    app_client,
    world,  # type: ignore[no-untyped-def]
) -> None:
    job_id = _submit(app_client, world)
    _running(engine, job_id, "other-host:4242:cafebabe", timedelta(hours=1))  # then it died
    check = check_running_jobs(settings, engine)
    assert check.status == WARN, check.detail
    assert job_id in check.detail and "stood still" in check.detail


def test_the_clock_check_says_when_this_host_and_the_database_disagree(engine: Engine) -> None:
    """The airlock's expiry waits for both clocks (`tre.store.dbclock`): a skew is said."""
    from tre.doctor import check_clock

    assert check_clock(engine).status == OK
    ahead = check_clock(engine, now=lambda: utcnow() + timedelta(hours=2))
    assert ahead.status == WARN and "this host's clock is ahead" in ahead.detail
    behind = check_clock(engine, now=lambda: utcnow() - timedelta(hours=2))
    assert behind.status == WARN and "the database's clock is ahead" in behind.detail
