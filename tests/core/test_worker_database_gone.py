"""The database stays away (its disk stays full) after a job ran in the real local sandbox:
the worker keeps the job's end on local disk and frees the slot instead of retrying for ever;
the end is written, once, with the outputs, when the database answers again: by the worker's
next round, or by `tre admin doctor` when no worker is left on the host."""

from __future__ import annotations

import contextlib
import json
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
from tre.cli.jobs import shown_state
from tre.doctor import run_checks
from tre.jobs import end_spool
from tre.jobs.worker import DB_AWAY, Worker
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


def _wait(what, timeout: float = 60.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not what() and time.monotonic() < deadline:
        time.sleep(0.1)
    return bool(what())


def _ended_once(engine: Engine, job_id: str) -> None:
    with session_scope(engine) as s:
        job = s.get(Job, job_id)
        assert job is not None and (job.state, job.exit_code) == ("succeeded", 0), job.reason
        paths = sorted(s.scalars(select(JobOutput.path).where(JobOutput.job_id == job_id)))
        assert paths == ["result.txt", "started"]
        ended = s.scalar(
            select(func.count()).where(AuditEntry.job_id == job_id, AuditEntry.action == "job.ended")
        )
        assert ended == 1


def _database_full_while_the_job_runs(
    app_client, world, settings, tmp_path: Path, worker: Worker
) -> tuple[str, Path]:  # type: ignore[no-untyped-def]
    script = (
        "import time, pathlib; pathlib.Path('/output/started').write_text('1'); time.sleep(3);"
        "pathlib.Path('/output/result.txt').write_text('done')"
    )
    job_id = app_client.post(
        "/api/v1/jobs", headers=world.headers["alice"], json=job_body(command=["python3", "-c", script])
    ).json()["id"]
    started = settings.jobs_dir / job_id / "output" / "started"
    assert _wait(started.exists), "the job never started"
    with contextlib.closing(sqlite3.connect(tmp_path / "dbfs" / "tre.db")) as c:
        busy, _, _ = c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    assert busy == 0
    return job_id, _fill(tmp_path / "dbfs")


def _shown(app_client, world, job_id: str) -> list[dict]:  # type: ignore[no-untyped-def, type-arg]
    """The job as its researcher sees it: its own page and its line in the listing."""
    page = app_client.get(f"/api/v1/jobs/{job_id}", headers=world.headers["alice"])
    listing = app_client.get("/api/v1/jobs", headers=world.headers["alice"])
    assert page.status_code == 200 and listing.status_code == 200, (page.text, listing.text)
    return [page.json(), *[j for j in listing.json() if j["id"] == job_id]]


def _logs_say(app_client, world, job_id: str, state: str, end_pending: str) -> None:  # type: ignore[no-untyped-def]
    """What the log route tells a follower (`tre logs -f`, `tre.cli.jobs.follow_job`)."""
    got = app_client.get(f"/api/v1/jobs/{job_id}/logs", headers=world.headers["alice"])
    assert got.status_code == 200, got.text
    said = (got.headers["X-Job-State"], got.headers["X-Job-End-Pending"])
    assert said == (state, end_pending)
    assert shown_state(*said) == ("ending" if end_pending == "true" else state)


@pytest.mark.parametrize("written_by", ["worker", "doctor"])
def test_a_job_end_the_database_cannot_take_frees_the_slot_and_is_written_later(  # type: ignore[no-untyped-def]
    app_client, world, engine, settings, tmp_path: Path, written_by: str
) -> None:
    worker = Worker(settings, engine, concurrency=1)
    runner = threading.Thread(target=worker.serve_forever, daemon=True)
    runner.start()
    filler: Path | None = None
    try:
        job_id, filler = _database_full_while_the_job_runs(app_client, world, settings, tmp_path, worker)
        spooled = end_spool.spool_dir(settings) / f"{job_id}.json"
        # The slot is freed (no thread of the worker's holds the job) with the end on disk.
        assert _wait(lambda: spooled.exists() and all(f.done() for f in list(worker._running.values())))
        body = json.loads(spooled.read_text())
        assert (body["state"], body["exit_code"], body["worker_id"]) == ("succeeded", 0, worker.worker_id)
        assert spooled.stat().st_mode & 0o077 == 0
        # Shown as ending, not as running (ops15), its outcome not until it is recorded.
        for seen in _shown(app_client, world, job_id):
            assert (seen["state"], seen["end_pending"], seen["exit_code"]) == ("running", True, None), seen
        if written_by == "doctor":  # the worker is gone before the database is back
            worker.stop()
            runner.join(timeout=60)
            assert not runner.is_alive()
        os.unlink(filler)
        filler = None
        if written_by == "doctor":
            # The database takes writes again, the end still waits: `tre logs -f` shows it ending
            # (the log route writes on read, so it could not answer while the disk was full).
            _logs_say(app_client, world, job_id, "running", "true")
            checks = {c.name: c for c in run_checks(settings, engine)}
            assert checks["job ends"].status == "ok", checks["job ends"]
            assert "wrote 1" in checks["job ends"].detail
        else:
            assert _wait(lambda: not spooled.exists())
    finally:
        if filler is not None:
            os.unlink(filler)
        worker.stop()
        runner.join(timeout=60)
    assert not spooled.exists()
    _ended_once(engine, job_id)
    for seen in _shown(app_client, world, job_id):
        assert (seen["state"], seen["end_pending"]) == ("succeeded", False), seen
    _logs_say(app_client, world, job_id, "succeeded", "false")
    # Written again by a later round or doctor: nothing changes (a job never ends twice).
    Worker(settings, engine, concurrency=1).tick()
    assert {c.name: c.status for c in run_checks(settings, engine)}["job ends"] == "ok"
    _ended_once(engine, job_id)


def test_a_spooled_end_of_a_job_ended_elsewhere_is_dropped(app_client, world, engine, settings) -> None:  # type: ignore[no-untyped-def]
    """Another worker ended the job as lost meanwhile: the late end is not written over it."""
    from tre.executors.base import JobResult
    from tre.states import JobState

    job_id = app_client.post("/api/v1/jobs", headers=world.headers["alice"], json=job_body()).json()["id"]
    with session_scope(engine) as s:
        job = s.get(Job, job_id)
        assert job is not None
        job.state, job.worker_id, job.reason = "failed", "other:1:x", "stopped while the job was running"
    end_spool.spool_end(settings, job_id, "gone:2:y", JobResult(JobState.succeeded, 0, "done"))
    assert (
        end_spool.replay(settings, engine, lambda *a: pytest.fail("written over an ended job"), DB_AWAY) == 0
    )
    assert end_spool.spooled(settings) == []


def test_one_end_that_cannot_be_written_holds_up_neither_the_others_nor_the_round(  # type: ignore[no-untyped-def]
    app_client, world, engine, settings
) -> None:
    """A spooled end whose writing fails for a reason other than the database is left for
    an operator; the next end is written and the caller (a worker round) goes on."""
    from tre.executors.base import JobResult
    from tre.states import JobState

    worker = Worker(settings, engine, concurrency=1)
    ids = [
        app_client.post("/api/v1/jobs", headers=world.headers["alice"], json=job_body()).json()["id"]
        for _ in range(2)
    ]
    with session_scope(engine) as s:
        for job_id in ids:
            job = s.get(Job, job_id)
            assert job is not None
            job.state, job.worker_id = "running", worker.worker_id
    bad, good = sorted(ids)
    end_spool.spool_end(settings, bad, worker.worker_id, JobResult(JobState.failed, None, "x"))
    end_spool.spool_end(settings, good, worker.worker_id, JobResult(JobState.failed, None, "y"))

    def finish(s, job, result) -> None:  # type: ignore[no-untyped-def]
        if job.id == bad:
            raise RuntimeError("cannot write this one")
        worker._finish(s, job, result)

    assert end_spool.replay(settings, engine, finish, DB_AWAY) == 1
    assert [e.job_id for e in end_spool.spooled(settings)] == [bad]
    with session_scope(engine) as s:
        assert s.get(Job, good).state == "failed"  # type: ignore[union-attr]
        assert s.get(Job, bad).state == "running"  # type: ignore[union-attr]
