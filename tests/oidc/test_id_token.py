"""ID token and discovery checks (`tre.auth.oidc`), each attack on its own, against a
provider stand-in that serves a discovery document and a JWKS over real HTTP on loopback."""

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
from tre.auth.oidc import OidcError, OidcProvider
from tre.auth.tokens import TokenVerifier
from tre.store.db import session_scope
from tre.store.models import User, UserRole

CLIENT = "tre-panel"
NONCE = "n-0123456789abcdef"


@pytest.fixture
def idp():  # type: ignore[no-untyped-def]
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": "k1", "use": "sig", "alg": "ES256"})
    state = {"issuer_override": None}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            base = f"http://127.0.0.1:{self.server.server_address[1]}"
            if self.path == "/.well-known/openid-configuration":
                body = {
                    "issuer": state["issuer_override"] or base,
                    "authorization_endpoint": f"{base}/auth",
                    "token_endpoint": f"{base}/token",
                    "jwks_uri": f"{base}/jwks",
                }
            elif self.path == "/jwks":
                body = {"keys": [jwk]}
            else:
                self.send_response(404)
                self.end_headers()
                return
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield key, f"http://127.0.0.1:{server.server_address[1]}", state
    server.shutdown()


def oidc(settings, issuer):  # type: ignore[no-untyped-def]
    return settings.model_copy(
        update={
            "auth_mode": "oidc",
            "oidc_issuer": issuer,
            "oidc_algorithms": ["ES256"],
            "oidc_cli_client_id": "cli",
        }
    )


def id_token(key, issuer: str, alg: str = "ES256", **over) -> str:  # type: ignore[no-untyped-def]
    now = int(time.time())
    claims = {"iss": issuer, "aud": CLIENT, "sub": "dana", "nonce": NONCE, "iat": now, "exp": now + 300}
    claims.update(over)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": "k1"})


def test_id_token_checks_refuse_each_attack(idp, settings) -> None:
    key, issuer, _ = idp
    provider = OidcProvider(oidc(settings, issuer))
    assert provider.verify_id_token(id_token(key, issuer), CLIENT, NONCE)["sub"] == "dana"
    other = ec.generate_private_key(ec.SECP256R1())
    cases = {
        "wrong-nonce": id_token(key, issuer, nonce="replayed-from-another-sign-in"),
        "expired": id_token(key, issuer, exp=int(time.time()) - 60),
        "wrong-audience": id_token(key, issuer, aud="another-client"),
        "wrong-issuer": id_token(key, issuer, iss="https://evil.example"),
        "bad-signature": id_token(other, issuer),
        "invalid-id-token": id_token(key, issuer, nonce=None),
    }
    for reason, token in cases.items():
        with pytest.raises(OidcError) as caught:
            provider.verify_id_token(token, CLIENT, NONCE)
        assert caught.value.reason == reason, (reason, str(caught.value))
    # Several audiences: only if we are the authorized party.
    with pytest.raises(OidcError, match="azp"):
        provider.verify_id_token(id_token(key, issuer, aud=[CLIENT, "other"]), CLIENT, NONCE)
    ok = id_token(key, issuer, aud=[CLIENT, "other"], azp=CLIENT)
    assert provider.verify_id_token(ok, CLIENT, NONCE)["azp"] == CLIENT
    # Unsigned and HMAC tokens are refused by algorithm before any key is looked at.
    unsigned = jwt.encode(
        {"iss": issuer, "aud": CLIENT, "sub": "dana", "nonce": NONCE}, None, algorithm="none"
    )
    hmac_signed = jwt.encode({"iss": issuer, "sub": "dana"}, "k" * 32, algorithm="HS256")
    for token in (unsigned, hmac_signed):
        with pytest.raises(OidcError, match="algorithm"):
            provider.verify_id_token(token, CLIENT, NONCE)


def test_discovery_must_name_the_configured_issuer_over_https(idp, settings) -> None:
    _, issuer, state = idp
    state["issuer_override"] = "https://mix-up.example"
    with pytest.raises(OidcError) as caught:
        OidcProvider(oidc(settings, issuer)).discovery()
    assert caught.value.reason == "discovery-invalid"
    with pytest.raises(OidcError, match="https"):
        OidcProvider(oidc(settings, "http://idp.example.org"))
    OidcProvider(oidc(settings, "https://idp.example.org"))  # https: fine (not contacted)


def test_api_takes_access_tokens_with_keys_from_discovery(idp, settings, engine) -> None:
    key, issuer, _ = idp
    s = oidc(settings, issuer)
    assert s.token_issuer == "tre-embedded"  # ignored: the configured OIDC issuer is expected
    with session_scope(engine) as session:
        session.add(User(id="carol", roles=[UserRole(role="researcher")]))
    client = TestClient(create_app(s, engine))
    now = int(time.time())
    access = {"iss": issuer, "aud": "tre-api", "sub": "carol", "tre_roles": ["researcher", "admin"]}
    token = jwt.encode({**access, "iat": now, "exp": now + 60}, key, algorithm="ES256", headers={"kid": "k1"})
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200 and me.json()["roles"] == ["researcher"]  # narrowed by the user table
    for bad in ({**access, "aud": CLIENT}, {**access, "iss": "tre-embedded"}):
        forged = jwt.encode(
            {**bad, "iat": now, "exp": now + 60}, key, algorithm="ES256", headers={"kid": "k1"}
        )
        assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {forged}"}).status_code == 401
    config = client.get("/api/v1/auth/config").json()
    assert config == {
        "mode": "oidc",
        "issuer": issuer,
        "cli_client_id": "cli",
        "scopes": "openid",
        "audience": "tre-api",
    }
    assert TokenVerifier(s).provider is not None
