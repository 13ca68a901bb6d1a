"""The read cache (`tre.api.read_cache`) never serves an answer the database has moved past.

* A job submitted through one API process is in the next read through another process's
  app, which had the old list cached (read-your-writes across processes), on SQLite and
  PostgreSQL.
* A change made behind the API's back (raw SQL, as another process or an admin's tool
  would) applies to the next read.
* Hits really happen (the cache is not a no-op), and callers never see each other's
  answers.
* Authentication and auditing take the full path: a forged token is refused, a due
  ``auth.token_used`` entry is still written.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select, text

from tests.conftest import World
from tests.worlds import job_body
from tre.api.app import create_app
from tre.audit import events
from tre.config import Settings
from tre.store.db import make_engine, session_scope
from tre.store.models import AuditEntry


def _client(settings: Settings, url: str) -> Iterator[tuple[TestClient, Any]]:
    """An app with its own engine (connections, caches): another API process, as far as the
    database is concerned."""
    engine = make_engine(url)
    app = create_app(settings, engine, migrate=False)
    with TestClient(app) as client:
        yield client, app
    engine.dispose()


@pytest.fixture
def other(settings: Settings, engine: Engine) -> Iterator[tuple[TestClient, Any]]:
    yield from _client(settings, engine.url.render_as_string(hide_password=False))


def _ids(client: TestClient, headers: dict[str, str]) -> list[str]:
    r = client.get("/api/v1/jobs", headers=headers)
    assert r.status_code == 200, r.text
    return [j["id"] for j in r.json()]


def test_a_repeated_read_is_a_hit_and_the_same_answer(app: Any, app_client: TestClient, world: World) -> None:
    alice = world.headers["alice"]
    app_client.get("/api/v1/datasets", headers=alice)  # the token's first use is audited: a write
    first = app_client.get("/api/v1/datasets", headers=alice)
    hits = app.state.read_answers.hits
    second = app_client.get("/api/v1/datasets", headers=alice)
    assert app.state.read_answers.hits == hits + 1
    assert (second.status_code, second.content, second.headers["content-type"]) == (
        first.status_code,
        first.content,
        first.headers["content-type"],
    )


def test_a_submission_through_another_process_is_in_the_next_read(
    app_client: TestClient, other: tuple[TestClient, Any], world: World
) -> None:
    alice = world.headers["alice"]
    client_b, app_b = other
    assert _ids(client_b, alice) == [] == _ids(client_b, alice)  # (the first audits the token)
    hits = app_b.state.read_answers.hits
    assert _ids(client_b, alice) == [] and app_b.state.read_answers.hits == hits + 1  # cached in B
    r = app_client.post("/api/v1/jobs", headers=alice, json=job_body())
    assert r.status_code == 201, r.text
    assert _ids(client_b, alice) == [r.json()["id"]]
    job = client_b.get(f"/api/v1/jobs/{r.json()['id']}", headers=alice)
    assert job.status_code == 200 and job.json()["state"] == "queued"


def test_read_your_writes_across_processes_on_postgresql(
    settings: Settings, pg_server: Any, token_for: Any, dicom_dir: Any
) -> None:
    from tests.worlds import WorldFactory
    from tre.store.db import init_db

    url = pg_server.create_database()
    setup = make_engine(url)
    init_db(setup)
    with session_scope(setup) as s:
        make = WorldFactory(s)
        make.users({"alice": ["researcher"]})
        make.project("p1", "Project one", ["alice"], quota={"max_cpu": 2, "max_memory_mb": 2048})
        make.dataset("ct1", dicom_dir, "CT sample")
        make.grant("p1", "ct1", days=1)
        make.approve_image("p1")
    setup.dispose()
    alice = {"Authorization": f"Bearer {token_for('alice', 'researcher')}"}
    a, b = _client(settings, url), _client(settings, url)
    (client_a, _), (client_b, app_b) = next(a), next(b)
    try:
        assert _ids(client_b, alice) == [] == _ids(client_b, alice)  # (the first audits the token)
        hits = app_b.state.read_answers.hits
        assert _ids(client_b, alice) == [] and app_b.state.read_answers.hits == hits + 1
        r = client_a.post("/api/v1/jobs", headers=alice, json=job_body())
        assert r.status_code == 201, r.text
        assert _ids(client_b, alice) == [r.json()["id"]]
    finally:
        for gen in (a, b):
            next(gen, None)


def test_a_change_behind_the_apis_back_applies_to_the_next_read(
    app_client: TestClient, engine: Engine, world: World
) -> None:
    alice = world.headers["alice"]
    job_id = app_client.post("/api/v1/jobs", headers=alice, json=job_body()).json()["id"]
    assert _ids(app_client, alice) == [job_id] == _ids(app_client, alice)
    assert app_client.get("/api/v1/datasets", headers=alice).json() != []
    with session_scope(engine) as s:  # no ORM objects: what another process's change looks like
        s.execute(text("DELETE FROM project_members WHERE user_id = 'alice'"))
    assert _ids(app_client, alice) == []
    assert app_client.get(f"/api/v1/jobs/{job_id}", headers=alice).status_code == 404
    assert app_client.get("/api/v1/datasets", headers=alice).json() == []


def test_callers_never_share_answers(app_client: TestClient, world: World) -> None:
    job_id = app_client.post("/api/v1/jobs", headers=world.headers["alice"], json=job_body()).json()["id"]
    assert _ids(app_client, world.headers["alice"]) == [job_id]
    assert _ids(app_client, world.headers["bob"]) == []  # p2 only
    assert app_client.get(f"/api/v1/jobs/{job_id}", headers=world.headers["bob"]).status_code == 404
    assert _ids(app_client, world.headers["audrey"]) == [job_id]  # auditors see every project


def test_a_forged_token_is_refused_after_a_cached_answer(app_client: TestClient, world: World) -> None:
    alice = world.headers["alice"]
    assert app_client.get("/api/v1/projects", headers=alice).status_code == 200
    assert app_client.get("/api/v1/projects", headers=alice).status_code == 200
    token = alice["Authorization"].removeprefix("Bearer ")
    head, payload, sig = token.split(".")
    forged = ".".join((head, payload, ("A" if sig[0] != "A" else "B") + sig[1:]))
    r = app_client.get("/api/v1/projects", headers={"Authorization": f"Bearer {forged}"})
    assert r.status_code == 401


def test_a_due_token_use_entry_is_still_written(app_client: TestClient, engine: Engine, world: World) -> None:
    alice = world.headers["alice"]
    for _ in range(3):  # audits the token's first use, fills the cache, hits
        assert app_client.get("/api/v1/datasets", headers=alice).status_code == 200

    def token_uses() -> int:
        with session_scope(engine) as s:
            return int(s.scalar(select(func.count()).where(AuditEntry.action == "auth.token_used")) or 0)

    before = token_uses()
    events._token_uses.seen.clear()  # the hour has passed: an entry is due again
    assert app_client.get("/api/v1/datasets", headers=alice).status_code == 200
    assert token_uses() == before + 1


def test_identical_reads_arriving_together_share_one_fill(
    app: Any, app_client: TestClient, world: World
) -> None:
    import asyncio

    import httpx

    alice = world.headers["alice"]
    app_client.get("/api/v1/projects", headers=alice)  # the token's first use is audited: a write
    answers = app.state.read_answers

    async def burst() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=alice) as client:
            return await asyncio.gather(*(client.get("/api/v1/projects") for _ in range(8)))

    fills, coalesced = answers.fills, answers.coalesced
    replies = asyncio.run(burst())
    assert {(r.status_code, r.content) for r in replies} == {(200, replies[0].content)}
    assert answers.fills == fills + 1  # one request computed the answer
    assert answers.coalesced == coalesced + 7  # the others waited for it
