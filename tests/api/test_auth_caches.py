"""The API's per-request shortcuts keep their promises (docs/api-load.md).

* a verified token is answered from the cache only until its own expiry, and a token that
  differs in one byte is checked afresh;
* a role change made through this process takes effect on the next request; one made behind
  its back (another process, raw SQL) within the user cache's lifetime, and not before;
* the SQLite writer lock excludes a writer in another process, not only other threads.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from tests.conftest import World
from tre.auth.tokens import TokenError, TokenIssuer, TokenVerifier
from tre.auth.user_cache import UserAccessCache
from tre.config import Settings
from tre.store.db import session_scope
from tre.store.writer_lock import WriterLock, lock_file_for


def test_a_cached_token_is_not_trusted_past_its_expiry(settings: Settings) -> None:
    verifier = TokenVerifier(settings)
    token = TokenIssuer.from_settings(settings).mint("alice", ["researcher"], ttl_s=2)
    assert verifier.cached(token) is None
    assert verifier.verify(token)["sub"] == "alice"
    assert verifier.cached(token) is not None  # the second request skips the signature check
    time.sleep(2.2)
    assert verifier.cached(token) is None  # expired: back to the full check


def test_a_token_changed_in_one_byte_is_checked_not_looked_up(settings: Settings) -> None:
    verifier = TokenVerifier(settings)
    token = TokenIssuer.from_settings(settings).mint("alice", ["researcher"])
    verifier.verify(token)
    head, payload, sig = token.split(".")
    forged = ".".join((head, payload, ("A" if sig[0] != "A" else "B") + sig[1:]))
    assert verifier.cached(forged) is None
    with pytest.raises(TokenError, match="signature"):
        verifier.verify(forged)


def test_roles_taken_away_through_the_api_apply_to_the_next_request(app_client, world: World) -> None:  # type: ignore[no-untyped-def]
    assert app_client.get("/api/v1/jobs", headers=world.headers["alice"]).status_code == 200
    r = app_client.put("/api/v1/admin/users/alice/roles", headers=world.headers["root"], json={"roles": []})
    assert r.status_code == 200, r.text
    assert app_client.get("/api/v1/jobs", headers=world.headers["alice"]).status_code == 403


def test_roles_taken_away_behind_the_apis_back_apply_within_the_cache_lifetime(  # type: ignore[no-untyped-def]
    app, app_client, engine: Engine, world: World
) -> None:
    app.state.user_cache = UserAccessCache(ttl_s=1.0)
    assert app_client.get("/api/v1/jobs", headers=world.headers["alice"]).status_code == 200
    with session_scope(engine) as s:  # no ORM objects: what another process's change looks like
        s.execute(text("DELETE FROM user_roles WHERE user_id = 'alice'"))
    assert app_client.get("/api/v1/jobs", headers=world.headers["alice"]).status_code == 200  # cached
    time.sleep(1.1)
    assert app_client.get("/api/v1/jobs", headers=world.headers["alice"]).status_code == 403


def _hold(lock_file: str, held: mp.synchronize.Event, release: mp.synchronize.Event) -> None:
    lock = WriterLock(Path(lock_file))
    assert lock.acquire(True, 10)
    held.set()
    release.wait(timeout=30)
    lock.release()


def test_the_writer_lock_excludes_another_process(settings: Settings) -> None:
    lock_file = lock_file_for(str(settings.home / "tre.db"))
    assert lock_file is not None and lock_file.name == "tre.db-writer.lock"
    ctx = mp.get_context("spawn")
    held, release = ctx.Event(), ctx.Event()
    other = ctx.Process(target=_hold, args=(str(lock_file), held, release))
    other.start()
    try:
        assert held.wait(timeout=60)
        mine = WriterLock(lock_file)
        t0 = time.monotonic()
        assert not mine.acquire(True, 0.3)  # the other process holds it
        assert time.monotonic() - t0 >= 0.3
        release.set()
        assert mine.acquire(True, 10)
        mine.release()
    finally:
        release.set()
        other.join(timeout=30)
    assert other.exitcode == 0


def test_in_memory_databases_need_no_lock_file(tmp_path: Path) -> None:
    assert lock_file_for(":memory:") is None and lock_file_for("") is None
    lock = WriterLock(None)
    assert lock.acquire(True, 1)
    assert not lock.acquire(True, 0.05)  # still a mutex between threads
    lock.release()
