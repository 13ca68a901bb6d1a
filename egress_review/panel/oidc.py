"""Panel sign-in through the configured OpenID provider: authorization code flow with PKCE.

``/panel/oidc/start`` discovers the provider, makes a fresh ``state``, ``nonce`` and PKCE
``code_verifier`` (S256), seals them in a short-lived cookie (`oidc_session`) and sends the
browser to the provider. ``/panel/oidc/callback`` accepts the answer only for that browser's
pending sign-in (same ``state``), exchanges the code with the verifier (authlib over httpx;
the client authenticates with its secret unless it is a public client), verifies the ID
token (signature by the provider's JWKS, issuer, audience, expiry, nonce), then takes the
access token through exactly the API's checks (`principal_from_token`: signature, issuer,
the API's audience, expiry, roles from the configured claim narrowed by the user table).
Only a dac or admin gets the session cookie, as with a pasted token.

Every failure is a page with one sentence and a way back, status 401/403 (502 when the
provider cannot be reached), never a traceback; the refusal middleware audits it like any
other, and a windowed ``auth.oidc_refused`` entry records the reason from fixed vocabulary.
Nothing the provider sends is echoed except a known OAuth error code.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated, Any

from authlib.common.security import generate_token
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from egress_review.panel.auth import ID_TOKEN_COOKIE, PANEL_ROLES, set_csrf_cookie, set_token_cookie
from egress_review.panel.oidc_session import (
    PendingSignIn,
    clear_state_cookie,
    pending_sign_in,
    set_state_cookie,
)
from egress_review.panel.routes import render, see_other
from tre.api.deps import DbSession, get_settings_dep, principal_from_token
from tre.api.problems import Problem
from tre.audit import record_event
from tre.audit.events import RecentKeys
from tre.auth.oidc import OidcError, OidcProvider, TokenEndpointError, authorization_url, token_request
from tre.auth.principal import Principal
from tre.config import Settings

router = APIRouter(prefix="/panel/oidc", include_in_schema=False)

# The session ends before the answer is sent ("function" scope): a refusal page is a 401/403
# whose audit entry the refusal middleware writes after the answer, and on SQLite that
# write must not wait for the writer lock this request's own session would still hold.
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]

REFUSAL_WINDOW_S = 300.0

# OAuth 2.0 / OpenID Connect error codes a provider may send back (RFC 6749 4.1.2.1, OIDC
# Core 3.1.2.6); anything else is shown as "other".
KNOWN_PROVIDER_ERRORS = frozenset(
    {
        "access_denied",
        "invalid_request",
        "unauthorized_client",
        "unsupported_response_type",
        "invalid_scope",
        "server_error",
        "temporarily_unavailable",
        "interaction_required",
        "login_required",
        "account_selection_required",
        "consent_required",
        "invalid_request_uri",
        "invalid_request_object",
        "request_not_supported",
        "request_uri_not_supported",
        "registration_not_supported",
        "invalid_target",
    }
)

# reason -> (status, heading, sentence); {provider} is the configured provider's name.
REFUSALS: dict[str, tuple[int, str, str]] = {
    "sign-in-expired": (
        401,
        "Sign-in expired",
        "This sign-in took longer than ten minutes, was already used, or was started in another "
        "browser; start again.",
    ),
    "bad-state": (
        401,
        "Sign-in refused",
        "The answer from {provider} does not belong to the sign-in this browser started (its state "
        "does not match), so it was refused; start again.",
    ),
    "consent-denied": (
        401,
        "Sign-in cancelled",
        "The sign-in was cancelled or refused at {provider}; nothing was changed. Start again to sign in.",
    ),
    "provider-error": (
        401,
        "Sign-in failed at the provider",
        "{provider} did not complete the sign-in (error code: {code}); start again, or ask your "
        "administrator if it keeps happening.",
    ),
    "missing-code": (401, "Sign-in refused", "The answer from {provider} carries no authorization code."),
    "code-exchange-failed": (
        401,
        "Sign-in refused",
        "{provider} would not exchange the authorization code for tokens (error code: {code}); start again.",
    ),
    "provider-unreachable": (
        502,
        "Identity provider unavailable",
        "{provider} cannot be reached or gave an unusable answer just now; try again in a minute.",
    ),
    "id-token": (401, "Sign-in refused", "The identity token from {provider} failed a check: {detail}."),
    "token-mismatch": (
        401,
        "Sign-in refused",
        "The access token and the identity token from {provider} name different users.",
    ),
    "access-token": (401, "Sign-in refused", "tre does not accept your access token: {detail}."),
    "not-a-reviewer": (
        403,
        "Not a reviewer",
        "You signed in as {user}, who does not hold the dac or admin role; the review panel is for "
        "data access committee members and admins.",
    ),
}


def _provider(request: Request, settings: Settings) -> OidcProvider:
    """The app's provider object (shared with the token verifier, so one discovery cache)."""
    if not settings.panel_oidc_enabled:
        raise Problem(
            404, "Not found", "sign-in by OpenID Connect is not configured for this panel", "not-found"
        )
    provider: OidcProvider | None = getattr(request.app.state.verifier, "provider", None)
    if provider is None:
        raise Problem(404, "Not found", "no OpenID provider is configured", "not-found")
    return provider


