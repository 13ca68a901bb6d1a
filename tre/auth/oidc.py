"""The configured OpenID provider: its discovery document, its keys, and ID token checks.

One `OidcProvider` per app (and one per CLI login) fetches
``<issuer>/.well-known/openid-configuration`` once, refuses a document that names another
issuer (OpenID Connect Discovery 1.0, section 4.3: a mix-up defence), and keeps it for
``DISCOVERY_TTL_S``. The panel's code flow and the CLI's device flow take their endpoints
from it; the API's token verifier takes the JWKS address from it unless one is pinned.

ID tokens are checked here, never trusted from the token endpoint's TLS alone: signature by
a key of the provider's JWKS with an algorithm from the configured list (never ``none`` or
HMAC), issuer, audience (our client id; ``azp`` when there are several), expiry, and the
``nonce`` the sign-in started with.
"""

from __future__ import annotations

import hmac
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus

import httpx
import jwt
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri, prepare_token_request
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from tre.config import FORBIDDEN_ALGORITHMS, Settings

DISCOVERY_PATH = "/.well-known/openid-configuration"
DISCOVERY_TTL_S = 3600.0


class OidcError(Exception):
    """Sign-in through the provider failed; ``reason`` is a fixed slug, the message says why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Discovery:
    """The parts of the provider's metadata tre uses."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    end_session_endpoint: str | None
    device_authorization_endpoint: str | None

    @classmethod
    def parse(cls, expected_issuer: str, doc: Any) -> Discovery:
        if not isinstance(doc, dict):
            raise OidcError("discovery-invalid", "the provider's discovery document is not a JSON object")
        if doc.get("issuer") != expected_issuer:
            raise OidcError(
                "discovery-invalid",
                f"the provider's discovery document names issuer {str(doc.get('issuer'))[:200]!r}, "
                f"not the configured {expected_issuer!r}",
            )
        missing = [k for k in ("authorization_endpoint", "token_endpoint", "jwks_uri") if not doc.get(k)]
        if missing:
            raise OidcError("discovery-invalid", f"the provider's discovery document lacks {missing}")

        def optional(key: str) -> str | None:
            value = doc.get(key)
            return value if isinstance(value, str) and value else None

        return cls(
            issuer=expected_issuer,
            authorization_endpoint=str(doc["authorization_endpoint"]),
            token_endpoint=str(doc["token_endpoint"]),
            jwks_uri=str(doc["jwks_uri"]),
            end_session_endpoint=optional("end_session_endpoint"),
            device_authorization_endpoint=optional("device_authorization_endpoint"),
        )


def fetch_discovery(issuer: str, timeout_s: float = 10.0) -> Discovery:
    """GET the issuer's discovery document (one request, no cache)."""
    url = issuer.rstrip("/") + DISCOVERY_PATH
    try:
        resp = httpx.get(url, timeout=timeout_s, follow_redirects=False)
    except httpx.HTTPError as exc:
        raise OidcError("provider-unreachable", f"cannot reach the OpenID provider at {url}: {exc}") from exc
    if resp.status_code != 200:
        raise OidcError("provider-unreachable", f"the OpenID provider answered {resp.status_code} at {url}")
    try:
        doc = resp.json()
    except ValueError as exc:
        raise OidcError("discovery-invalid", f"the OpenID provider's {url} is not JSON") from exc
    return Discovery.parse(issuer, doc)


