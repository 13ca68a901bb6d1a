"""A write that finds SQLite's write slot held (by another writer of this process or another
process) past the busy timeout is a 503 `database-busy` problem that says when to retry, and
keeps nothing. CI met this answer without `Retry-After` (tests/core/test_sqlite_long_writer.py),
though docs/api.md and docs/deploy.md promise it for every 503 worth a retry."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from tests.worlds import job_body
from tre.api import deps
from tre.store.db import raw_writer_lock, session_scope
from tre.store.models import Job


def test_a_held_write_slot_is_a_503_with_retry_after_and_keeps_nothing(
    app_client, world, engine, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    lock = raw_writer_lock(engine)
    if lock is None:
        pytest.skip("PostgreSQL has no database-wide write slot")
    monkeypatch.setattr(deps, "BUSY_TIMEOUT_S", 0.3)  # the real 30 s, shortened for the test
    assert lock.acquire(True, 5)  # this thread; the app's requests run in the client's own
    try:
        refused = app_client.post("/api/v1/jobs", headers=world.headers["alice"], json=job_body())
    finally:
        lock.release()
    assert refused.status_code == 503, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["type"] == "urn:tre:problem:database-busy"
    assert refused.headers.get("retry-after", "").isdigit(), refused.headers
    with session_scope(engine, read_only=True) as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 0
    again = app_client.post("/api/v1/jobs", headers=world.headers["alice"], json=job_body())
    assert again.status_code == 201, again.text
