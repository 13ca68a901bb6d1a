"""Refused panel sign-ins are pages, not tracebacks, and are audited (no provider needed:
these refusals happen before the panel talks to one)."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient
from pydantic import SecretStr

from tre.api.app import create_app
from tre.store.db import session_scope
from tre.store.models import AuditEntry


def _entries(engine, action: str) -> list[dict]:  # type: ignore[no-untyped-def]
    with session_scope(engine) as s:
        return [json.loads(e.body) for e in s.query(AuditEntry).filter(AuditEntry.action == action)]


def _oidc(settings):  # type: ignore[no-untyped-def]
    return settings.model_copy(
        update={
            "auth_mode": "oidc",
            "oidc_issuer": "http://localhost:9",  # never contacted by these tests
            "oidc_client_id": "tre-panel",
            "oidc_client_secret": SecretStr("s" * 32),
            "oidc_redirect_url": "http://testserver/panel/oidc/callback",
        }
    )


def test_a_callback_without_a_pending_sign_in_is_a_clear_audited_page(settings, engine) -> None:
    with TestClient(create_app(_oidc(settings), engine)) as client:
        forged = client.get("/panel/oidc/callback", params={"state": "x" * 43, "code": "stolen"})
        cancelled = client.get("/panel/oidc/callback", params={"error": "access_denied"})
    for resp in (forged, cancelled):
        assert resp.status_code == 401
        assert resp.headers["content-type"].startswith("text/html")
        assert 'data-reason="sign-in-expired"' in resp.text and "Traceback" not in resp.text
        assert "Back to sign-in" in resp.text
    # One windowed entry with the reason, and the refusal middleware's own entry.
    refused = _entries(engine, "auth.oidc_refused")
    assert [e["details"]["reason"] for e in refused] == ["sign-in-expired"]
    routes = [e["details"]["route"] for e in _entries(engine, "auth.refused")]
    assert "/panel/oidc/callback" in routes


def test_the_paste_a_token_form_is_only_for_the_embedded_issuer(settings, engine, token_for) -> None:
    with TestClient(create_app(_oidc(settings), engine)) as client:
        page = client.get("/panel/login")
        assert 'id="oidc-sign-in"' in page.text and 'name="token"' not in page.text
        csrf = client.cookies.get("tre_panel_csrf")
        pasted = client.post("/panel/login", data={"token": token_for("dana", "dac"), "csrf": csrf})
        assert pasted.status_code == 403 and "only for the embedded issuer" in pasted.text
    with TestClient(create_app(settings, engine)) as client:
        page = client.get("/panel/login")
        assert 'name="token"' in page.text and 'id="oidc-sign-in"' not in page.text
        assert client.get("/panel/oidc/start").status_code == 404  # no provider, no route to one
        csrf = client.cookies.get("tre_panel_csrf")
        bad = client.post("/panel/login", data={"token": "not.a.token", "csrf": csrf})
        assert bad.status_code == 401
    # The refused paste is audited (the middleware's write does not wait on the request's lock).
    statuses = {(e["details"]["route"], e["details"]["status"]) for e in _entries(engine, "auth.refused")}
    assert {("/panel/login", 403), ("/panel/login", 401)} <= statuses


def test_an_oidc_issuer_without_a_panel_client_offers_no_sign_in(settings, engine) -> None:
    s = settings.model_copy(update={"auth_mode": "oidc", "oidc_issuer": "http://localhost:9"})
    with TestClient(create_app(s, engine)) as client:
        page = client.get("/panel/login")
    assert 'id="no-sign-in"' in page.text and 'name="token"' not in page.text
