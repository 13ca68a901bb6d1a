"""Pooled PostgreSQL connections: pinged after idling, not on every checkout (real server)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, event, text

from tre.store import db as store_db
from tre.store.db import make_engine


@pytest.fixture
def pg_engine(pg_server: object) -> Iterator[Engine]:
    engine = make_engine(pg_server.create_database(), pool_size=1, max_overflow=0)  # type: ignore[attr-defined]
    yield engine
    engine.dispose()


def _backend_pid(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _kill(url: object, pid: int) -> None:
    other = make_engine(str(url))
    try:
        with other.connect() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar_one()
            conn.commit()
    finally:
        other.dispose()


def _pings(engine: Engine) -> list[object]:
    seen: list[object] = []
    original = engine.dialect.do_ping

    def counting(dbapi_conn: object) -> bool:
        seen.append(dbapi_conn)
        return original(dbapi_conn)

    engine.dialect.do_ping = counting  # type: ignore[method-assign]
    return seen


def test_a_connection_used_moments_ago_is_not_pinged(pg_engine: Engine) -> None:
    pings = _pings(pg_engine)
    first = _backend_pid(pg_engine)
    for _ in range(5):
        assert _backend_pid(pg_engine) == first  # the same pooled connection, reused
    assert pings == []


def test_a_dead_idle_connection_is_replaced_before_use(
    pg_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server killed the pooled connection while it idled (a restart, a firewall):
    the next unit of work gets a fresh connection and succeeds, with no error to anyone."""
    monkeypatch.setattr(store_db, "PING_AFTER_IDLE_S", 0.0)
    pings = _pings(pg_engine)
    dead = _backend_pid(pg_engine)
    _kill(pg_engine.url.render_as_string(hide_password=False), dead)
    replaced = _backend_pid(pg_engine)
    assert replaced != dead
    assert len(pings) >= 1


def test_without_the_ping_a_dead_connection_fails_loudly(
    pg_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other side of the trade-off, so the test above cannot pass by accident: with the
    idle window not yet over, the dead connection is used, its statement fails, and the pool
    is invalidated so that the next unit of work connects afresh."""
    monkeypatch.setattr(store_db, "PING_AFTER_IDLE_S", 3600.0)
    dead = _backend_pid(pg_engine)
    _kill(pg_engine.url.render_as_string(hide_password=False), dead)
    errors: list[BaseException] = []
    event.listen(pg_engine, "handle_error", lambda ctx: errors.append(ctx.original_exception))
    with pytest.raises(Exception):  # noqa: B017 - the driver's own disconnect error
        _backend_pid(pg_engine)
    assert errors and errors[0] is not None
    assert _backend_pid(pg_engine) != dead
