"""PostgreSQL crashes and comes back around a DAC vote (a server of this test's own, stopped
with ``pg_ctl -m immediate``): before the vote, and while the vote waits inside its
transaction (another session holds the request's row lock, then the server dies). Each vote
is refused with a 503 problem worth a retry or kept, never doubled: after the restart the
request holds exactly the votes that were answered 201, a repeated vote is a 409, and the
audit log has one entry per kept vote."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
from sqlalchemy import func, select

from tests.api.test_database_away import StoppablePg, _unavailable
from tests.api.test_database_away import engine as engine  # noqa: F401 - the fixtures
from tests.api.test_database_away import pg as pg  # noqa: F401
from tests.egress.test_api import BASE, create
from tests.egress.test_api import auth as auth  # noqa: F401
from tests.egress.test_api import client as client  # noqa: F401
from tests.egress.test_api import world as world  # noqa: F401
from tre.store.db import session_scope
from tre.store.models import AuditEntry, Review


def _counts(engine, rid: str) -> tuple[int, int]:  # type: ignore[no-untyped-def]  # noqa: F811
    with session_scope(engine) as s:
        votes = s.scalar(select(func.count()).select_from(Review).where(Review.request_id == rid))
        audited = s.scalar(
            select(func.count()).where(AuditEntry.action == "egress.vote", AuditEntry.body.contains(rid))
        )
    return int(votes or 0), int(audited or 0)


def test_a_vote_across_a_database_crash_is_kept_or_refused_never_doubled(  # type: ignore[no-untyped-def]
    client,
    auth,
    world,
    engine,
    pg: StoppablePg,  # noqa: F811
) -> None:
    rid = create(client, auth, world)["id"]
    url = f"{BASE}/{rid}/votes"
    dana, dave = auth("dana", "dac"), auth("dave", "dac")
    assert client.get(url.rsplit("/", 1)[0], headers=dana).status_code == 200  # users cached

    pg.crash()  # before the vote
    _unavailable(client.post(url, headers=dana, json={"vote": "approve"}), pg.server.port)
    pg.restart()
    assert _counts(engine, rid) == (0, 0)
    first = client.post(url, headers=dana, json={"vote": "approve"})
    assert first.status_code == 201 and first.json()["votes_in"] == 1, first.text

    # During the vote: it waits on the request's row lock inside its transaction, then the
    # server dies under it.
    dsn = (
        pg.server.url()
        .replace("postgresql+psycopg", "postgresql")
        .replace("/postgres", "/" + engine.url.database)
    )
    holder = psycopg.connect(dsn)
    holder.execute("SELECT id FROM egress_requests WHERE id = %s FOR UPDATE", (rid,))
    # Watched from a connection of its own, outside any transaction: PostgreSQL keeps one
    # snapshot of pg_stat_activity for a whole transaction, so the holder (inside its own)
    # would see the first answer for ever.
    watcher = psycopg.connect(dsn, autocommit=True)
    answer: dict[str, Any] = {}
    voting = threading.Thread(
        target=lambda: answer.setdefault("resp", client.post(url, headers=dave, json={"vote": "approve"}))
    )
    voting.start()
    try:
        for _ in range(1200):  # until the vote waits on the lock (a loaded machine: up to 60 s)
            waiting = watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND query LIKE '%%egress_requests%%'"
            ).fetchone()
            if waiting and waiting[0]:
                break
            threading.Event().wait(0.05)
        else:
            raise AssertionError("the vote never waited on the row lock")
        pg.crash()
    finally:
        voting.join(timeout=60)
        watcher.close()
        holder.close()
    _unavailable(answer["resp"], pg.server.port)
    pg.restart()
    assert _counts(engine, rid) == (1, 1)  # nothing of the refused vote kept

    # Retried: kept once; a repeated vote is refused in words; nothing doubled.
    again = client.post(url, headers=dave, json={"vote": "approve"})
    assert again.status_code == 201 and again.json()["state"] == "approved", again.text
    repeat = client.post(url, headers=dana, json={"vote": "approve"})
    assert repeat.status_code == 409 and repeat.headers["content-type"].startswith("application/problem+json")
    assert _counts(engine, rid) == (2, 2)
