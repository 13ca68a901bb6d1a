"""Panel sign-in: the same JWTs as the API, kept in a cookie the page's scripts cannot read.

The reviewer pastes a token once; it is verified exactly as a bearer token would be and then
kept in an HttpOnly, SameSite=Strict cookie (Secure on https) scoped to ``/panel``. Every
state-changing form also carries a double-submit CSRF token: a random value held in its own
HttpOnly cookie and echoed in a hidden field, compared in constant time. SameSite=Strict
already stops cross-site posts in current browsers; the token covers the rest, and the
Origin check refuses a post from any other origin outright, an opaque (``null``) one included.
"""

from __future__ import annotations

import hmac
import secrets
import time
from datetime import UTC, datetime

from fastapi import Request, Response

from tre.api.deps import DbSession, principal_from_token
from tre.api.problems import Problem
from tre.audit.refusals import answered_as_refusal
from tre.auth.principal import Principal
from tre.auth.tokens import TOKEN_EXPIRED

TOKEN_COOKIE = "tre_panel_token"  # noqa: S105 - a cookie name, not a secret
CSRF_COOKIE = "tre_panel_csrf"
# The OIDC sign-in's ID token, kept only to name the session at the provider's logout.
ID_TOKEN_COOKIE = "tre_panel_idt"  # noqa: S105 - a cookie name, not a secret
COOKIE_PATH = "/panel"
PANEL_ROLES = ("dac", "admin")
# The cookie outlives its token by this much, so the server still receives an expired one and
# can say the session *expired* rather than silently showing a bare sign-in page (an expired
# token is worthless: it is refused everywhere).
SESSION_NOTICE_S = 24 * 3600
# Why a session ended, as the sign-in page names it: fixed words, chosen by the server.
ENDED = {
    "expired": "Your session expired",
    "signed-out": "This session was signed out",
    "invalid": "Your session is no longer valid (your account or roles changed, or the token was refused)",
}


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def set_token_cookie(
    response: Response, request: Request, token: str, expires_at: int | None, name: str = TOKEN_COOKIE
) -> None:
    max_age = (max(60, int(expires_at - time.time())) if expires_at else 8 * 3600) + SESSION_NOTICE_S
    response.set_cookie(
        name,
        token,
        max_age=max_age,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )


def clear_cookies(response: Response, request: Request) -> None:
    for name in (TOKEN_COOKIE, CSRF_COOKIE, ID_TOKEN_COOKIE):
        response.delete_cookie(
            name, path=COOKIE_PATH, httponly=True, samesite="strict", secure=_secure(request)
        )


def csrf_token(request: Request) -> tuple[str, bool]:
    """The caller's CSRF token, and whether it is new (then the response must set it)."""
    current = request.cookies.get(CSRF_COOKIE, "")
    if len(current) >= 32:
        return current, False
    return secrets.token_urlsafe(32), True


def set_csrf_cookie(response: Response, request: Request, value: str) -> None:
    response.set_cookie(
        CSRF_COOKIE, value, path=COOKIE_PATH, httponly=True, samesite="strict", secure=_secure(request)
    )


def check_csrf(request: Request, submitted: str) -> None:
    """Refuse a form post unless its hidden token equals the cookie and its origin is ours."""
    origin = request.headers.get("origin")
    if origin:
        # `null` too: an opaque origin (a sandboxed frame, a data: document, a post redirected
        # across origins); the panel's pages send their own (`Referrer-Policy: same-origin`).
        expected = f"{request.url.scheme}://{request.url.netloc}"
        if origin != expected:
            raise Problem(
                403,
                "Cross-site request refused",
                "the form was posted from another origin",
                "csrf-origin",
            )
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not cookie or not submitted or not hmac.compare_digest(cookie.encode(), submitted.encode()):
        raise Problem(
            403,
            "Cross-site request refused",
            "the form's CSRF token is missing or does not match; reload the page and try again",
            "csrf-mismatch",
        )


