"""Who am I: the CLI's `tre login` / `tre whoami` check a token here (audited as a login)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from sqlalchemy.orm import Session

from tre.access import user_project_ids
from tre.api.deps import current_principal, get_session
from tre.api.schemas import MeOut
from tre.audit import record_event
from tre.auth.principal import Principal

router = APIRouter(prefix="/api/v1", tags=["me"])


@router.get("/me", response_model=MeOut)
def whoami(
    principal: Principal = Depends(current_principal), session: Session = Depends(get_session)
) -> MeOut:
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
