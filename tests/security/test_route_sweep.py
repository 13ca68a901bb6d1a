"""Every route of the app, found by walking ``app.routes`` (not the OpenAPI document, which
leaves out the tlog tiles, the panel and anything marked ``include_in_schema=False``),
called with no token, an expired one, a forged one, every role that may not use it, and a
researcher of another project: each is refused with a problem document (401/403/404), never
answered 200 or 500.

The table below names, for each route, who must be refused. A route added to the app without
an entry here fails `test_every_route_is_classified`: whoever adds it decides who may use it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import delete

from egress_review.panel.auth import TOKEN_COOKIE
from tests.worlds import WorldFactory
from tre.auth.tokens import TokenIssuer
from tre.store.db import session_scope
from tre.store.models import User, UserRole

# Callers: alice (researcher, project p1, which owns the job and request used below), bob
# (researcher of p2 only), dana (DAC), audrey (auditor), root (admin).
EVERYONE = frozenset({"alice", "bob", "dana", "audrey", "root"})
NOBODY: frozenset[str] = frozenset()
ADMIN_ONLY = EVERYONE - {"root"}
NOT_SUBMITTERS = frozenset({"dana", "audrey"})  # researchers and admins submit
AUDITORS = frozenset({"alice", "bob", "dana"})  # audit reads: auditors (and admins for some)

# Answer without a token: how to sign in, the schema, the panel's sign-in pages.
PUBLIC = {
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/docs/static/{name}"),
    ("GET", "/api/v1/auth/config"),
    ("GET", "/panel/login"),
    ("POST", "/panel/login"),
    ("POST", "/panel/logout"),
    ("GET", "/panel/static/{name}"),
    ("GET", "/panel/oidc/start"),
    ("GET", "/panel/oidc/callback"),
}
# The panel's pages take its own session cookie, never a bearer token: without the cookie
# they send the browser to the sign-in page.
PANEL_SESSION = {
    ("GET", "/panel/"),
    ("GET", "/panel/requests/{request_id}"),
    ("GET", "/panel/requests/{request_id}/files/{file_id}/render.png"),
    ("GET", "/panel/requests/{request_id}/disclosure.json"),
    ("POST", "/panel/requests/{request_id}/vote"),
    ("POST", "/panel/requests/{request_id}/resolve"),
}
# Routes that sign the calling token out (the sweep gives them a token of their own).
SIGNS_OUT = {("POST", "/api/v1/auth/logout")}
ROLES = {
    "alice": ("researcher",),
    "bob": ("researcher",),
    "dana": ("dac",),
    "audrey": ("auditor",),
    "root": ("admin",),
}
# Who must be refused each bearer-token route (the p1 job, request and task ids are used).
REFUSED: dict[tuple[str, str], frozenset[str]] = {
    ("GET", "/api/v1/me"): NOBODY,
    ("POST", "/api/v1/auth/logout"): NOBODY,
    ("GET", "/api/v1/admin/users"): ADMIN_ONLY,
    ("POST", "/api/v1/admin/users"): ADMIN_ONLY,
    ("PUT", "/api/v1/admin/users/{user_id}/roles"): ADMIN_ONLY,
    ("POST", "/api/v1/admin/users/{user_id}/disable"): ADMIN_ONLY,
    ("POST", "/api/v1/admin/users/{user_id}/enable"): ADMIN_ONLY,
    ("GET", "/api/v1/admin/committees"): ADMIN_ONLY,
    ("POST", "/api/v1/admin/committees/{dataset_id}/members"): ADMIN_ONLY,
    ("DELETE", "/api/v1/admin/committees/{dataset_id}/members/{user_id}"): ADMIN_ONLY,
    ("GET", "/api/v1/projects"): NOBODY,
    ("GET", "/api/v1/projects/{project_id}"): frozenset({"bob", "dana"}),
    ("POST", "/api/v1/projects"): ADMIN_ONLY,
    ("PATCH", "/api/v1/projects/{project_id}/quota"): ADMIN_ONLY,
    ("POST", "/api/v1/projects/{project_id}/members"): ADMIN_ONLY,
    ("DELETE", "/api/v1/projects/{project_id}/members/{user_id}"): ADMIN_ONLY,
    ("GET", "/api/v1/datasets"): NOBODY,
    ("POST", "/api/v1/datasets"): ADMIN_ONLY,
    ("GET", "/api/v1/grants"): NOBODY,
    ("POST", "/api/v1/grants"): ADMIN_ONLY,
    ("POST", "/api/v1/grants/{grant_id}/revoke"): ADMIN_ONLY,
    ("GET", "/api/v1/catalogue"): NOBODY,
    ("POST", "/api/v1/catalogue/counts"): NOT_SUBMITTERS,
    ("POST", "/api/v1/jobs"): NOT_SUBMITTERS,
    ("POST", "/api/v1/jobs/check"): NOT_SUBMITTERS,
    ("GET", "/api/v1/jobs"): NOBODY,
    ("GET", "/api/v1/jobs/{job_id}"): frozenset({"bob", "dana"}),
    ("GET", "/api/v1/jobs/{job_id}/logs"): frozenset({"bob", "dana"}),
    ("GET", "/api/v1/jobs/{job_id}/outputs"): frozenset({"bob", "dana"}),
    ("POST", "/api/v1/jobs/{job_id}/cancel"): frozenset({"bob", "dana", "audrey"}),
    ("POST", "/api/v1/code"): NOT_SUBMITTERS,
    ("GET", "/api/v1/jobs/{job_id}/code"): frozenset({"bob"}),
    ("GET", "/api/v1/jobs/{job_id}/code/files"): frozenset({"bob"}),
    ("POST", "/api/v1/images"): NOT_SUBMITTERS,
    ("GET", "/api/v1/images"): NOBODY,
    ("POST", "/api/v1/images/approvals"): ADMIN_ONLY,
    ("POST", "/api/v1/images/approvals/revoke"): ADMIN_ONLY,
    ("POST", "/api/v1/images/push"): ADMIN_ONLY,
    # The importer removes their import, an admin the image; anyone else's is a 404.
    ("DELETE", "/api/v1/images/{digest}"): NOT_SUBMITTERS,
    ("POST", "/api/v1/egress/requests"): frozenset({"dana", "audrey", "root"}),
    ("GET", "/api/v1/egress/requests"): NOBODY,
    ("GET", "/api/v1/egress/requests/{request_id}"): frozenset({"bob"}),
    ("POST", "/api/v1/egress/requests/{request_id}/votes"): frozenset({"alice", "bob", "audrey", "root"}),
    ("POST", "/api/v1/egress/requests/{request_id}/resolution"): frozenset({"alice", "bob", "audrey"}),
    # Only the requester (alice): another project's member, reviewers, auditors and admins not.
    ("POST", "/api/v1/egress/requests/{request_id}/withdrawal"): frozenset({"bob", "dana", "audrey", "root"}),
    ("GET", "/api/v1/egress/requests/{request_id}/disclosure"): frozenset({"bob"}),
    ("GET", "/api/v1/egress/requests/{request_id}/files/{file_id}"): frozenset(
        {"bob", "dana", "audrey", "root"}
    ),
    ("GET", "/api/v1/audit/public-key"): AUDITORS,
    ("GET", "/api/v1/audit/checkpoint"): AUDITORS,
    ("GET", "/api/v1/audit/entries"): AUDITORS | {"root"},
    ("GET", "/api/v1/audit/entries/{idx}"): AUDITORS | {"root"},
    ("GET", "/api/v1/audit/proof/inclusion"): AUDITORS | {"root"},
    ("GET", "/api/v1/audit/proof/consistency"): AUDITORS | {"root"},
    ("GET", "/api/v1/audit/export"): AUDITORS | {"root"},
    ("GET", "/api/v1/audit/tlog/checkpoint"): AUDITORS,
    ("GET", "/api/v1/audit/tlog/tile/entries/{path:path}"): AUDITORS | {"root"},
    ("GET", "/api/v1/audit/tlog/tile/{level}/{path:path}"): AUDITORS,
    ("GET", "/ga4gh/tes/v1/service-info"): NOBODY,
    ("POST", "/ga4gh/tes/v1/tasks"): NOT_SUBMITTERS,
    ("GET", "/ga4gh/tes/v1/tasks"): NOBODY,
    ("GET", "/ga4gh/tes/v1/tasks/{task_id}"): frozenset({"bob", "dana"}),
    ("POST", "/ga4gh/tes/v1/tasks/{task_id}:cancel"): frozenset({"bob", "dana", "audrey"}),
}


def app_routes(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    """(method, path) of every route, also inside included routers (FastAPI keeps those as
    one entry per ``include_router`` that holds the router's own routes)."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from app_routes(included.routes, prefix + (route.include_context.prefix or ""))
            continue
        for method in sorted(getattr(route, "methods", None) or ()):
            if method != "HEAD":
                yield method, prefix + route.path


@pytest.fixture
def ids(app_client, world, engine, settings) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Real ids of p1's things: a finished job with an output, an egress request on it."""
    with session_scope(engine) as s:
        job = WorldFactory(s).finished_job(settings, "p1", "alice", ["ct1"], {"summary.csv": b"n\n2\n"})
    body = {"job_id": job, "files": ["summary.csv"], "justification": "counts"}
    req = app_client.post("/api/v1/egress/requests", headers=world.headers["alice"], json=body)
    assert req.status_code == 201, req.text
    return {
        "job_id": job,
        "task_id": job,
        "request_id": req.json()["id"],
        "file_id": str(req.json()["files"][0]["id"]),
        "project_id": "p1",
        "dataset_id": "ct1",
        "user_id": "nobody",  # never a real user: the admin routes must not change the callers
        "grant_id": "0" * 32,
        "idx": "0",
        "name": "panel.css",
        "level": "0",
        "path:path": "000",
        "digest": "sha256:" + "0" * 64,
    }


def _concrete(path: str, ids: dict[str, str]) -> str:
    return re.sub(r"\{([^}]+)\}", lambda m: ids[m.group(1)], path)


def _call(client, method: str, path: str, headers: dict[str, str]):  # type: ignore[no-untyped-def]
    body = {"json": {}} if method in ("POST", "PUT", "PATCH") else {}
    return client.request(method, path, headers=headers, follow_redirects=False, **body)


def _refused(resp, allowed: tuple[int, ...]) -> bool:  # type: ignore[no-untyped-def]
    return resp.status_code in allowed and resp.headers["content-type"].startswith("application/problem+json")


def test_every_route_is_classified(app) -> None:  # type: ignore[no-untyped-def]
    found = set(app_routes(app.routes))
    classified = PUBLIC | PANEL_SESSION | set(REFUSED)
    assert found - classified == set(), "routes nobody decided who may use"
    assert classified - found == set(), "classified routes that no longer exist"


def test_no_token_an_expired_or_a_forged_one_is_refused_everywhere(
    app, app_client, world, ids, token_for
) -> None:  # type: ignore[no-untyped-def]
    expired = token_for("alice", "researcher", ttl_s=-120)
    header, payload, _sig = token_for("alice", "researcher").split(".")
    bad = {
        "none": {},
        "expired": {"Authorization": f"Bearer {expired}"},
        "forged": {"Authorization": f"Bearer {header}.{payload}.{'A' * 86}"},
    }
    for method, path in app_routes(app.routes):
        if (method, path) in PUBLIC:
            continue
        for what, headers in bad.items():
            resp = _call(app_client, method, _concrete(path, ids), headers)
            if (method, path) in PANEL_SESSION:
                assert resp.status_code == 303 and resp.headers["location"].endswith("/panel/login"), (
                    what,
                    method,
                    path,
                )
            else:
                assert _refused(resp, (401,)), (what, method, path, resp.status_code, resp.text)


def test_each_role_and_another_projects_member_is_refused_where_it_must_be(
    app, app_client, world, ids, token_for
) -> None:  # type: ignore[no-untyped-def]
    for method, path in app_routes(app.routes):
        if (method, path) in PUBLIC or (method, path) in PANEL_SESSION:
            continue
        for who in sorted(EVERYONE):
            headers = world.headers[who]
            if (method, path) in SIGNS_OUT:  # with a token of its own: the call revokes it
                headers = {"Authorization": f"Bearer {token_for(who, *ROLES[who])}"}
            resp = _call(app_client, method, _concrete(path, ids), headers)
            assert resp.status_code < 500, (who, method, path, resp.text)
            if who in REFUSED[(method, path)]:
                # Another project's member may meet body validation first (nothing of p1 in it).
                ok = (403, 404, 422) if who == "bob" and method == "POST" else (403, 404)
                assert _refused(resp, ok), (who, method, path, resp.status_code, resp.text)
            else:
                assert resp.status_code not in (401, 403), (who, method, path, resp.text)
        # A bearer token never opens a panel page (they take the panel's own session).
    for method, path in PANEL_SESSION:
        resp = _call(app_client, method, _concrete(path, ids), world.headers["dana"])
        assert resp.status_code == 303, (method, path, resp.status_code)


# What a user stripped of every role may still do: see who they are, sign their token out.
ROLELESS_ALLOWED = {("GET", "/api/v1/me"), ("POST", "/api/v1/auth/logout")}


def test_a_disabled_user_and_one_whose_roles_were_just_removed_are_refused_everywhere(
    app, app_client, world, ids, engine, token_for
) -> None:  # type: ignore[no-untyped-def]
    """Tokens minted before the change: disabling answers 401 on every route, taking the
    roles away 403/404 on every route but `ROLELESS_ALLOWED`, and neither opens a panel page."""
    disabled = {"Authorization": f"Bearer {token_for('alice', 'researcher')}"}
    roleless = {"Authorization": f"Bearer {token_for('bob', 'researcher')}"}
    for headers in (disabled, roleless):  # both tokens verified and their users cached first
        assert app_client.get("/api/v1/jobs", headers=headers).status_code == 200
    with session_scope(engine) as s:
        registry_user = s.get(User, "alice")
        assert registry_user is not None
        registry_user.disabled = True
        s.execute(delete(UserRole).where(UserRole.user_id == "bob"))
    for method, path in app_routes(app.routes):
        if (method, path) in PUBLIC or (method, path) in PANEL_SESSION:
            continue
        url = _concrete(path, ids)
        resp = _call(app_client, method, url, disabled)
        assert _refused(resp, (401,)), ("disabled", method, path, resp.status_code)
        if (method, path) in SIGNS_OUT:
            continue  # the role-less caller may sign out; not with the sweep's token
        resp = _call(app_client, method, url, roleless)
        if (method, path) in ROLELESS_ALLOWED:
            assert resp.status_code < 300, (method, path, resp.status_code)
        else:
            ok = (403, 404, 422) if method == "POST" else (403, 404)
            assert _refused(resp, ok), ("roleless", method, path, resp.status_code, resp.text)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(settings, sub: str = "alice", **over: Any) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    now = int(time.time())
    claims = {
        "iss": settings.token_issuer,
        "aud": settings.token_audience,
        "sub": sub,
        "roles": ["researcher"],
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "jti": uuid.uuid4().hex,
    }
    return {**claims, **over}


def bad_tokens(settings, app_client, token_for) -> dict[str, tuple[str, str]]:  # type: ignore[no-untyped-def]
    """Tokens that must open nothing, each refused for its own reason: signed by nobody
    (``alg: none``), by another Ed25519 key, HMAC-signed with the server's public key (the
    algorithm-confusion attack), for another audience or issuer, not valid yet, signed out,
    and properly signed for a user the registry does not have (deleted, or never added).
    Each with the problem type it must be refused with."""
    public_pem = (
        TokenIssuer.from_settings(settings)
        .key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    head_none = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    head_hs = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps(_claims(settings)).encode())
    hs_sig = _b64(hmac.new(public_pem, f"{head_hs}.{body}".encode(), hashlib.sha256).digest())
    other_key = Ed25519PrivateKey.generate()
    signed_out = token_for("alice", "researcher")
    out = app_client.post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {signed_out}"})
    assert out.status_code == 204, out.text
    key = _issuer_key(settings)
    now = int(time.time())
    tokens = {
        "alg none": (f"{head_none}.{body}.", "invalid-token"),
        "alg none, signature kept": (
            f"{head_none}.{body}.{token_for('alice', 'researcher').split('.')[2]}",
            "invalid-token",
        ),
        "another key": (jwt.encode(_claims(settings), other_key, algorithm="EdDSA"), "invalid-token"),
        "HS256 with the public key": (f"{head_hs}.{body}.{hs_sig}", "invalid-token"),
        "another audience": (
            jwt.encode(_claims(settings, aud="someone-else"), key, "EdDSA"),
            "invalid-token",
        ),
        "another issuer": (jwt.encode(_claims(settings, iss="evil"), key, "EdDSA"), "invalid-token"),
        "not valid yet": (
            jwt.encode(_claims(settings, nbf=now + 3600, iat=now + 3600), key, "EdDSA"),
            "invalid-token",
        ),
        "no expiry": (
            jwt.encode({k: v for k, v in _claims(settings).items() if k != "exp"}, key, "EdDSA"),
            "invalid-token",
        ),
        "signed out": (signed_out, "token-revoked"),
        "unknown user": (token_for("ghost", "admin"), "unknown-user"),
    }
    return tokens


def _issuer_key(settings) -> Ed25519PrivateKey:  # type: ignore[no-untyped-def]
    return TokenIssuer.from_settings(settings).key


def test_forged_confused_foreign_signed_out_and_ownerless_tokens_open_nothing(
    app, app_client, world, ids, settings, token_for
) -> None:  # type: ignore[no-untyped-def]
    """Each token of `bad_tokens`, on every bearer route (401 problem) and as the panel's
    session cookie on every panel page (sent to sign in, or refused: never answered)."""
    tokens = bad_tokens(settings, app_client, token_for)
    for method, path in app_routes(app.routes):
        if (method, path) in PUBLIC:
            continue
        url = _concrete(path, ids)
        for what, (token, slug) in tokens.items():
            if (method, path) in PANEL_SESSION:
                app_client.cookies.clear()
                app_client.cookies.set(TOKEN_COOKIE, token, path="/panel")
                resp = _call(app_client, method, url, {})
                app_client.cookies.clear()
                assert resp.status_code in (303, 403), (what, method, path, resp.status_code)
                if resp.status_code == 303:
                    # The sign-in page, saying in fixed words why the session it held ended.
                    where, _, ended = resp.headers["location"].partition("?")
                    assert where.endswith("/panel/login") and ended.startswith("ended="), (what, method, path)
                continue
            resp = _call(app_client, method, url, {"Authorization": f"Bearer {token}"})
            assert _refused(resp, (401,)), (what, method, path, resp.status_code, resp.text)
            assert resp.json()["type"].endswith(f":{slug}"), (what, method, path, resp.json())


def test_the_panel_refuses_a_valid_session_of_anyone_but_dac_and_admins(
    app_client, world, ids, token_for
) -> None:  # type: ignore[no-untyped-def]
    """The panel's cookie holds an API token: a researcher's, even the project's own, or an
    auditor's opens no panel page and casts no vote."""
    for who, role in (("alice", "researcher"), ("bob", "researcher"), ("audrey", "auditor")):
        for method, path in sorted(PANEL_SESSION):
            app_client.cookies.clear()
            app_client.cookies.set(TOKEN_COOKIE, token_for(who, role), path="/panel")
            resp = _call(app_client, method, _concrete(path, ids), {})
            app_client.cookies.clear()
            assert resp.status_code == 403, (who, method, path, resp.status_code, resp.text[:200])


def test_roles_a_token_claims_beyond_the_users_own_open_nothing_more(
    app, app_client, world, ids, token_for
) -> None:  # type: ignore[no-untyped-def]
    """A properly signed token of alice (a researcher) that claims every role: the registry
    narrows it to hers, so she is refused exactly where her own token is."""
    headers = {"Authorization": f"Bearer {token_for('alice', 'researcher', 'dac', 'auditor', 'admin')}"}
    for method, path in app_routes(app.routes):
        if (method, path) in PUBLIC or (method, path) in PANEL_SESSION or (method, path) in SIGNS_OUT:
            continue
        resp = _call(app_client, method, _concrete(path, ids), headers)
        if "alice" in REFUSED[(method, path)]:
            assert _refused(resp, (403, 404)), (method, path, resp.status_code, resp.text)
        else:
            assert resp.status_code not in (401, 403), (method, path, resp.text)