def _refusal_window(request: Request) -> RecentKeys:
    """Which refusals this app recorded recently (one window per app, not per process)."""
    window: RecentKeys | None = getattr(request.app.state, "oidc_refusals", None)
    if window is None:
        window = request.app.state.oidc_refusals = RecentKeys()
    return window


def provider_name(settings: Settings) -> str:
    return settings.oidc_provider_name or settings.oidc_issuer or "the identity provider"


def _refuse(
    request: Request,
    session: Session,
    settings: Settings,
    reason: str,
    *,
    actor: str = "anonymous",
    **fields: str,
) -> HTMLResponse:
    """The error page for ``reason``; the reason is audited at most once per window."""
    status, heading, sentence = REFUSALS[reason]
    message = sentence.format(provider=provider_name(settings), **fields)
    earlier = _refusal_window(request).due((reason, actor), REFUSAL_WINDOW_S)
    if earlier is not None:
        record_event(
            session,
            actor=actor,
            action="auth.oidc_refused",
            details={"reason": reason, "via": "panel", "earlier_refusals": earlier},
        )
    response = render(
        request,
        "oidc_error.html",
        {"principal": None, "heading": heading, "message": message, "reason": reason},
        status=status,
    )
    clear_state_cookie(response, request)
    return response


@router.get("/start")
def start(request: Request, settings: SettingsDep, session: DbSession) -> Response:
    """Begin a sign-in: fresh state, nonce and PKCE verifier, sealed in a cookie; off to the provider."""
    provider = _provider(request, settings)
    try:
        discovery = provider.discovery()
    except OidcError:
        return _refuse(request, session, settings, "provider-unreachable")
    pending = PendingSignIn(
        state=generate_token(43), nonce=generate_token(43), code_verifier=generate_token(64)
    )
    url = authorization_url(
        discovery,
        client_id=str(settings.oidc_client_id),
        redirect_uri=str(settings.oidc_redirect_url),
        scope=settings.oidc_scopes,
        state=pending.state,
        nonce=pending.nonce,
        code_verifier=pending.code_verifier,
    )
    response = see_other(url)
    set_state_cookie(response, request, settings, pending)
    return response


