"""Signed requests (node → hub) and signed responses (hub → node), Ed25519 over HTTP.

In the spirit of HTTP Message Signatures (RFC 9421), reduced to the fields this protocol
needs: a request signature covers the method, the target (path and query), the node's
name, a creation time, a one-time nonce and the SHA-256 of the body (RFC 9530
``Content-Digest``). The hub refuses stale times and nonces it has seen. A response
signature covers the status, the request's nonce (so an old response cannot answer a new
request), the response's time and the body's digest; the agent acts on nothing else.
Keys are raw 32-byte Ed25519 public keys written ``ed25519:<base64>``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
import time
from collections.abc import Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

NODE = "x-tre-node"
CREATED = "x-tre-created"
NONCE = "x-tre-nonce"
DIGEST = "content-digest"
SIGNATURE = "x-tre-signature"
# How far a request's or response's creation time may be from the verifier's clock.
MAX_SKEW_S = 300
_PREFIX = "ed25519:"


class SignatureError(Exception):
    """A signature is missing, malformed, stale, replayed or made by another key.

    ``reason`` is one word of `tre.federation.hub.refusals.NodeRefusal` (``unsigned``,
    ``stale``, ``bad_signature``): the hub audits a refusal under it, never under the text,
    which may quote what the caller sent."""

    def __init__(self, message: str, reason: str = "bad_signature") -> None:
        super().__init__(message)
        self.reason = reason


def encode_public_key(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return _PREFIX + base64.b64encode(raw).decode()


def parse_public_key(text: str) -> Ed25519PublicKey:
    """``ed25519:<base64 of 32 bytes>``; ValueError with the reason otherwise."""
    text = text.strip()
    if not text.startswith(_PREFIX):
        raise ValueError("an Ed25519 public key is written 'ed25519:<base64>'")
    try:
        raw = base64.b64decode(text[len(_PREFIX) :], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("the public key is not valid base64") from exc
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def content_digest(body: bytes) -> str:
    return "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"


def _request_base(method: str, target: str, node: str, created: str, nonce: str, digest: str) -> bytes:
    return "\n".join(
        ["tre-federation-request-v1", method.upper(), target, node, created, nonce, digest]
    ).encode()


def _response_base(status: int, request_nonce: str, created: str, digest: str) -> bytes:
    return "\n".join(["tre-federation-response-v1", str(status), request_nonce, created, digest]).encode()


def sign_request(
    key: Ed25519PrivateKey, node: str, method: str, target: str, body: bytes, now: float | None = None
) -> dict[str, str]:
    """The headers that authenticate one request from ``node``."""
    created = str(int(time.time() if now is None else now))
    nonce = secrets.token_hex(16)
    digest = content_digest(body)
    sig = key.sign(_request_base(method, target, node, created, nonce, digest))
    return {
        NODE: node,
        CREATED: created,
        NONCE: nonce,
        DIGEST: digest,
        SIGNATURE: base64.b64encode(sig).decode(),
    }


def _header(headers: Mapping[str, str], name: str, limit: int = 200) -> str:
    value = headers.get(name)
    if not value or len(value) > limit:
        raise SignatureError(f"the {name} header is missing or too long", "unsigned")
    return value


def _check_fresh(created: str, now: float | None) -> None:
    if not created.isdigit():
        raise SignatureError("the signature's creation time is not a number of seconds", "unsigned")
    skew = abs((time.time() if now is None else now) - int(created))
    if skew > MAX_SKEW_S:
        raise SignatureError(f"the signature's creation time is {int(skew)} s from this clock", "stale")


def _check_signature(key: Ed25519PublicKey, base: bytes, headers: Mapping[str, str]) -> None:
    try:
        sig = base64.b64decode(_header(headers, SIGNATURE), validate=True)
        key.verify(sig, base)
    except (binascii.Error, ValueError, InvalidSignature) as exc:
        raise SignatureError("the signature does not verify with the registered key") from exc


def request_node(headers: Mapping[str, str]) -> str:
    """Which node claims to have signed the request (checked by `verify_request`)."""
    return _header(headers, NODE, 63)


def verify_request(
    key: Ed25519PublicKey,
    headers: Mapping[str, str],
    method: str,
    target: str,
    body: bytes,
    now: float | None = None,
) -> str:
    """Check a request's signature, time and body digest; answers its nonce, which the
    caller must refuse if seen before (`tre.federation.hub.auth` keeps them)."""
    created, nonce, digest = (_header(headers, h) for h in (CREATED, NONCE, DIGEST))
    if len(nonce) < 16:
        raise SignatureError("the nonce is too short")
    if digest != content_digest(body):
        raise SignatureError("the body does not match its Content-Digest")
    _check_fresh(created, now)
    _check_signature(
        key, _request_base(method, target, request_node(headers), created, nonce, digest), headers
    )
    return nonce


def sign_response(key: Ed25519PrivateKey, status: int, request_nonce: str, body: bytes) -> dict[str, str]:
    created = str(int(time.time()))
    digest = content_digest(body)
    sig = key.sign(_response_base(status, request_nonce, created, digest))
    return {CREATED: created, DIGEST: digest, SIGNATURE: base64.b64encode(sig).decode()}


def verify_response(
    key: Ed25519PublicKey, status: int, request_nonce: str, headers: Mapping[str, str], body: bytes
) -> None:
    """The hub signed exactly this answer to exactly this request, recently."""
    created, digest = _header(headers, CREATED), _header(headers, DIGEST)
    if digest != content_digest(body):
        raise SignatureError("the response body does not match its Content-Digest")
    _check_fresh(created, None)
    _check_signature(key, _response_base(status, request_nonce, created, digest), headers)
