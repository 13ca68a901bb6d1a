"""Browser state of the panel's OIDC sign-in: the sealed state cookie and the logout URL.

Between the redirect to the provider and the callback, the sign-in's ``state``, ``nonce``
and PKCE ``code_verifier`` live in one cookie sealed with Fernet (AES-CBC + HMAC-SHA256,
with a timestamp): the browser can neither read nor alter it, and it is refused after
`STATE_TTL_S`. It is HttpOnly, scoped to ``/panel/oidc`` and SameSite=Lax, because the
callback is a top-level navigation from the provider's site, which a Strict cookie would
not follow. It is deleted by the callback whatever the outcome, so an answer is accepted
once at most.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from cryptography.fernet import Fernet, InvalidToken
from fastapi import Request, Response

from tre.auth.keys import load_or_create_fernet_key
from tre.auth.oidc import Discovery
from tre.config import Settings

STATE_COOKIE = "tre_panel_oidc"
STATE_COOKIE_PATH = "/panel/oidc"
STATE_TTL_S = 600
STATE_KEY_FILENAME = "panel-oidc-state.fernet"
CALLBACK_PATH = "/panel/oidc/callback"
POST_LOGOUT_PATH = "/panel/login"
# The logout request's `state`, which the provider hands back on its redirect to
# POST_LOGOUT_PATH (RP-Initiated Logout 1.0): the sign-in page then says the sign-out
# happened, as `?out=1` does without a provider (newcomer round 23: with one, the reviewer
# came back to a plain sign-in page). Fixed words, like `out=1`: it only picks a notice.
SIGNED_OUT_STATE = "signed-out"


@dataclass(frozen=True)
class PendingSignIn:
    """What the callback must match: the values sent to the provider with this browser."""

    state: str
    nonce: str
    code_verifier: str


@lru_cache(maxsize=8)
def _fernet(keys_dir: Path) -> Fernet:
    return Fernet(load_or_create_fernet_key(keys_dir / STATE_KEY_FILENAME))


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def set_state_cookie(
    response: Response, request: Request, settings: Settings, pending: PendingSignIn
) -> None:
    body = json.dumps({"s": pending.state, "n": pending.nonce, "v": pending.code_verifier}).encode()
    response.set_cookie(
        STATE_COOKIE,
        _fernet(settings.keys_dir).encrypt(body).decode(),
        max_age=STATE_TTL_S,
        path=STATE_COOKIE_PATH,
        httponly=True,
        samesite="lax",
        secure=_secure(request),
    )


def clear_state_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(
        STATE_COOKIE, path=STATE_COOKIE_PATH, httponly=True, samesite="lax", secure=_secure(request)
    )


def pending_sign_in(request: Request, settings: Settings) -> PendingSignIn | None:
    """The sign-in this browser started, or None: no cookie, altered, or older than the TTL."""
    sealed = request.cookies.get(STATE_COOKIE, "")
    if not sealed or len(sealed) > 2048:
        return None
    try:
        data = json.loads(_fernet(settings.keys_dir).decrypt(sealed.encode(), ttl=STATE_TTL_S))
    except (InvalidToken, ValueError):
        return None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in ("s", "n", "v")):
        return None
    return PendingSignIn(state=data["s"], nonce=data["n"], code_verifier=data["v"])


def end_session_url(
    settings: Settings, discovery: Discovery, id_token: str | None, signed_out: bool = True
) -> str | None:
    """RP-initiated logout at the provider (OpenID Connect RP-Initiated Logout 1.0), back to
    the panel's sign-in page, which says so when ``signed_out`` (a session was ended here);
    None when the provider does not offer it."""
    if not discovery.end_session_endpoint or not settings.oidc_redirect_url:
        return None
    callback = urlsplit(settings.oidc_redirect_url)
    params = {
        "client_id": settings.oidc_client_id or "",
        "post_logout_redirect_uri": f"{callback.scheme}://{callback.netloc}{POST_LOGOUT_PATH}",
    }
    if id_token:
        params["id_token_hint"] = id_token
    if signed_out:
        params["state"] = SIGNED_OUT_STATE
    joiner = "&" if "?" in discovery.end_session_endpoint else "?"
    return f"{discovery.end_session_endpoint}{joiner}{urlencode(params)}"
