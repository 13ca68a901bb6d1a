"""Token attacks and authorisation: every one refused with 401/403 problem+json."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.worlds import job_body
from tre.auth.keys import public_pem
from tre.auth.tokens import SIGNING_KEY_FILENAME, TokenIssuer


def _claims(settings, **over):  # type: ignore[no-untyped-def]
    now = int(time.time())
    c = {
        "iss": settings.token_issuer,
        "aud": settings.token_audience,
        "sub": "alice",
        "roles": ["researcher"],
        "iat": now,
        "exp": now + 600,
    }
    c.update(over)
    return c


def _assert_problem(resp, status: int) -> dict:  # type: ignore[no-untyped-def]
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    body = resp.json()
    assert body["status"] == status and body["detail"]
    return body


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_valid_token_is_accepted(app_client, world):
    r = app_client.get("/api/v1/me", headers=world.headers["alice"])
    assert r.status_code == 200
    assert r.json() == {"user_id": "alice", "roles": ["researcher"], "projects": ["p1"]}


def test_missing_token(app_client, world):
    body = _assert_problem(app_client.get("/api/v1/jobs"), 401)
    assert "Bearer" in body["detail"]


def test_alg_none_rejected(app_client, world, settings):
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    token = f"{header}.{_b64(json.dumps(_claims(settings)).encode())}."
    body = _assert_problem(app_client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}), 401)
    assert "algorithm" in body["detail"]


def test_hs256_signed_with_public_key_rejected(app_client, world, settings):
    issuer = TokenIssuer.from_settings(settings)
    pem = public_pem(issuer.key)
    # PyJWT refuses PEM keys as HMAC secrets, so forge the signature by hand like an attacker would.
    import hashlib
    import hmac

    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _b64(json.dumps(_claims(settings, roles=["admin"], sub="root")).encode())
    sig = _b64(hmac.new(pem, f"{header}.{payload}".encode(), hashlib.sha256).digest())
    token = f"{header}.{payload}.{sig}"
    _assert_problem(app_client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}), 401)


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"aud": "someone-else"}, "audience"),
        ({"iss": "evil-issuer"}, "issuer"),
        ({"nbf": int(time.time()) + 3600}, "not yet valid"),
        ({"iat": int(time.time()) + 3600}, "not yet valid"),
    ],
)
def test_bad_claims_rejected(app_client, world, settings, override, reason):
    key = TokenIssuer.from_settings(settings).key
    token = jwt.encode(_claims(settings, **override), key, algorithm="EdDSA")
    body = _assert_problem(app_client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}), 401)
    assert reason in body["detail"]


def test_tampered_payload_rejected(app_client, world, settings, token_for):
    header, payload, sig = token_for("alice", "researcher").split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["roles"] = ["admin"]
    claims["sub"] = "root"
    forged = f"{header}.{_b64(json.dumps(claims).encode())}.{sig}"
    body = _assert_problem(app_client.get("/api/v1/me", headers={"Authorization": f"Bearer {forged}"}), 401)
    assert "signature" in body["detail"]


def test_token_from_another_key_rejected(app_client, world, settings):
    token = jwt.encode(_claims(settings), Ed25519PrivateKey.generate(), algorithm="EdDSA")
    _assert_problem(app_client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}), 401)


def test_token_roles_are_narrowed_by_the_user_table(app_client, world, settings, token_for):
    # alice holds only 'researcher'; a correctly signed token claiming 'admin' gains nothing.
    headers = {"Authorization": f"Bearer {token_for('alice', 'researcher', 'admin')}"}
    _assert_problem(app_client.post("/api/v1/projects", headers=headers, json={"id": "x"}), 403)
    assert (settings.keys_dir / SIGNING_KEY_FILENAME).stat().st_mode & 0o077 == 0


def test_unknown_user_rejected(app_client, world, token_for):
    headers = {"Authorization": f"Bearer {token_for('mallory', 'admin')}"}
    _assert_problem(app_client.get("/api/v1/me", headers=headers), 401)


def test_researcher_cannot_read_another_projects_job(app_client, world):
    r = app_client.post("/api/v1/jobs", headers=world.headers["alice"], json=job_body())
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    for path in (f"/api/v1/jobs/{job_id}", f"/api/v1/jobs/{job_id}/logs", f"/api/v1/jobs/{job_id}/outputs"):
        _assert_problem(app_client.get(path, headers=world.headers["bob"]), 404)
    _assert_problem(app_client.post(f"/api/v1/jobs/{job_id}/cancel", headers=world.headers["bob"]), 404)
    assert app_client.get("/api/v1/jobs", headers=world.headers["bob"]).json() == []
    assert [j["id"] for j in app_client.get("/api/v1/jobs", headers=world.headers["alice"]).json()] == [
        job_id
    ]
    # An auditor sees it (read-only); a DAC member is not a project member and sees nothing.
    assert app_client.get(f"/api/v1/jobs/{job_id}", headers=world.headers["audrey"]).status_code == 200
    _assert_problem(app_client.get(f"/api/v1/jobs/{job_id}", headers=world.headers["dana"]), 404)


@pytest.mark.parametrize(
    ("user", "method", "path"),
    [
        ("alice", "post", "/api/v1/projects"),
        ("alice", "post", "/api/v1/datasets"),
        ("alice", "post", "/api/v1/grants"),
        ("dana", "post", "/api/v1/jobs"),
        ("audrey", "post", "/api/v1/jobs"),
        ("alice", "get", "/api/v1/admin/users"),
        ("alice", "post", "/api/v1/images/approvals"),
        ("alice", "post", "/api/v1/images/approvals/revoke"),
        ("alice", "post", "/api/v1/images/push"),
        ("dana", "post", "/api/v1/images"),
        ("audrey", "post", "/api/v1/images"),
        ("dana", "delete", "/api/v1/images/sha256:" + "0" * 64),
        ("audrey", "delete", "/api/v1/images/sha256:" + "0" * 64),
    ],
)
def test_roles_are_enforced(app_client, world, user, method, path):
    resp = getattr(app_client, method)(
        path, headers=world.headers[user], **({"json": {}} if method == "post" else {})
    )
    assert resp.status_code in (403, 422)
    if resp.status_code == 422:
        pytest.fail(f"{path} validated the body before checking the role")


# Every route without a token, with an expired or forged one, and with each role that may not
# use it: tests/security/test_route_sweep.py (walks app.routes, not only the OpenAPI paths).


def test_the_public_sign_in_metadata_names_nothing_but_the_provider(app_client, settings):
    """The one public route says which issuer and public CLI client to use, nothing more."""
    embedded = app_client.get("/api/v1/auth/config")
    assert embedded.status_code == 200
    assert embedded.json() == {
        "mode": "embedded",
        "issuer": None,
        "cli_client_id": None,
        "scopes": None,
        "audience": "tre-api",
    }
