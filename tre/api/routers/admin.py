"""User administration (role admin only)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from sqlalchemy.orm import Session

from tre import registry
from tre.api.deps import get_session, require_roles
from tre.api.schemas import UserIn, UserOut, UserRolesIn
from tre.auth.principal import Principal
from tre.store.models import User

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])
admin_only = require_roles("admin")


def _out(user: User) -> UserOut:
    return UserOut(
        id=user.id, display_name=user.display_name, disabled=user.disabled, roles=sorted(user.role_names)
    )


@router.get("/users", response_model=list[UserOut])
def list_users(_: Principal = Depends(admin_only), session: Session = Depends(get_session)) -> list[UserOut]:
    return [_out(u) for u in registry.list_users(session)]


@router.post("/users", response_model=UserOut, status_code=201)
def create_user(
    body: UserIn, p: Principal = Depends(admin_only), session: Session = Depends(get_session)
) -> UserOut:
    roles: list[str] = list(body.roles)
    return _out(registry.create_user(session, p.user_id, body.id, roles, body.display_name, body.email))


@router.put("/users/{user_id}/roles", response_model=UserOut)
def set_roles(
    user_id: str,
    body: UserRolesIn,
    p: Principal = Depends(admin_only),
    session: Session = Depends(get_session),
) -> UserOut:
    return _out(registry.set_user_roles(session, p.user_id, user_id, [str(r) for r in body.roles]))


@router.post("/users/{user_id}/disable", response_model=UserOut)
def disable_user(
    user_id: str, p: Principal = Depends(admin_only), session: Session = Depends(get_session)
) -> UserOut:
    return _out(registry.set_user_disabled(session, p.user_id, user_id, True))


@router.post("/users/{user_id}/enable", response_model=UserOut)
def enable_user(
    user_id: str, p: Principal = Depends(admin_only), session: Session = Depends(get_session)
) -> UserOut:
    return _out(registry.set_user_disabled(session, p.user_id, user_id, False))
