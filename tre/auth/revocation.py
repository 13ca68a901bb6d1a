"""Signing a bearer token out before it expires.

A JWT stays valid until its ``exp`` wherever it is verified offline; clearing the panel's
cookie or deleting the CLI's token file leaves every copy of it (a browser profile, a shell
history, a proxy log) usable for hours. A sign-out therefore lists the token's SHA-256 in
``revoked_tokens`` until that expiry, and authentication refuses a listed token: through the
user cache (`tre.auth.user_cache`), which loads each user's live sign-outs with their roles,
so a revocation made in this process applies to the next request and one made by another
process within the cache's lifetime, exactly as a role change does.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from tre.audit.log import record_event
from tre.store.base import utcnow
from tre.store.models import RevokedToken


def token_digest(token: str) -> str:
    """The key a token is revoked under (the verifier's cache uses the same digest)."""
    return hashlib.sha256(token.encode()).hexdigest()


def revoke(session: Session, user_id: str, token: str, expires_at: float, via: str) -> None:
    """Sign ``token`` (verified, of ``user_id``, expiring at ``expires_at``) out, audited as
    ``auth.logout``; signed-out tokens past their expiry are forgotten on the way."""
    now = utcnow()
    session.execute(delete(RevokedToken).where(RevokedToken.expires_at < now))
    digest = token_digest(token)
    if session.get(RevokedToken, digest) is None:
        until = datetime.fromtimestamp(expires_at, UTC)
        session.add(RevokedToken(token_sha256=digest, user_id=user_id, revoked_at=now, expires_at=until))
        record_event(session, actor=user_id, action="auth.logout", details={"via": via})
    session.flush()


def live_revocations(session: Session, user_id: str) -> frozenset[str]:
    """Digests of the user's signed-out tokens that have not expired yet."""
    rows = session.scalars(
        select(RevokedToken.token_sha256).where(
            RevokedToken.user_id == user_id, RevokedToken.expires_at >= utcnow()
        )
    )
    return frozenset(rows)
