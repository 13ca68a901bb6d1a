"""The review panel signs in through a real OpenID provider, in a real Chromium.

The provider (npm oidc-provider, certified) runs on ``localhost`` and the panel on
``127.0.0.1``: two sites, so the browser applies its cross-site cookie rules as it would
between a hospital's identity provider and the TRE. The provider requires PKCE for every
client; the test types a username into its login form and confirms consent.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tre.store.db import session_scope
from tre.store.models import AuditEntry

pytestmark = pytest.mark.browser


def provider_login(page, username: str) -> None:  # type: ignore[no-untyped-def]
    """The provider's login and consent pages (devInteractions), as a person fills them."""
    page.wait_for_selector("input[name=login]")
    page.fill("input[name=login]", username)
    page.fill("input[name=password]", "any password")
    page.click("button[type=submit]")
    page.wait_for_selector("button:has-text('Continue')")
    page.click("button:has-text('Continue')")


def start_sign_in(context, live):  # type: ignore[no-untyped-def]
    page = context.new_page()
    page.goto(f"{live.url}/panel/")
    assert page.url.endswith("/panel/login")
    assert page.locator("#token").count() == 0  # no paste-a-token form with an OIDC issuer
    assert page.inner_text("#oidc-sign-in") == "Sign in with Test IdP"
    page.click("#oidc-sign-in")
    return page


def audit_actions(engine, action: str) -> list[dict]:  # type: ignore[no-untyped-def]
    with session_scope(engine) as s:
        rows = s.query(AuditEntry).filter(AuditEntry.action == action).all()
        return [json.loads(r.body) for r in rows]


def test_dac_member_signs_in_with_pkce_and_lands_on_the_queue(browser, oidc_world, engine) -> None:
    live = oidc_world.live
    context = browser.new_context()
    page = start_sign_in(context, live)
    # The authorization request carries an S256 PKCE challenge, state and nonce.
    auth = parse_qs(urlsplit(page.url).query) if "/auth" in page.url else {}
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    provider_login(page, "dana")
    page.wait_for_url(f"{live.url}/panel/")
    assert page.inner_text("#whoami") == "dana"
    assert page.locator("h1", has_text="Egress requests").count() == 1
    cookies = {c["name"]: c for c in context.cookies()}
    session = cookies["tre_panel_token"]
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert "tre_panel_oidc" not in cookies  # the pending sign-in is used up
    assert page.evaluate("document.cookie") == ""
    # The session cookie is an access token for the API from the provider: the API takes it.
    me = httpx.get(f"{live.url}/api/v1/me", headers={"Authorization": f"Bearer {session['value']}"})
    assert me.status_code == 200 and me.json()["roles"] == ["dac"]
    logins = [e for e in audit_actions(engine, "auth.login") if e["details"].get("via") == "panel-oidc"]
    assert [e["actor"] for e in logins] == ["dana"]
    callback = next(u for u in requests if "/panel/oidc/callback" in u)
    assert "code=" in callback and "state=" in callback
    context.close()
    del auth