@router.get("/callback")
def callback(
    request: Request,
    settings: SettingsDep,
    session: DbSession,
    state: str = "",
    code: str = "",
    error: str = "",
) -> Response:
    """The provider's answer: checked against this browser's pending sign-in, then exchanged."""
    provider = _provider(request, settings)
    pending = pending_sign_in(request, settings)
    if pending is None:
        return _refuse(request, session, settings, "sign-in-expired")
    if not state or not hmac.compare_digest(state.encode(), pending.state.encode()):
        return _refuse(request, session, settings, "bad-state")
    if error:
        if error == "access_denied":
            return _refuse(request, session, settings, "consent-denied")
        known = error if error in KNOWN_PROVIDER_ERRORS else "other"
        return _refuse(request, session, settings, "provider-error", code=known)
    if not code or len(code) > 4096:
        return _refuse(request, session, settings, "missing-code")
    try:
        tokens = _exchange(provider, settings, code, pending)
    except TokenEndpointError as exc:
        known = exc.error if exc.error in _TOKEN_ERRORS else "other"
        return _refuse(request, session, settings, "code-exchange-failed", code=known)
    except OidcError:
        return _refuse(request, session, settings, "provider-unreachable")
    id_token, access_token = tokens.get("id_token"), tokens.get("access_token")
    if not isinstance(id_token, str) or not isinstance(access_token, str):
        return _refuse(request, session, settings, "code-exchange-failed", code="no_tokens")
    try:
        id_claims = provider.verify_id_token(id_token, str(settings.oidc_client_id), pending.nonce)
    except OidcError as exc:
        return _refuse(request, session, settings, "id-token", detail=_sentence(str(exc)))
    try:
        principal = principal_from_token(request, access_token, session)
    except Problem as exc:
        return _refuse(request, session, settings, "access-token", detail=_sentence(exc.detail))
    if principal.user_id != str(id_claims["sub"]):
        return _refuse(request, session, settings, "token-mismatch", actor=principal.user_id)
    if not principal.has(*PANEL_ROLES):
        return _refuse(
            request, session, settings, "not-a-reviewer", actor=principal.user_id, user=principal.user_id
        )
    return _signed_in(request, session, principal, access_token, id_token)


def _exchange(
    provider: OidcProvider, settings: Settings, code: str, pending: PendingSignIn
) -> dict[str, Any]:
    """The code for tokens at the token endpoint, proving possession of the PKCE verifier."""
    secret = settings.oidc_client_secret.get_secret_value() if settings.oidc_client_secret else None
    return token_request(
        provider.discovery().token_endpoint,
        "authorization_code",
        client_id=str(settings.oidc_client_id),
        client_secret=secret,
        timeout_s=settings.oidc_http_timeout_s,
        code=code,
        code_verifier=pending.code_verifier,
        redirect_uri=str(settings.oidc_redirect_url),
    )


# RFC 6749 5.2.
_TOKEN_ERRORS = frozenset(
    {"invalid_request", "invalid_client", "invalid_grant", "unauthorized_client", "unsupported_grant_type"}
)


def _sentence(text: str) -> str:
    return text.strip().rstrip(".")[:300]


def _signed_in(
    request: Request, session: Session, principal: Principal, access_token: str, id_token: str
) -> Response:
    """Audit the sign-in, set the session cookies, and continue to the queue.

    The answer is a page that moves on by itself rather than a redirect: the browser came
    here from the provider's site, and a SameSite=Strict cookie set now is not sent on a
    redirect in that same cross-site chain, only on a navigation this page starts.
    """
    claims = request.app.state.verifier.verify(access_token)
    record_event(
        session,
        actor=principal.user_id,
        action="auth.login",
        details={"token_id": principal.token_id, "roles": sorted(principal.roles), "via": "panel-oidc"},
    )
    response = render(request, "oidc_continue.html", {"principal": None, "next": "/panel/"})
    set_token_cookie(response, request, access_token, int(claims["exp"]))
    set_token_cookie(response, request, id_token, int(claims["exp"]), name=ID_TOKEN_COOKIE)
    # A new CSRF value at sign-in: a value planted before sign-in is worthless afterwards.
    set_csrf_cookie(response, request, secrets.token_urlsafe(32))
    clear_state_cookie(response, request)
    return response
