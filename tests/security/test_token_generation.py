"""A token counts only for the user row it was issued to, and not across an enable.

A bearer token names its user by id, and ids are names: a user deleted and made again under
the same name accepted the old user's unexpired tokens, and a user disabled and enabled
again accepted every token issued before the disable (round 17, both residuals of round 16).
Each user row now carries the moment its tokens start to count (`tre.auth.generation`).
"""

from __future__ import annotations

import time
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.core.test_oidc import _oidc_settings, _token
from tests.core.test_oidc import idp as idp  # noqa: F401 - the fixture
from tre.api.app import create_app
from tre.auth import user_cache
from tre.auth.tokens import TokenIssuer
from tre.registry import create_user
from tre.store.base import utcnow
from tre.store.db import session_scope
from tre.store.models import User, UserRole

USERS = "/api/v1/admin/users"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _age(engine, user_id: str) -> None:  # type: ignore[no-untyped-def]
    """Make the user's row an hour old, as one made long before its token was."""
    with session_scope(engine) as s:
        user = s.get(User, user_id)
        assert user is not None
        user.created_at = user.tokens_valid_from = utcnow() - timedelta(hours=1)


def _recreate(engine, user_id: str, by_hand: bool) -> None:  # type: ignore[no-untyped-def]
    """Delete the user and make it again: through the registry, or by SQL as an operator
    restoring a row would (no tokens_valid_from: its created_at is the bound)."""
    with session_scope(engine) as s:
        for table in ("user_roles", "project_members", "revoked_tokens"):
            s.execute(text(f"DELETE FROM {table} WHERE user_id = :u"), {"u": user_id})  # noqa: S608
        s.execute(text("DELETE FROM users WHERE id = :u"), {"u": user_id})
    with session_scope(engine) as s:
        if by_hand:
            s.execute(
                text(
                    "INSERT INTO users (id, display_name, disabled, created_at) VALUES (:u, :u, false, :now)"
                ),
                {"u": user_id, "now": utcnow()},
            )
            s.execute(text("INSERT INTO user_roles VALUES (:u, 'researcher')"), {"u": user_id})
        else:
            create_user(s, "root", user_id, ["researcher"])
    user_cache.invalidate()  # what another process's change looks like TTL_S seconds later


def test_old_tokens_die_with_their_user_row_and_at_an_enable(app_client, world, settings, engine) -> None:  # type: ignore[no-untyped-def]
    issuer = TokenIssuer.from_settings(settings)
    earlier = int(time.time()) - 60  # an old token, issued before the change below
    for user_id, change in (("alice", "registry"), ("bob", "sql"), ("dana", "enable")):
        _age(engine, user_id)
        roles = ["dac"] if user_id == "dana" else ["researcher"]
        old = issuer.mint(user_id, roles, iat=earlier, nbf=earlier)
        assert app_client.get("/api/v1/me", headers=_bearer(old)).status_code == 200, change
        if change == "enable":
            for step in ("disable", "enable"):
                resp = app_client.post(f"{USERS}/{user_id}/{step}", headers=world.headers["root"])
                assert resp.status_code == 200, resp.text
        else:
            _recreate(engine, user_id, by_hand=change == "sql")
        resp = app_client.get("/api/v1/me", headers=_bearer(old))
        assert resp.status_code == 401, (change, resp.text)
        assert resp.headers["content-type"] == "application/problem+json"
        assert resp.json()["type"].endswith("token-superseded"), resp.text
        new = issuer.mint(user_id, roles)
        assert app_client.get("/api/v1/me", headers=_bearer(new)).status_code == 200, change


def test_an_oidc_token_from_before_the_user_row_is_refused(idp, settings, engine) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    key, url = idp
    with session_scope(engine) as s:
        s.add(User(id="carol", roles=[UserRole(role="researcher")]))
    client = TestClient(create_app(_oidc_settings(settings, url), engine))
    earlier = int(time.time()) - 60
    assert client.get("/api/v1/me", headers=_bearer(_token(key, iat=earlier))).status_code == 401
    assert client.get("/api/v1/me", headers=_bearer(_token(key))).status_code == 200
