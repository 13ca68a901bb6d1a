"""The review panel signs in through a real OpenID provider, in a real Chromium.

The provider (npm oidc-provider, certified) runs on ``localhost`` and the panel on
``127.0.0.1``: two sites, so the browser applies its cross-site cookie rules as it would
between a hospital's identity provider and the TRE. The provider requires PKCE for every
client; the test types a username into its login form and confirms consent.
"""

from __future__ import annotations

import base64
import hashlib
import json
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from tests.oidc.conftest import PANEL_CLIENT, PANEL_SECRET
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


def hold_answer(page, world, username: str = "dana") -> str:  # type: ignore[no-untyped-def]
    """Sign in at the provider while the panel is off the air, and return the provider's
    answer (the callback URL with code and state) unused; the panel is back afterwards."""
    answers: list[str] = []
    page.on("requestfailed", lambda r: answers.append(r.url) if "/panel/oidc/callback" in r.url else None)
    world.stop_panel()
    try:
        provider_login(page, username)
        for _ in range(100):
            if answers:
                break
            page.wait_for_timeout(100)
        # Let the failed visit settle on Chromium's error page before the test navigates.
        page.wait_for_timeout(500)
        page.wait_for_load_state("load")
    finally:
        world.restart_panel()
    assert answers, "the provider never sent the browser back"
    return answers[0]


def reason_on(page) -> str:  # type: ignore[no-untyped-def]
    return str(page.get_attribute("#oidc-error", "data-reason"))


def test_a_researcher_signing_in_is_refused_and_audited(browser, oidc_world, engine) -> None:
    context = browser.new_context()
    page = start_sign_in(context, oidc_world.live)
    provider_login(page, "alice")
    page.wait_for_selector("#oidc-error")
    assert reason_on(page) == "not-a-reviewer"
    assert "alice" in page.inner_text("#oidc-error") and "dac or admin" in page.inner_text("#oidc-error")
    assert "Traceback" not in page.content()
    assert "tre_panel_token" not in {c["name"] for c in context.cookies()}
    page.goto(f"{oidc_world.live.url}/panel/")
    assert page.url.endswith("/panel/login")  # still not signed in
    refused = audit_actions(engine, "auth.oidc_refused")
    assert [(e["actor"], e["details"]["reason"]) for e in refused] == [("alice", "not-a-reviewer")]
    context.close()


def test_a_provider_account_tre_does_not_know_is_refused(browser, oidc_world) -> None:
    context = browser.new_context()
    page = start_sign_in(context, oidc_world.live)
    provider_login(page, "mallory")  # the provider vouches for mallory; tre has no such user
    page.wait_for_selector("#oidc-error")
    assert reason_on(page) == "access-token"
    assert "unknown or disabled" in page.inner_text("#oidc-error")
    context.close()


def test_tampered_state_is_refused_and_the_answer_cannot_be_replayed(browser, oidc_world, engine) -> None:
    live = oidc_world.live
    context = browser.new_context()
    page = start_sign_in(context, live)
    held = [hold_answer(page, oidc_world)]
    answer = urlsplit(held[0])
    params = parse_qs(answer.query)
    tampered = {**{k: v[0] for k, v in params.items()}, "state": params["state"][0][:-4] + "AAAA"}
    resp = page.goto(f"{live.url}/panel/oidc/callback?{urlencode(tampered)}")
    assert resp is not None and resp.status == 401
    assert reason_on(page) == "bad-state"
    # The refusal used up this browser's pending sign-in: the genuine answer is now stale.
    resp = page.goto(held[0])
    assert resp is not None and resp.status == 401
    assert reason_on(page) == "sign-in-expired"
    assert "tre_panel_token" not in {c["name"] for c in context.cookies()}
    # The same genuine answer in a browser that never started a sign-in: refused too.
    other = browser.new_context()
    p2 = other.new_page()
    p2.goto(held[0])
    assert reason_on(p2) == "sign-in-expired"
    reasons = {e["details"]["reason"] for e in audit_actions(engine, "auth.oidc_refused")}
    assert {"bad-state", "sign-in-expired"} <= reasons
    refused = [
        e for e in audit_actions(engine, "auth.refused") if e["details"]["route"] == "/panel/oidc/callback"
    ]
    assert refused and refused[0]["details"]["status"] == 401
    other.close()
    context.close()


