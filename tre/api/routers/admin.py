"""User administration and the datasets' DAC committees (role admin only)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from tre import committees, registry
from tre.api.deps import DbSession, get_settings_dep, require_roles
from tre.api.schemas import In, UserIn, UserOut, UserRolesIn
from tre.auth.principal import Principal
from tre.config import Settings
from tre.store.models import User

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])
admin_only = require_roles("admin")


def _out(user: User) -> UserOut:
    return UserOut(
        id=user.id, display_name=user.display_name, disabled=user.disabled, roles=sorted(user.role_names)
    )


@router.get("/users", response_model=list[UserOut])
def list_users(
    session: DbSession,
    _: Principal = Depends(admin_only),
) -> list[UserOut]:
    return [_out(u) for u in registry.list_users(session)]


@router.post("/users", response_model=UserOut, status_code=201)
def create_user(
    session: DbSession,
    body: UserIn,
    p: Principal = Depends(admin_only),
) -> UserOut:
    roles: list[str] = list(body.roles)
    return _out(registry.create_user(session, p.user_id, body.id, roles, body.display_name, body.email))


@router.put("/users/{user_id}/roles", response_model=UserOut)
def set_roles(
    session: DbSession,
    user_id: str,
    body: UserRolesIn,
    force: bool = Query(
        False, description="Also when a committee or an open request can then no longer meet its quorum."
    ),
    p: Principal = Depends(admin_only),
    settings: Settings = Depends(get_settings_dep),
) -> UserOut:
    """Replace a user's roles; taking ``dac`` from a reviewer a quorum needs answers ``409
    quorum-unmeetable`` unless forced (`tre.review_capacity`)."""
    roles = [str(r) for r in body.roles]
    return _out(
        registry.set_user_roles(
            session, p.user_id, user_id, roles, policies_dir=settings.resolved_policies_dir, force=force
        )
    )


@router.post("/users/{user_id}/disable", response_model=UserOut)
def disable_user(
    session: DbSession,
    user_id: str,
    force: bool = Query(
        False, description="Also when a committee or an open request can then no longer meet its quorum."
    ),
    p: Principal = Depends(admin_only),
    settings: Settings = Depends(get_settings_dep),
) -> UserOut:
    """Disable a user; a reviewer a quorum needs answers ``409 quorum-unmeetable`` unless forced."""
    return _out(
        registry.set_user_disabled(
            session, p.user_id, user_id, True, policies_dir=settings.resolved_policies_dir, force=force
        )
    )


@router.post("/users/{user_id}/enable", response_model=UserOut)
def enable_user(
    session: DbSession,
    user_id: str,
    p: Principal = Depends(admin_only),
    settings: Settings = Depends(get_settings_dep),
) -> UserOut:
    return _out(
        registry.set_user_disabled(
            session, p.user_id, user_id, False, policies_dir=settings.resolved_policies_dir
        )
    )


# ---------------------------------------------------------------------------- committees


class CommitteeMemberIn(In):
    user_id: str = Field(min_length=1, max_length=64)


class CommitteeOut(BaseModel):
    """One dataset's committee against its quorum (`tre.committees`)."""

    dataset_id: str
    policy: str
    members: list[str]
    able_reviewers: int
    quorum: int | None
    quorum_meetable: bool


@router.get("/committees", response_model=list[CommitteeOut])
def list_committees(
    session: DbSession,
    _: Principal = Depends(admin_only),
    settings: Settings = Depends(get_settings_dep),
) -> list[dict[str, object]]:
    """Every dataset's DAC committee, and whether its policy's quorum can be met at all."""
    return [c.as_dict() for c in committees.committee_report(session, settings.resolved_policies_dir)]


@router.post("/committees/{dataset_id}/members", response_model=CommitteeOut, status_code=201)
def assign_reviewer(
    session: DbSession,
    dataset_id: str,
    body: CommitteeMemberIn,
    p: Principal = Depends(admin_only),
    settings: Settings = Depends(get_settings_dep),
) -> dict[str, object]:
    """Put a DAC member on a dataset's committee (audited ``admin.dac_assigned``)."""
    state = committees.assign(session, p.user_id, dataset_id, body.user_id, settings.resolved_policies_dir)
    return state.as_dict()


@router.delete("/committees/{dataset_id}/members/{user_id}", response_model=CommitteeOut)
def unassign_reviewer(
    session: DbSession,
    dataset_id: str,
    user_id: str,
    force: bool = Query(False, description="Also when the committee can then no longer meet its quorum."),
    p: Principal = Depends(admin_only),
    settings: Settings = Depends(get_settings_dep),
) -> dict[str, object]:
    """Take a member off a dataset's committee (audited ``admin.dac_unassigned``); refused
    with ``409 quorum-unmeetable`` when its quorum could then not be met, unless forced."""
    state = committees.unassign(
        session, p.user_id, dataset_id, user_id, settings.resolved_policies_dir, force=force
    )
    return state.as_dict()
