"""Production auth: tokens from an external OIDC issuer, verified against its JWKS served
over real HTTP on 127.0.0.1 (a local stand-in for the identity provider)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

from tre.api.app import create_app
from tre.auth.tokens import TokenError, TokenVerifier
from tre.config import Settings
from tre.store.db import session_scope
from tre.store.models import User, UserRole

ISSUER = "https://idp.example.test/realms/tre"


@pytest.fixture
def idp():  # type: ignore[no-untyped-def]
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": "k1", "use": "sig", "alg": "ES256"})
    body = json.dumps({"keys": [jwk]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield key, f"http://127.0.0.1:{server.server_address[1]}/certs"
    server.shutdown()


def _oidc_settings(settings: Settings, jwks_url: str, algorithms: list[str] | None = None) -> Settings:
    return settings.model_copy(
        update={
            "auth_mode": "oidc",
            "oidc_jwks_url": jwks_url,
            "token_issuer": ISSUER,
            "token_audience": "tre-api",
            "oidc_algorithms": algorithms or ["ES256"],
        }
    )


def _token(key, **over):  # type: ignore[no-untyped-def]
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": "tre-api",
        "sub": "carol",
        "tre_roles": ["researcher"],
        "iat": now,
        "exp": now + 300,
    }
    claims.update(over)
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": "k1"})


def test_oidc_token_accepted_and_attacks_refused(idp, settings, engine):
    key, url = idp
    s = _oidc_settings(settings, url)
    with session_scope(engine) as session:
        session.add(User(id="carol", roles=[UserRole(role="researcher")]))
    client = TestClient(create_app(s, engine))
    ok = client.get("/api/v1/me", headers={"Authorization": f"Bearer {_token(key)}"})
    assert ok.status_code == 200 and ok.json()["roles"] == ["researcher"]

    other = ec.generate_private_key(ec.SECP256R1())
    for bad in (
        _token(other),
        _token(key, iss="https://evil"),
        _token(key, aud="other"),
        _token(key, exp=int(time.time()) - 100),
        _token(key, sub="nobody"),
    ):
        r = client.get("/api/v1/me", headers={"Authorization": f"Bearer {bad}"})
        assert r.status_code == 401, r.text


def test_oidc_refuses_symmetric_or_none_algorithms_in_configuration(idp, settings):
    _, url = idp
    for algs in (["HS256"], ["ES256", "none"]):
        with pytest.raises(TokenError, match="refusing"):
            TokenVerifier(_oidc_settings(settings, url, algs))
