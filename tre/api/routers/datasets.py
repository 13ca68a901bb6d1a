"""Datasets and access grants. Registering data and granting access are admin acts."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, Query

from tre import registry
from tre.access import STAFF_ROLES, user_project_ids
from tre.api.deps import DbSession, any_role, get_settings_dep, require_roles
from tre.api.schemas import SLUG_PATTERN, DatasetIn, DatasetOut, GrantIn, GrantOut, RevokeIn
from tre.auth.principal import Principal
from tre.config import Settings

router = APIRouter(prefix="/api/v1", tags=["datasets"])
admin_only = require_roles("admin")
readers = any_role()


@router.get("/datasets", response_model=list[DatasetOut])
def list_datasets(
    session: DbSession,
    p: Principal = Depends(readers),
) -> list[DatasetOut]:
    return [DatasetOut.model_validate(d) for d in registry.list_visible_datasets(session, p)]


@router.post("/datasets", response_model=DatasetOut, status_code=201)
def register_dataset(
    session: DbSession,
    body: DatasetIn,
    p: Principal = Depends(admin_only),
    settings: Settings = Depends(get_settings_dep),
) -> DatasetOut:
    ds = registry.register_dataset(
        session,
        p.user_id,
        body.id,
        body.name,
        Path(body.path),
        body.description,
        body.policy,
        protected=settings.protected_paths,
        conditions=body.conditions,
        access_rights=body.access_rights,
        policies_dir=settings.resolved_policies_dir,
        data_dir=settings.data_dir,
    )
    return DatasetOut.model_validate(ds)


@router.get("/grants", response_model=list[GrantOut])
def list_grants(
    session: DbSession,
    project_id: str | None = Query(None, pattern=SLUG_PATTERN, max_length=63),
    p: Principal = Depends(readers),
) -> list[GrantOut]:
    """Grants with their expiry: staff see all, a researcher those of their own projects
    (`tre grant list`, to know what may be run before submitting)."""
    visible = None if p.has(*STAFF_ROLES) else user_project_ids(session, p.user_id)
    grants = registry.list_grants(session, project_id)
    return [GrantOut.model_validate(g) for g in grants if visible is None or g.project_id in visible]


@router.post("/grants", response_model=GrantOut, status_code=201)
def grant(
    session: DbSession,
    body: GrantIn,
    p: Principal = Depends(admin_only),
) -> GrantOut:
    g = registry.grant_access(
        session, p.user_id, body.project_id, body.dataset_id, body.expires_at, body.days, body.reason
    )
    return GrantOut.model_validate(g)


@router.post("/grants/{grant_id}/revoke", response_model=GrantOut)
def revoke(
    session: DbSession,
    grant_id: str,
    body: RevokeIn,
    p: Principal = Depends(admin_only),
) -> GrantOut:
    return GrantOut.model_validate(registry.revoke_grant(session, p.user_id, grant_id, body.reason))
