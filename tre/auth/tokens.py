"""Minting (embedded mode) and verifying bearer JWTs.

Verification pins the algorithm list from configuration and never trusts the token header
to choose it: ``none`` and HMAC algorithms are refused outright, which closes the classic
"HS256 signed with the public key" and "alg: none" attacks.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
from cachetools import LRUCache
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tre.auth.keys import load_or_create_ed25519
from tre.auth.oidc import FORBIDDEN_ALGORITHMS, OidcError, OidcProvider
from tre.config import Settings

# A verified token's claims are reused for at most this long (and never past its ``exp``):
# the Ed25519 check and claim parsing were a few per cent of a small request (docs/api-load.md).
# The bound also limits how long an OIDC key dropped from the issuer's JWKS stays trusted.
VERIFIED_CACHE_S = 300.0
VERIFIED_CACHE_SIZE = 4096
SIGNING_KEY_FILENAME = "token-signing-ed25519.pem"


# The one wording of an expired token: the panel tells an expired session from other refusals by it.
TOKEN_EXPIRED = "token has expired"  # noqa: S105 - a message, not a secret


class TokenError(Exception):
    """The token is not acceptable; the message says why (safe to show the caller)."""


class TokenIssuer:
    """The embedded issuer: `tre admin token` and tests mint tokens with it."""

    def __init__(self, keys_dir: Path, issuer: str = "tre-embedded", audience: str = "tre-api") -> None:
        self.key: Ed25519PrivateKey = load_or_create_ed25519(keys_dir / SIGNING_KEY_FILENAME)
        self.issuer = issuer
        self.audience = audience

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenIssuer:
        return cls(settings.keys_dir, settings.token_issuer, settings.token_audience)

    def mint(
        self, user_id: str, roles: list[str] | tuple[str, ...], ttl_s: int = 8 * 3600, **extra: Any
    ) -> str:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": user_id,
            "roles": sorted(set(roles)),
            "iat": now,
            "nbf": now,
            "exp": now + ttl_s,
            "jti": uuid.uuid4().hex,
            **extra,
        }
        return jwt.encode(claims, self.key, algorithm="EdDSA")


class TokenVerifier:
    """Checks signature, issuer, audience, expiry; returns the verified claims."""

    def __init__(self, settings: Settings, provider: OidcProvider | None = None) -> None:
        self.settings = settings
        # Verified tokens by SHA-256 of the token: (valid until, claims). Only successes are
        # kept, never past the token's own expiry, so a cached answer is one the signature
        # check would give again; bounded so a flood of distinct tokens cannot grow it.
        self._verified: LRUCache[bytes, tuple[float, dict[str, Any]]] = LRUCache(maxsize=VERIFIED_CACHE_SIZE)
        self._cache_lock = threading.Lock()
        self._jwks: jwt.PyJWKClient | None = None
        self.provider: OidcProvider | None = None
        if settings.auth_mode == "oidc":
            if not settings.oidc_jwks_url and not settings.oidc_issuer:
                raise TokenError("TRE_OIDC_ISSUER (or TRE_OIDC_JWKS_URL) must be set when TRE_AUTH_MODE=oidc")
            bad = FORBIDDEN_ALGORITHMS.intersection(settings.oidc_algorithms)
            if bad:
                raise TokenError(f"refusing to accept algorithms {sorted(bad)} for OIDC tokens")
            if settings.oidc_issuer:
                # Keys from the provider's discovery document, fetched on first use (the API
                # starts even while the provider is down; tokens are refused until it answers).
                try:
                    self.provider = provider or OidcProvider(settings)
                except OidcError as exc:
                    raise TokenError(str(exc)) from exc
            else:
                self._jwks = jwt.PyJWKClient(str(settings.oidc_jwks_url), cache_keys=True)
            self.algorithms = list(settings.oidc_algorithms)
        else:
            self._embedded_key = load_or_create_ed25519(settings.keys_dir / SIGNING_KEY_FILENAME).public_key()
            self.algorithms = ["EdDSA"]

    def verify(self, token: str) -> dict[str, Any]:
        """The token's verified claims; a token verified before is answered from the cache
        until its expiry (or for `VERIFIED_CACHE_S` at most)."""
        hit = self.cached(token)
        if hit is not None:
            return hit
        now = time.time()
        key = hashlib.sha256(token.encode()).digest()
        claims = self._verify_signed(token)
        until = min(now + VERIFIED_CACHE_S, float(claims["exp"]))
        with self._cache_lock:
            self._verified[key] = (until, claims)
        return dict(claims)

    def cached(self, token: str) -> dict[str, Any] | None:
        """The claims of a token verified before and not yet expired, or None (no I/O)."""
        key = hashlib.sha256(token.encode()).digest()
        with self._cache_lock:
            hit = self._verified.get(key)
        if hit is None or hit[0] <= time.time():
            return None
        return dict(hit[1])

    def _verify_signed(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenError(
                f"malformed token: {exc}; a token is the one line `tre admin token` (or your "
                "identity provider) printed, copied whole"
            ) from exc
        alg = str(header.get("alg", ""))
        if alg in FORBIDDEN_ALGORITHMS or alg not in self.algorithms:
            raise TokenError(f"token algorithm {alg!r} is not accepted")
        key: Any
        if self.provider is not None:
            try:
                key = self.provider.signing_key(token)
            except OidcError as exc:
                raise TokenError(str(exc)) from exc
        elif self._jwks is not None:
            try:
                key = self._jwks.get_signing_key_from_jwt(token).key
            except jwt.PyJWKClientError as exc:
                raise TokenError(f"no trusted signing key for token: {exc}") from exc
        else:
            key = self._embedded_key
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=self.algorithms,
                audience=self.settings.token_audience,
                issuer=self.settings.expected_token_issuer,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
                leeway=self.settings.token_clock_leeway_s,
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenError(TOKEN_EXPIRED) from exc
        except jwt.InvalidAudienceError as exc:
            raise TokenError("token audience is not this service") from exc
        except jwt.InvalidIssuerError as exc:
            raise TokenError("token issuer is not trusted") from exc
        except jwt.InvalidSignatureError as exc:
            raise TokenError("token signature is invalid") from exc
        except jwt.PyJWTError as exc:
            raise TokenError(f"invalid token: {exc}") from exc
        return claims

    def roles_from(self, claims: dict[str, Any]) -> set[str]:
        claim = "roles" if self.settings.auth_mode != "oidc" else self.settings.oidc_roles_claim
        raw = claims.get(claim, [])
        if isinstance(raw, str):
            raw = raw.split()
        return {str(r) for r in raw} if isinstance(raw, list) else set()
