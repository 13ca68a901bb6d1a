"""Who am I: the CLI's `tre login` / `tre whoami` check a token here.

A sign-in is audited once per token (its ``jti``), on the first call that shows it: calling
``/me`` again with the same token is a whoami, not a new sign-in, and must not grow the
audit log (which can never shrink) by one entry per call.
"""

from __future__ import annotations

import json

from fastapi import APIRouter, Depends, Request, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from tre.access import user_project_ids
from tre.api.deps import DbSession, bearer_token, current_principal, writes_on_read
from tre.api.schemas import MeOut
from tre.audit import record_event
from tre.auth.principal import Principal
from tre.auth.revocation import revoke
from tre.store.models import AuditEntry

router = APIRouter(prefix="/api/v1", tags=["me"])


def signed_in_before(session: Session, principal: Principal) -> bool:
    """Whether this token's sign-in is already in the audit log (searched by the indexed
    actor and action, then by the token id in the entry)."""
    bodies = session.scalars(
        select(AuditEntry.body).where(
            AuditEntry.actor == principal.user_id, AuditEntry.action == "auth.login"
        )
    )
    for body in bodies:
        details = json.loads(body).get("details") or {}
        if details.get("token_id") == principal.token_id:
            return True
    return False


@router.get("/me", response_model=MeOut)
@writes_on_read
def whoami(
    session: DbSession,
    principal: Principal = Depends(current_principal),
) -> MeOut:
    if principal.token_id is None or not signed_in_before(session, principal):
        record_event(
            session,
            actor=principal.user_id,
            action="auth.login",
            details={"token_id": principal.token_id, "roles": sorted(principal.roles)},
        )
    return MeOut(
        user_id=principal.user_id,
        roles=sorted(principal.roles),
        projects=user_project_ids(session, principal.user_id),
    )


@router.post("/auth/logout", status_code=204, summary="Sign this token out before it expires")
def logout(
    session: DbSession,
    request: Request,
    principal: Principal = Depends(current_principal),
) -> Response:
    """The bearer token of this request is refused from now on (`tre logout`), wherever a
    copy of it is; the caller's other tokens stay valid. Any signed-in caller may sign their
    own token out, role or none: it only ever takes access away."""
    token = bearer_token(request)
    claims = request.app.state.verifier.verify(token)
    revoke(session, principal.user_id, token, float(claims["exp"]), via="api")
    return Response(status_code=204)
