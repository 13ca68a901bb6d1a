"""Round 16: every refusal of the route sweep is in the audit log, counted.

docs/audit.md: *every answer of 401, 403 or 404 on any route is recorded as ``auth.refused``*
(status, method, route template, the caller or ``anonymous``), the first of each key at once
and its repeats as one count when the window ends. `test_route_sweep` shows each route refuses
each bad caller with a problem document; this shows each of those refusals is accounted for:
for every key, the entries' counts (first + repeats) equal the refusals answered.

Every route of the app is walked (``app.routes``), with no token, an expired token, a token
signed by another key, ``alg: none``, a token of each role, and a disabled user's token.

It failed before round 16: past the window's 200 keys, refusals were counted in one overflow
entry under ``anonymous``, so the sweep's refusals of alice, bob, dana, audrey and root on the
last routes walked were in no entry of theirs (``tre audit search --user`` found none). The
200 keys are easily spent: ~110 anonymous keys (401 on every route and method) need no token
at all, and a few users' mistakes the rest. Now anonymous and signed-in callers have budgets
of their own, and past it each caller's refusals are one count under that caller.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from tests.security.test_route_sweep import (  # noqa: F401 - `ids` is a fixture
    PANEL_SESSION,
    PUBLIC,
    SIGNS_OUT,
    _call,
    _claims,
    _concrete,
    app_routes,
    ids,
)
from tre.audit.refusals import MAX_KEYS_PER_WINDOW, REFUSED, record_or_keep
from tre.store.db import session_scope
from tre.store.models import AuditEntry, User

Key = tuple[int, str, str, str]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _recorded(engine: Any) -> tuple[Counter[Key], Counter[str]]:
    """Refusals the log accounts for: by key (each first entry counts 1, a summary its count),
    and past the window's key budget, by caller (``auth.refused_overflow``)."""
    with session_scope(engine) as s:
        bodies = s.scalars(select(AuditEntry.body).where(AuditEntry.action.startswith("auth.refused"))).all()
    keyed: Counter[Key] = Counter()
    overflow: Counter[str] = Counter()
    for body in map(json.loads, bodies):
        d = body["details"]
        if body["action"] == "auth.refused_overflow":
            overflow[body["actor"]] += d["count"]
        else:
            keyed[(d["status"], d["method"], d["route"], body["actor"])] += d["count"]
    return keyed, overflow


@pytest.mark.parametrize("budget", [MAX_KEYS_PER_WINDOW, 20], ids=["keys-tracked", "keys-overflow"])
def test_every_refusal_on_every_route_is_recorded_and_counted(  # type: ignore[no-untyped-def]
    app,
    app_client,
    world,
    ids,  # noqa: F811 - the fixture imported above
    engine,
    settings,
    token_for,
    budget,
) -> None:
    """With the real budget, every signed-in caller's refusal has its keyed entry; with a
    budget of 20 keys, the rest are counted under each caller's own name."""
    app.state.refusals.max_keys = budget  # the counter the refusal middleware uses
    expired = token_for("alice", "researcher", ttl_s=-120)
    other_key = jwt.encode(_claims(settings), Ed25519PrivateKey.generate(), algorithm="EdDSA")
    head_none = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    alg_none = f"{head_none}.{_b64(json.dumps(_claims(settings)).encode())}."
    with session_scope(engine) as s:
        s.add(User(id="zed", display_name="zed", disabled=True))
    callers: dict[str, dict[str, str]] = {
        "no token": {},
        "expired": {"Authorization": f"Bearer {expired}"},
        "another key": {"Authorization": f"Bearer {other_key}"},
        "alg none": {"Authorization": f"Bearer {alg_none}"},
        "disabled user": {"Authorization": f"Bearer {token_for('zed', 'admin')}"},
        **{who: world.headers[who] for who in ("alice", "bob", "dana", "audrey", "root")},
    }
    answered: Counter[Key] = Counter()
    for method, path in app_routes(app.routes):
        if (method, path) in PUBLIC or (method, path) in PANEL_SESSION or (method, path) in SIGNS_OUT:
            continue
        for who, headers in callers.items():
            resp = _call(app_client, method, _concrete(path, ids), headers)
            if resp.status_code in REFUSED:
                assert resp.headers["content-type"].startswith("application/problem+json"), (who, path)
                assert resp.json().get("detail"), (who, method, path, resp.json())  # a reason
                actor = who if who in world.headers else "anonymous"
                answered[(resp.status_code, method, path, actor)] += 1
    counter = app.state.refusals
    record_or_keep(engine, counter, counter.flush())  # what the window's end (or shutdown) writes
    keyed, overflow = _recorded(engine)
    assert sum(answered.values()) > 300  # the sweep did refuse
    # Each key's refusals are in its entries, or (past the window's key budget) in its caller's
    # overflow count: per caller, every refusal answered is accounted for, none twice.
    by_actor: Counter[str] = Counter()
    for key, n in answered.items():
        assert keyed.get(key, 0) in (0, n), (key, n, keyed.get(key))
        if keyed.get(key, 0) == 0:
            by_actor[key[3]] += n
    assert by_actor == overflow
    # The sweep refuses more keys than a window tracks: past the budget, each signed-in
    # caller's refusals are still counted under that caller (was: all under ``anonymous``).
    signed_in = {k for k in answered if k[3] != "anonymous"}
    if budget == MAX_KEYS_PER_WINDOW:
        assert signed_in <= set(keyed), "signed-in callers' refusals lost their route to anonymous ones"
    else:
        assert set(overflow) >= {"anonymous", "alice", "bob", "dana", "audrey", "root"}, overflow


