"""A signed-out token is refused from then on, wherever a copy of it is: `POST
/api/v1/auth/logout` (``tre logout``) and the panel's sign-out revoke the token itself, not
just the client's copy. Before, clearing the panel's cookie left the token in it valid for
hours to anyone holding a copy (the browser profile, a proxy log)."""

from __future__ import annotations

import re

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text

from tests.api.test_cli_for_people import live as live  # noqa: F401 - the fixture
from tests.api.test_cli_for_people import one_line_error, tre
from tre.auth.revocation import token_digest
from tre.auth.user_cache import UserAccessCache
from tre.store.db import session_scope
from tre.store.models import AuditEntry, RevokedToken


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_token_signed_out_through_the_api_is_refused_everywhere(
    app_client, world, token_for, engine
) -> None:  # type: ignore[no-untyped-def]
    token, other = token_for("alice", "researcher"), token_for("alice", "researcher")
    assert app_client.get("/api/v1/jobs", headers=_bearer(token)).status_code == 200  # read cache warm
    assert app_client.post("/api/v1/auth/logout", headers=_bearer(token)).status_code == 204
    for path in ("/api/v1/jobs", "/api/v1/me", "/api/v1/projects"):
        resp = app_client.get(path, headers=_bearer(token))
        assert resp.status_code == 401, (path, resp.text)
        assert resp.headers["content-type"] == "application/problem+json"
        assert resp.json()["type"].endswith("token-revoked")
    assert app_client.post("/api/v1/auth/logout", headers=_bearer(token)).status_code == 401
    assert app_client.get("/api/v1/jobs", headers=_bearer(other)).status_code == 200  # her other token
    with session_scope(engine) as s:
        logouts = s.scalar(select(func.count()).where(AuditEntry.action == "auth.logout"))
    assert logouts == 1


def test_a_sign_out_recorded_by_another_process_applies_once_the_user_cache_renews(  # type: ignore[no-untyped-def]
    app, app_client, world, token_for, engine
) -> None:
    token = token_for("alice", "researcher")
    assert app_client.get("/api/v1/jobs", headers=_bearer(token)).status_code == 200
    with session_scope(engine) as s:  # raw SQL: what `tre` in another process leaves behind
        s.execute(
            text(
                "INSERT INTO revoked_tokens (token_sha256, user_id, revoked_at, expires_at) "
                "VALUES (:d, 'alice', '2026-01-01 00:00:00', '2999-01-01 00:00:00')"
            ),
            {"d": token_digest(token)},
        )
    app.state.user_cache = UserAccessCache()  # what `TTL_S` seconds later looks like
    assert app_client.get("/api/v1/jobs", headers=_bearer(token)).status_code == 401


def test_expired_sign_outs_are_forgotten(app_client, world, token_for, engine) -> None:  # type: ignore[no-untyped-def]
    short = token_for("bob", "researcher", ttl_s=1)
    with session_scope(engine) as s:
        s.execute(
            text(
                "INSERT INTO revoked_tokens (token_sha256, user_id, revoked_at, expires_at) "
                "VALUES ('00', 'bob', '2020-01-01 00:00:00', '2020-01-01 00:00:01')"
            )
        )
    assert app_client.post("/api/v1/auth/logout", headers=_bearer(short)).status_code == 204
    with session_scope(engine) as s:
        assert s.scalars(select(RevokedToken.token_sha256)).all() == [token_digest(short)]


def _panel_sign_in(client: TestClient, token: str) -> None:
    page = client.get("/panel/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf, page.text
    resp = client.post("/panel/login", data={"token": token, "csrf": csrf.group(1)}, follow_redirects=False)
    assert resp.status_code == 303, resp.text


def test_a_panel_cookie_copied_before_sign_out_opens_nothing_after_it(app, world, token_for) -> None:  # type: ignore[no-untyped-def]
    token = token_for("dana", "dac")
    with TestClient(app) as reviewer, TestClient(app) as thief:
        _panel_sign_in(reviewer, token)
        stolen = reviewer.cookies.get("tre_panel_token")
        assert stolen == token
        thief.cookies.set("tre_panel_token", stolen, path="/panel")
        assert thief.get("/panel/", follow_redirects=False).status_code == 200
        csrf = re.search(r'name="csrf" value="([^"]+)"', reviewer.get("/panel/").text)
        assert csrf
        out = reviewer.post("/panel/logout", data={"csrf": csrf.group(1)}, follow_redirects=False)
        assert out.status_code == 303 and out.headers["location"] == "/panel/login?out=1"
        resp = thief.get("/panel/", follow_redirects=False)
        assert resp.status_code == 303 and resp.headers["location"] == "/panel/login?ended=signed-out"
        assert thief.get("/api/v1/me", headers=_bearer(stolen)).status_code == 401


def test_tre_logout_signs_the_saved_token_out_and_forgets_it(live, settings) -> None:  # type: ignore[no-untyped-def]
    env, token = live
    assert tre(env, "login", stdin=token + "\n").returncode == 0
    saved = settings.home / "credentials.json"
    assert saved.stat().st_mode & 0o777 == 0o600
    proc = tre(env, "logout")
    assert proc.returncode == 0 and "signed out" in proc.stdout, proc.stderr
    assert not saved.exists()
    assert httpx.get(f"{env['TRE_API_URL']}/api/v1/me", headers=_bearer(token)).status_code == 401
    one_line_error(tre(env, "whoami"), 1, "not logged in")


def test_a_token_is_read_from_the_authorization_header_only(app, app_client, world) -> None:  # type: ignore[no-untyped-def]
    """Never from the query string (it lands in proxy and server logs, browser history and
    Referer headers), nor is the panel's cookie a bearer token for the API."""
    token = world.headers["alice"]["Authorization"].removeprefix("Bearer ")
    for query in ("access_token", "token", "jwt", "authorization"):
        resp = app_client.get(f"/api/v1/jobs?{query}={token}")
        assert resp.status_code == 401 and resp.json()["type"].endswith("missing-token"), query
    with TestClient(app) as browser:
        browser.cookies.set("tre_panel_token", token)
        assert browser.get("/api/v1/jobs").status_code == 401
    dac = world.headers["dana"]["Authorization"].removeprefix("Bearer ")
    assert app_client.get(f"/panel/?token={dac}", follow_redirects=False).status_code == 303


def test_sign_out_on_each_store(settings, engine_any, token_for) -> None:  # type: ignore[no-untyped-def]
    """SQLite and PostgreSQL: the sign-out is stored, refused until the token's expiry, and an
    expired one is dropped at the next sign-out."""
    from tests.worlds import WorldFactory
    from tre.api.app import create_app

    with session_scope(engine_any) as s:
        WorldFactory(s).users({"root": ["admin"], "erin": ["researcher"]})
    token, other = token_for("erin", "researcher"), token_for("erin", "researcher", ttl_s=5)
    with TestClient(create_app(settings, engine_any)) as client:
        assert client.post("/api/v1/auth/logout", headers=_bearer(token)).status_code == 204
        assert client.get("/api/v1/me", headers=_bearer(token)).status_code == 401
        assert client.get("/api/v1/me", headers=_bearer(other)).status_code == 200
        with session_scope(engine_any) as s:
            s.execute(text("UPDATE revoked_tokens SET expires_at = revoked_at"))  # as if long past
        assert client.post("/api/v1/auth/logout", headers=_bearer(other)).status_code == 204
    with session_scope(engine_any) as s:
        assert s.scalars(select(RevokedToken.token_sha256)).all() == [token_digest(other)]