def form_is_stale(request: Request, submitted: str) -> bool:
    """True for a post of one of our own pages whose CSRF token is out of date; raises as
    `check_csrf` does for anything else.

    The token rotates at sign-in and goes at sign-out, so a form opened in another tab before
    the reviewer signed in again carries an old one. When the browser names our own origin the
    post came from our page (another site cannot make a browser send our ``Origin``): the
    route then says the form was out of date and keeps what the reviewer wrote, instead of a
    bare "cross-site request refused" that lost it. Without an ``Origin`` nothing proves
    where the post came from, and it is refused as before."""
    try:
        check_csrf(request, submitted)
    except Problem as exc:
        origin = request.headers.get("origin")
        if exc.type_ == "csrf-mismatch" and origin == f"{request.url.scheme}://{request.url.netloc}":
            return True
        raise
    return False


STALE_FORM = (
    "This page's form was out of date (opened before you last signed in, e.g. in another tab), "
    "so your {what} was not recorded. What you wrote is kept below: send it again."
)


class SessionEnded(Problem):
    """The 303 to the sign-in page for a session the browser still held but that ended
    (``ended``: a key of `ENDED`). A vote or resolution route catches it to keep what the
    reviewer wrote (`routes.reviewer_or_ended`) instead of dropping it on the redirect."""

    def __init__(self, request: Request, ended: str) -> None:
        where = f"{COOKIE_PATH}/login?ended={ended}" + ("&lost=1" if request.method != "GET" else "")
        super().__init__(
            303,
            "Sign-in required",
            f"{ENDED[ended]}; sign in again",
            "panel-login",
            headers={"Location": where},
        )
        self.ended = ended


def _login_redirect(request: Request, ended: str | None = None) -> Problem:
    """A 303 to the sign-in page; API-style clients still get a problem document saying why.

    ``ended`` (a key of `ENDED`) says why a session the browser still held was refused, and
    for a post, that what it carried (a vote, a resolution) was not recorded: the reviewer is
    told, never left to guess why the panel went back to its sign-in page."""
    if ended is not None:
        return SessionEnded(request, ended)
    detail = "sign in to the review panel with your token"
    return Problem(
        303, "Sign-in required", detail, "panel-login", headers={"Location": f"{COOKIE_PATH}/login"}
    )


def _why_ended(exc: Problem) -> str:
    if exc.type_ == "token-revoked":
        return "signed-out"
    if exc.type_ == "invalid-token" and exc.detail == TOKEN_EXPIRED:
        return "expired"
    return "invalid"


def panel_principal(request: Request, session: DbSession) -> Principal:
    """The signed-in reviewer (dac or admin); everyone else is sent to the login page or refused."""
    token = request.cookies.get(TOKEN_COOKIE)
    if not token:
        raise _login_redirect(request)
    try:
        principal = principal_from_token(request, token, session)
    except Problem as exc:
        if exc.status == 401:
            answered_as_refusal(request, 401)  # a failed authentication, though a redirect
            raise _login_redirect(request, _why_ended(exc)) from exc
        raise
    if not principal.has(*PANEL_ROLES):
        raise Problem(
            403,
            "Forbidden",
            "the review panel is for data access committee members and admins",
            "missing-role",
        )
    request.state.principal = principal
    # Shown on every page (base.html): a session's end is never a surprise.
    request.state.session_ends = int(request.app.state.verifier.verify(token)["exp"])
    return principal


def session_end_text(request: Request) -> str | None:
    """``HH:MM UTC`` (with the date when not today) at which the signed-in session ends."""
    ends = getattr(request.state, "session_ends", None)
    if ends is None:
        return None
    at = datetime.fromtimestamp(ends, UTC)
    today = datetime.now(UTC).date()
    return at.strftime("%H:%M UTC") if at.date() == today else at.strftime("%Y-%m-%d %H:%M UTC")
