"""Request dependencies: database session, authenticated principal, role gates.

Every router depends on `current_principal` (directly or through `require_roles`), so a
route without an explicit role check still refuses anonymous callers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from fastapi import Depends, Request
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from tre.api.problems import Problem
from tre.audit.events import note_token_use
from tre.auth.principal import Principal
from tre.auth.tokens import TokenError, TokenVerifier
from tre.config import Settings
from tre.store.db import session_scope
from tre.store.models import Role, User

_BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="tre"'}


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_session(request: Request) -> Iterator[Session]:
    """One transaction per request: committed when the handler returns without error."""
    with session_scope(request.app.state.engine) as session:
        yield session


def principal_from_token(request: Request, token: str, session: Session) -> Principal:
    """Verify a raw JWT and map it to a known, enabled user with the roles both agree on."""
    verifier: TokenVerifier = request.app.state.verifier
    try:
        claims = verifier.verify(token)
    except TokenError as exc:
        raise Problem(401, "Unauthorized", str(exc), "invalid-token", headers=_BEARER_CHALLENGE) from exc
    user = session.scalars(
        select(User).where(User.id == str(claims["sub"])).options(selectinload(User.roles))
    ).one_or_none()
    if user is None or user.disabled:
        raise Problem(
            401,
            "Unauthorized",
            "the token's user is unknown or disabled",
            "unknown-user",
            headers=_BEARER_CHALLENGE,
        )
    # A token carries the roles it was minted for; the user table can only narrow them, so
    # removing a role takes effect before old tokens expire.
    roles = frozenset(verifier.roles_from(claims) & user.role_names)
    return Principal(user_id=user.id, roles=roles, token_id=claims.get("jti"))


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(
            401,
            "Unauthorized",
            "send an 'Authorization: Bearer <token>' header",
            "missing-token",
            headers=_BEARER_CHALLENGE,
        )
    return token.strip()


def current_principal(request: Request, session: Session = Depends(get_session)) -> Principal:
    principal = principal_from_token(request, bearer_token(request), session)
    request.state.principal = principal
    note_token_use(session, principal.user_id, principal.token_id)  # audit: tie token to use
    return principal


def require_roles(*roles: str) -> Callable[..., Principal]:
    """A dependency that admits only callers holding at least one of ``roles``."""
    wanted = frozenset(roles)

    def _gate(principal: Principal = Depends(current_principal)) -> Principal:
        if not principal.roles & wanted:
            needed = ", ".join(sorted(wanted))
            raise Problem(403, "Forbidden", f"this action needs one of the roles: {needed}", "missing-role")
        return principal

    return _gate


def any_role() -> Callable[..., Principal]:
    """Admit callers who still hold at least one role. Taking every role away from a user is
    how an admin revokes access before the user's tokens expire, so no route that shows
    project data may stop at `current_principal` (which admits a token whose roles the user
    table has narrowed to none)."""
    return require_roles(*(r.value for r in Role))