class OidcProvider:
    """The configured issuer, discovered lazily and cached; thread-safe."""

    def __init__(self, settings: Settings) -> None:
        if not settings.oidc_issuer:
            raise OidcError("not-configured", "no OpenID provider is configured (TRE_OIDC_ISSUER)")
        bad = FORBIDDEN_ALGORITHMS.intersection(settings.oidc_algorithms)
        if bad:
            raise OidcError("not-configured", f"refusing to accept algorithms {sorted(bad)} for OIDC tokens")
        require_secure_issuer(settings.oidc_issuer)
        self.settings = settings
        self.issuer = settings.oidc_issuer
        self.algorithms = list(settings.oidc_algorithms)
        self._lock = threading.Lock()
        self._discovery: Discovery | None = None
        self._fetched_at = 0.0
        self._jwks: jwt.PyJWKClient | None = None

    def discovery(self) -> Discovery:
        with self._lock:
            if self._discovery is None or time.monotonic() - self._fetched_at > DISCOVERY_TTL_S:
                self._discovery = fetch_discovery(self.issuer, self.settings.oidc_http_timeout_s)
                self._fetched_at = time.monotonic()
            return self._discovery

    def jwks_client(self) -> jwt.PyJWKClient:
        with self._lock:
            client = self._jwks
        if client is None:
            url = self.settings.oidc_jwks_url or self.discovery().jwks_uri
            client = jwt.PyJWKClient(url, cache_keys=True, timeout=int(self.settings.oidc_http_timeout_s))
            with self._lock:
                self._jwks = client
        return client

    def signing_key(self, token: str) -> Any:
        try:
            return self.jwks_client().get_signing_key_from_jwt(token).key
        except jwt.PyJWKClientError as exc:
            raise OidcError("bad-signature", f"no trusted signing key for the token: {exc}") from exc
        except jwt.DecodeError as exc:
            raise OidcError("malformed-token", f"malformed token: {exc}") from exc

    def verify_id_token(self, id_token: str, client_id: str, nonce: str) -> dict[str, Any]:
        """The ID token's claims once every check passed, else `OidcError` saying which failed."""
        try:
            alg = str(jwt.get_unverified_header(id_token).get("alg", ""))
        except jwt.PyJWTError as exc:
            raise OidcError("malformed-token", f"malformed ID token: {exc}") from exc
        if alg in FORBIDDEN_ALGORITHMS or alg not in self.algorithms:
            raise OidcError("bad-signature", f"ID token algorithm {alg!r} is not accepted")
        try:
            claims: dict[str, Any] = jwt.decode(
                id_token,
                self.signing_key(id_token),
                algorithms=self.algorithms,
                audience=client_id,
                issuer=self.issuer,
                options={"require": ["exp", "iat", "sub", "iss", "aud", "nonce"]},
                leeway=self.settings.token_clock_leeway_s,
            )
        except jwt.ExpiredSignatureError as exc:
            raise OidcError("expired", "the ID token has expired") from exc
        except jwt.InvalidAudienceError as exc:
            raise OidcError("wrong-audience", "the ID token was issued to another client") from exc
        except jwt.InvalidIssuerError as exc:
            raise OidcError("wrong-issuer", "the ID token's issuer is not the configured provider") from exc
        except jwt.InvalidSignatureError as exc:
            raise OidcError("bad-signature", "the ID token's signature is invalid") from exc
        except jwt.PyJWTError as exc:
            raise OidcError("invalid-id-token", f"invalid ID token: {exc}") from exc
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if len(audiences) > 1 and claims.get("azp") != client_id:
            raise OidcError("wrong-audience", "the ID token names several audiences but not us as azp")
        if not hmac.compare_digest(str(claims["nonce"]).encode(), nonce.encode()):
            raise OidcError("wrong-nonce", "the ID token's nonce is not the one this sign-in started with")
        return claims


def require_secure_issuer(issuer: str) -> None:
    """Refuse a plain-http issuer unless it is on this machine's loopback (tests, a local
    provider): tokens and codes must never cross a network in clear."""
    from authlib.common.security import is_secure_transport

    if not is_secure_transport(issuer):
        raise OidcError("not-configured", f"the OIDC issuer {issuer!r} must be an https URL")


class TokenEndpointError(OidcError):
    """The token endpoint answered with an OAuth error (RFC 6749 5.2, RFC 8628 3.5)."""

    def __init__(self, error: str, message: str) -> None:
        super().__init__("token-endpoint", message)
        self.error = error


def authorization_url(
    discovery: Discovery,
    *,
    client_id: str,
    redirect_uri: str,
    scope: str,
    state: str,
    nonce: str,
    code_verifier: str,
) -> str:
    """The authorization request (code flow) with an S256 PKCE challenge, state and nonce;
    the encoding is authlib's, the parameters ours."""
    return str(
        prepare_grant_uri(
            discovery.authorization_endpoint,
            client_id=client_id,
            response_type="code",
            redirect_uri=redirect_uri,
            scope=scope,
            state=state,
            nonce=nonce,
            code_challenge=create_s256_code_challenge(code_verifier),
            code_challenge_method="S256",
        )
    )


def token_request(
    url: str,
    grant_type: str,
    *,
    client_id: str,
    client_secret: str | None = None,
    timeout_s: float = 10.0,
    **params: str,
) -> dict[str, Any]:
    """POST to the token endpoint and return its JSON answer.

    A confidential client authenticates with HTTP Basic (``client_secret_basic``, its id and
    secret form-encoded first, RFC 6749 2.3.1); a public client sends its ``client_id`` in
    the body. An OAuth error answer raises `TokenEndpointError` with its ``error`` code; a
    provider that cannot be reached or answers nonsense raises `OidcError`.
    """
    if client_secret is None:
        params = {**params, "client_id": client_id}
        auth = None
    else:
        auth = httpx.BasicAuth(quote_plus(client_id), quote_plus(client_secret))
    body = prepare_token_request(grant_type, **params)
    try:
        resp = httpx.post(
            url,
            content=body,
            auth=auth,
            headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
            timeout=timeout_s,
            follow_redirects=False,
        )
    except httpx.HTTPError as exc:
        raise OidcError("provider-unreachable", f"cannot reach the token endpoint {url}: {exc}") from exc
    try:
        data = resp.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise OidcError(
            "provider-unreachable", f"the token endpoint answered {resp.status_code} without JSON"
        )
    if "error" in data:
        error = str(data["error"])[:64]
        raise TokenEndpointError(error, f"the token endpoint refused: {error}")
    if resp.status_code != 200:
        raise OidcError("provider-unreachable", f"the token endpoint answered {resp.status_code}")
    return data
