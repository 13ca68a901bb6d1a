"""Who may see what: the platform's visibility rules, in one place.

Every listing and look-up (jobs, projects, datasets, grants, egress requests, logs) asks these
functions, so a role's reach cannot differ between the API, the panel and the airlock.
Anything not visible answers 404 exactly like anything that does not exist: ids are never an
oracle.
"""

from __future__ import annotations

import json

from sqlalchemy import select
from sqlalchemy.orm import Session

from tre.auth.principal import Principal
from tre.store.models import AccessGrant, AuditEntry, DatasetReviewer, ProjectMember

MEMBER_REMOVED = "admin.member_removed"  # tre.registry.remove_member's audit action

# Oversight roles that see every project's jobs and read job logs unscreened.
OVERSIGHT_ROLES = ("admin", "auditor")
# Staff who see every dataset and every egress request (DAC members review all projects).
STAFF_ROLES = ("dac", "admin", "auditor")


def is_member(session: Session, project_id: str, user_id: str) -> bool:
    return session.get(ProjectMember, (project_id, user_id)) is not None


def user_project_ids(session: Session, user_id: str) -> list[str]:
    return list(session.scalars(select(ProjectMember.project_id).where(ProjectMember.user_id == user_id)))


def former_project_ids(session: Session, user_id: str) -> frozenset[str]:
    """The projects ``user_id`` was removed from (``admin.member_removed`` in the audit log:
    membership rows are deleted on removal, the signed log keeps that they existed).

    A reviewer's independence from a project does not start the day they leave it: a DAC
    member removed from a project stays conflicted on its releases. The removals are few (an
    admin's actions), read in one statement and matched here, as the body is JSON."""
    rows = session.execute(
        select(AuditEntry.project_id, AuditEntry.body).where(AuditEntry.action == MEMBER_REMOVED)
    )
    former: set[str] = set()
    for project_id, body in rows:
        if project_id and project_id not in former:
            details = json.loads(body).get("details") or {}
            if details.get("user") == user_id:
                former.add(project_id)
    return frozenset(former)


def former_member_ids(session: Session, project_id: str) -> frozenset[str]:
    """The users removed from ``project_id`` (see `former_project_ids`, the same records read
    the other way): conflicted on its releases for good."""
    rows = session.scalars(
        select(AuditEntry.body).where(
            AuditEntry.action == MEMBER_REMOVED, AuditEntry.project_id == project_id
        )
    )
    return frozenset(
        str(user) for body in rows if (user := (json.loads(body).get("details") or {}).get("user"))
    )


def sees_every_project(principal: Principal) -> bool:
    return principal.has(*OVERSIGHT_ROLES)


def can_see_project(session: Session, principal: Principal, project_id: str) -> bool:
    """Admins and auditors see every project; anyone else only the projects they belong to."""
    return sees_every_project(principal) or is_member(session, project_id, principal.user_id)


def visible_project_ids(session: Session, principal: Principal) -> list[str] | None:
    """The projects whose jobs the caller may list; None means every project."""
    return None if sees_every_project(principal) else user_project_ids(session, principal.user_id)


def visible_dataset_ids(session: Session, principal: Principal) -> set[str] | None:
    """None means all; researchers see the datasets their projects were granted."""
    if principal.has(*STAFF_ROLES):
        return None
    projects = user_project_ids(session, principal.user_id)
    return set(session.scalars(select(AccessGrant.dataset_id).where(AccessGrant.project_id.in_(projects))))


def can_see_egress(session: Session, principal: Principal, project_id: str) -> bool:
    """Staff see every egress request; a researcher those of their own projects."""
    return principal.has(*STAFF_ROLES) or is_member(session, project_id, principal.user_id)


def can_read_job_code(
    session: Session, principal: Principal, project_id: str, dataset_ids: list[str] | None = None
) -> bool:
    """The code a job ran: for those who oversee (admins, auditors), belong to its project, or
    review its outputs: a DAC member on the committee of one of the datasets governing the job
    (``dataset_ids``; a job over none is the platform DAC's). A DAC member of another data
    holder's committee reads nothing of it (tre.committees)."""
    if principal.has(*OVERSIGHT_ROLES) or is_member(session, project_id, principal.user_id):
        return True
    if not principal.has("dac"):
        return False
    if not dataset_ids:
        return True
    seats = select(DatasetReviewer.dataset_id).where(
        DatasetReviewer.user_id == principal.user_id, DatasetReviewer.dataset_id.in_(dataset_ids)
    )
    return session.scalars(seats.limit(1)).first() is not None


def reads_raw_logs(session: Session, principal: Principal, project_id: str) -> bool:
    """Staff who oversee jobs read the raw log; everyone else gets the screened one.

    A member of the job's project gets the screened log whatever other roles they hold: the
    job is their own research code's (as the airlock hides reviewer-only evidence from the
    requester even if they hold a staff role)."""
    return principal.has(*OVERSIGHT_ROLES) and not is_member(session, project_id, principal.user_id)


def sees_raw_output_names(session: Session, principal: Principal, project_id: str) -> bool:
    """Staff see every output name of jobs they review; a member of the job's project sees
    them screened, as a researcher, whatever other roles they hold (see `reads_raw_logs`)."""
    return principal.has(*STAFF_ROLES) and not is_member(session, project_id, principal.user_id)


def sees_exact_run(session: Session, principal: Principal, project_id: str) -> bool:
    """Exact exit codes, end reasons and times of a job (`tre.jobs.shown_run`): for the staff
    who see its raw output names; a member of the project sees them coarsened, as a researcher."""
    return sees_raw_output_names(session, principal, project_id)