def test_a_signed_in_caller_the_panel_refuses_is_named_in_the_refusal(  # type: ignore[no-untyped-def]
    app_client, world, engine, token_for
) -> None:
    """A researcher's and an auditor's valid session on the review panel (its pages, and the
    sign-in form given their token): refused (403), and the refusal names who. Was:
    ``anonymous`` for both (the panel checked the role before it named the caller), so the
    two were one key, and a researcher trying the DAC panel was in no entry of theirs."""
    from egress_review.panel.auth import CSRF_COOKIE, TOKEN_COOKIE

    for who, role in (("alice", "researcher"), ("audrey", "auditor")):
        token = token_for(who, role)
        app_client.cookies.clear()
        app_client.cookies.set(TOKEN_COOKIE, token, path="/panel")
        assert app_client.get("/panel/", follow_redirects=False).status_code == 403
        app_client.cookies.clear()
        page = app_client.get("/panel/login")
        csrf = app_client.cookies.get(CSRF_COOKIE) or ""
        form = {"token": token, "csrf": csrf, "next": "/panel/"}
        assert app_client.post("/panel/login", data=form, follow_redirects=False).status_code == 403, (
            page.text
        )
    keyed, _ = _recorded(engine)
    assert {(k[0], k[2], k[3]) for k in keyed if k[3] != "anonymous"} == {
        (403, "/panel/", "alice"),
        (403, "/panel/login", "alice"),
        (403, "/panel/", "audrey"),
        (403, "/panel/login", "audrey"),
    }


def test_a_failed_panel_session_is_a_recorded_refusal_though_answered_with_a_redirect(  # type: ignore[no-untyped-def]
    app_client,
    world,
    ids,  # noqa: F811 - the fixture imported above
    engine,
    token_for,
) -> None:
    """A panel page with a session cookie that fails authentication (forged, expired, of a
    user the registry does not have) is sent to the sign-in page (303), which the refusal
    audit did not count: probing the panel with tokens left no entry. Now each is an
    ``auth.refused`` 401 of the page's route; a browser with no session at all is not."""
    from egress_review.panel.auth import TOKEN_COOKIE

    header, payload, _sig = token_for("dana", "dac").split(".")
    cookies = {
        "forged": f"{header}.{payload}.{'A' * 86}",
        "expired": token_for("dana", "dac", ttl_s=-120),
        "unknown user": token_for("ghost", "dac"),
    }
    answered: Counter[Key] = Counter()
    for method, path in sorted(r for r in PANEL_SESSION if r[0] == "GET"):  # posts meet CSRF first
        app_client.cookies.clear()
        assert _call(app_client, method, _concrete(path, ids), {}).status_code == 303
        for what, token in cookies.items():
            app_client.cookies.clear()
            app_client.cookies.set(TOKEN_COOKIE, token, path="/panel")
            resp = _call(app_client, method, _concrete(path, ids), {})
            assert resp.status_code == 303, (what, method, path, resp.status_code)
            answered[(401, method, path, "anonymous")] += 1
    app_client.cookies.clear()
    keyed, _ = _recorded(engine)
    panel = {k: n for k, n in keyed.items() if k[2].startswith("/panel/")}
    assert set(panel) == set(answered), (panel, answered)