def test_pkce_is_sent_and_the_provider_requires_it(browser, oidc_world) -> None:
    live, issuer = oidc_world.live, oidc_world.issuer
    discovery = httpx.get(f"{issuer}/.well-known/openid-configuration").json()
    redirect_uri = f"{live.url}/panel/oidc/callback"
    # Without a code challenge the provider refuses the authorization request outright.
    bare = httpx.get(
        discovery["authorization_endpoint"],
        params={
            "client_id": PANEL_CLIENT,
            "response_type": "code",
            "redirect_uri": redirect_uri,
            "scope": "openid tre",
            "state": "s" * 20,
            "nonce": "n" * 20,
        },
    )
    assert bare.status_code in (302, 303)
    refused = parse_qs(urlsplit(bare.headers["location"]).query)
    assert refused["error"] == ["invalid_request"]
    assert "requires PKCE" in refused["error_description"][0]

    context = browser.new_context()
    page = context.new_page()
    authorize: list[str] = []
    page.on(
        "request",
        lambda r: authorize.append(r.url) if r.url.startswith(discovery["authorization_endpoint"]) else None,
    )
    page.goto(f"{live.url}/panel/login")
    page.click("#oidc-sign-in")
    page.wait_for_selector("input[name=login]")
    sent = parse_qs(urlsplit(authorize[0]).query)
    assert sent["code_challenge_method"] == ["S256"]
    assert len(sent["code_challenge"][0]) == 43  # base64url of a SHA-256 digest
    assert sent["state"][0] and sent["nonce"][0] and sent["client_id"] == [PANEL_CLIENT]
    code = parse_qs(urlsplit(hold_answer(page, oidc_world)).query)["code"][0]
    # The code is bound to the challenge: a verifier that does not hash to it gets nothing,
    # even with the client's own secret.
    wrong = base64.urlsafe_b64encode(hashlib.sha256(b"not the verifier").digest()).rstrip(b"=").decode()
    exchange = httpx.post(
        discovery["token_endpoint"],
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": wrong,
        },
        auth=(PANEL_CLIENT, PANEL_SECRET),
    )
    assert exchange.status_code == 400 and exchange.json()["error"] == "invalid_grant"
    assert "access_token" not in exchange.json()
    context.close()


def test_consent_cancelled_at_the_provider_gives_a_clear_page(browser, oidc_world) -> None:
    context = browser.new_context()
    page = start_sign_in(context, oidc_world.live)
    page.wait_for_selector("input[name=login]")
    page.click("text=[ Cancel ]")
    page.wait_for_selector("#oidc-error")
    assert reason_on(page) == "consent-denied"
    assert "cancelled or refused at Test IdP" in page.inner_text("#oidc-error")
    page.click("#start-again")
    page.wait_for_selector("#oidc-sign-in")
    context.close()


def test_sign_out_ends_the_session_here_and_at_the_provider(browser, oidc_world) -> None:
    live = oidc_world.live
    context = browser.new_context()
    page = start_sign_in(context, live)
    provider_login(page, "dana")
    page.wait_for_url(f"{live.url}/panel/")
    token = {c["name"]: c["value"] for c in context.cookies()}["tre_panel_token"]
    page.click("button:has-text('Sign out')")
    # RP-initiated logout: the provider asks to confirm, then sends the browser back.
    page.wait_for_selector("button:has-text('Yes, sign me out')")
    page.click("button:has-text('Yes, sign me out')")
    page.wait_for_url(f"{live.url}/panel/login?state=signed-out")
    # The page says the sign-out happened, as without a provider (it was the plain sign-in page).
    assert "You have signed out of the review panel" in page.inner_text("#signed-out")
    names = {c["name"] for c in context.cookies() if c["domain"] == "127.0.0.1"}
    assert not names & {"tre_panel_token", "tre_panel_idt"}
    page.goto(f"{live.url}/panel/")
    assert page.url.endswith("/panel/login")
    # The provider's session is over too: signing in again asks for the username again.
    page.click("#oidc-sign-in")
    page.wait_for_selector("input[name=login]")
    # The access token is signed out at tre too: a copy of the cookie opens nothing here
    # (it stays valid at the provider until it expires).
    after = httpx.get(f"{live.url}/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert after.status_code == 401 and after.json()["type"].endswith("token-revoked")
    context.close()
