"""Projects and their members. Admins manage; members (and auditors) may read."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query

from tre import registry
from tre.api.deps import DbSession, any_role, require_roles
from tre.api.schemas import MemberIn, ProjectIn, ProjectOut, QuotaIn
from tre.auth.principal import Principal
from tre.store.models import Project

router = APIRouter(prefix="/api/v1/projects", tags=["projects"])
admin_only = require_roles("admin")
readers = any_role()


def _out(p: Project) -> ProjectOut:
    fields = {name: getattr(p, name) for name in ProjectOut.model_fields if name != "members"}
    return ProjectOut(**fields, members=sorted(m.user_id for m in p.members))


@router.get("", response_model=list[ProjectOut])
def list_projects(
    session: DbSession,
    p: Principal = Depends(readers),
) -> list[ProjectOut]:
    return [_out(x) for x in registry.list_visible_projects(session, p)]


@router.get("/{project_id}", response_model=ProjectOut)
def get_project(
    session: DbSession,
    project_id: str,
    p: Principal = Depends(readers),
) -> ProjectOut:
    return _out(registry.get_visible_project(session, p, project_id))


@router.post("", response_model=ProjectOut, status_code=201)
def create_project(
    session: DbSession,
    body: ProjectIn,
    p: Principal = Depends(admin_only),
) -> ProjectOut:
    project = registry.create_project(
        session, p.user_id, body.id, body.name, body.description, body.quota.model_dump(exclude_none=True)
    )
    return _out(project)


@router.patch("/{project_id}/quota", response_model=ProjectOut)
def set_quota(
    session: DbSession,
    project_id: str,
    body: QuotaIn,
    p: Principal = Depends(admin_only),
) -> ProjectOut:
    project = registry.set_quota(session, p.user_id, project_id, body.model_dump(exclude_none=True))
    session.refresh(project)
    return _out(project)


@router.post("/{project_id}/members", response_model=ProjectOut, status_code=201)
def add_member(
    session: DbSession,
    project_id: str,
    body: MemberIn,
    force: bool = Query(False, description="Also when an open request can then no longer meet its quorum."),
    p: Principal = Depends(admin_only),
) -> ProjectOut:
    """Add a member; a DAC member whose conflict of interest would leave one of the project's
    open requests unable to reach its quorum answers ``409 quorum-unmeetable`` unless forced."""
    registry.add_member(session, p.user_id, project_id, body.user_id, force=force)
    session.flush()
    project = registry.get_project(session, project_id)
    session.refresh(project)
    return _out(project)


@router.delete("/{project_id}/members/{user_id}", status_code=204)
def remove_member(
    session: DbSession,
    project_id: str,
    user_id: str,
    p: Principal = Depends(admin_only),
) -> None:
    registry.remove_member(session, p.user_id, project_id, user_id)
