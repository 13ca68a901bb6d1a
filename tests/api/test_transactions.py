"""Reads never take SQLite's write lock; writers queue in-process; audit stays one tree.

Real SQLite files (and PostgreSQL where the fixture gives it), real threads, and the real
API over FastAPI's test client.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import OperationalError

from tests.audit.conftest import export_bytes
from tests.conftest import World
from tre.audit import configure, record_event
from tre.audit.signing import get_signer
from tre.audit.verify import verify_bundle
from tre.config import Settings
from tre.store.db import session_scope
from tre.store.models import AuditEntry, Job, Project


def _hold_write_lock(engine: Engine, started: threading.Event, release: threading.Event) -> None:
    with session_scope(engine) as s:
        s.execute(text("UPDATE projects SET name = name"))  # a real write inside the transaction
        started.set()
        release.wait(timeout=30)


def _while_writer_holds(engine: Engine, action: Callable[[], object]) -> float:
    """Run ``action`` while another thread holds an open writing transaction; its duration."""
    started, release = threading.Event(), threading.Event()
    writer = threading.Thread(target=_hold_write_lock, args=(engine, started, release))
    writer.start()
    try:
        assert started.wait(timeout=10)
        t0 = time.monotonic()
        action()
        return time.monotonic() - t0
    finally:
        release.set()
        writer.join(timeout=30)


def test_read_only_unit_of_work_does_not_wait_for_a_writer(engine: Engine, world: World) -> None:
    def read() -> None:
        with session_scope(engine, read_only=True) as s:
            assert s.scalar(select(func.count()).select_from(Project)) == 2

    # Before, every transaction began IMMEDIATE and this waited for the writer (30 s timeout).
    assert _while_writer_holds(engine, read) < 2.0


def test_a_write_inside_a_read_only_unit_is_refused(engine: Engine, world: World) -> None:
    with pytest.raises(OperationalError, match="readonly"):
        with session_scope(engine, read_only=True) as s:
            s.execute(text("UPDATE projects SET name = 'x'"))
    with session_scope(engine, read_only=True) as s:
        assert "x" not in s.scalars(select(Project.name)).all()
    # The pooled connection is writable again for the next writing unit of work.
    with session_scope(engine) as s:
        s.execute(text("UPDATE projects SET name = name || '!' WHERE id = 'p2'"))
    with session_scope(engine, read_only=True) as s:
        assert s.scalar(select(Project.name).where(Project.id == "p2")) == "Project two!"


def test_api_reads_answer_while_a_writer_holds_the_database(app_client, engine: Engine, world: World) -> None:  # type: ignore[no-untyped-def]
    alice = world.headers["alice"]
    # A token's first use is audited (a write, deferred until after the read): done here,
    # so the reads below have nothing to append.
    assert app_client.get("/api/v1/projects", headers=alice).status_code == 200
    for path in ("/api/v1/jobs", "/api/v1/datasets", "/api/v1/projects"):
        answers: list[int] = []
        took = _while_writer_holds(
            engine, lambda p=path: answers.append(app_client.get(p, headers=alice).status_code)
        )
        assert answers == [200], path
        assert took < 2.0, path


def test_api_writes_still_commit_and_reads_see_them(app_client, world: World) -> None:  # type: ignore[no-untyped-def]
    from tests.worlds import job_body

    alice = world.headers["alice"]
    r = app_client.post("/api/v1/jobs", json=job_body(), headers=alice)
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    assert app_client.get(f"/api/v1/jobs/{job_id}", headers=alice).json()["state"] == "queued"
    # /me audits the login although it is a GET: it keeps a writing transaction.
    assert app_client.get("/api/v1/me", headers=alice).status_code == 200


def test_concurrent_writers_in_one_process_build_one_audit_tree(
    engine_any: Engine, settings: Settings, world_any: None
) -> None:
    configure(engine_any, settings.keys_dir)
    threads, rounds = 8, 10
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads)

    def append(worker: int) -> None:
        try:
            barrier.wait(timeout=30)
            for i in range(rounds):
                with session_scope(engine_any) as s:
                    # Read-then-write in one unit: the job count decides the event's details.
                    n = s.scalar(select(func.count()).select_from(Job))
                    record_event(s, actor=f"t{worker}", action="load.test", details={"seen": n, "i": i})
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)

    pool = [threading.Thread(target=append, args=(w,)) for w in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=120)
    assert not errors, errors
    with session_scope(engine_any, read_only=True) as s:
        idx = s.scalars(select(AuditEntry.idx).where(AuditEntry.action == "load.test")).all()
    assert len(idx) == threads * rounds
    report = verify_bundle(
        export_bytes(engine_any, get_signer(settings.keys_dir)), get_signer(settings.keys_dir).verifier_key
    )
    assert report.ok, report.errors


@pytest.fixture
def world_any(engine_any: Engine) -> None:
    from tests.worlds import WorldFactory

    with session_scope(engine_any) as s:
        make = WorldFactory(s)
        make.users({"root": ["admin"], "alice": ["researcher"]})
        make.project("p1", "Project one", ["alice"])


def test_a_read_only_request_still_audits_its_tokens_first_use(
    app_client, engine: Engine, world: World, token_for
) -> None:  # type: ignore[no-untyped-def]
    """The token's first use is appended after the read's snapshot, before the answer."""
    token = token_for("alice", "researcher")
    r = app_client.get("/api/v1/jobs", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200
    with session_scope(engine, read_only=True) as s:
        used = s.scalars(
            select(AuditEntry.body).where(AuditEntry.action == "auth.token_used", AuditEntry.actor == "alice")
        ).all()
    import jwt

    jti = jwt.decode(token, options={"verify_signature": False})["jti"]
    assert any(jti in body for body in used)


def test_researchers_list_the_grants_of_their_own_projects(app_client, world: World) -> None:  # type: ignore[no-untyped-def]
    alice = app_client.get("/api/v1/grants", headers=world.headers["alice"])
    assert alice.status_code == 200
    assert [(g["id"], g["project_id"]) for g in alice.json()] == [(world.grant_id, "p1")]
    assert alice.json()[0]["expires_at"]
    assert app_client.get("/api/v1/grants", headers=world.headers["bob"]).json() == []
    assert [g["id"] for g in app_client.get("/api/v1/grants", headers=world.headers["dana"]).json()] == [
        world.grant_id
    ]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/api/v1/jobs/no-such-job", 404),  # a read, refused
        ("POST", "/api/v1/projects", 403),  # a write, refused by role
        ("POST", "/api/v1/jobs", 422),  # a write whose body is wrong
    ],
)
def test_a_failed_request_still_audits_its_tokens_first_use(
    app_client, engine: Engine, world: World, token_for, method: str, path: str, status: int
) -> None:  # type: ignore[no-untyped-def]
    """The entry is due once an hour and marked as recorded when the request appends it: a
    request that failed rolled it back with everything else, and the token's use of that hour
    was never recorded (every later request of the hour found it recorded already)."""
    import jwt

    token = token_for("alice", "researcher")
    headers = {"Authorization": f"Bearer {token}"}
    r = app_client.request(
        method, path, headers=headers, json={"nonsense": True} if method == "POST" else None
    )
    assert r.status_code == status, r.text
    assert app_client.get("/api/v1/jobs", headers=headers).status_code == 200  # within the hour
    jti = jwt.decode(token, options={"verify_signature": False})["jti"]
    with session_scope(engine, read_only=True) as s:
        used = s.scalars(
            select(AuditEntry.body).where(AuditEntry.action == "auth.token_used", AuditEntry.actor == "alice")
        ).all()
    assert sum(jti in body for body in used) == 1, used
