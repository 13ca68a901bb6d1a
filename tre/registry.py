"""Admin operations on users, projects, memberships, datasets and access grants.

Used by both the API (remote admin) and the CLI's local bootstrap (`tre demo`), so each
change is validated and audited in exactly one place.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tre import review_capacity
from tre.access import MEMBER_REMOVED, can_see_project, visible_dataset_ids
from tre.audit import record_event
from tre.auth.generation import start_new_epoch
from tre.auth.principal import Principal
from tre.catalogue.cache import refresh_facts
from tre.catalogue.vocabulary import normalise_access_rights, normalise_condition
from tre.datasets import summarise_dicom_folder
from tre.errors import Conflict, NotFound, TreError, Unprocessable, no_such
from tre.policy import PolicyError, load_policy
from tre.store.base import utcnow
from tre.store.models import AccessGrant, Dataset, Project, ProjectMember, Role, User, UserRole

_SLUG = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


def is_slug(value: str) -> bool:
    return bool(_SLUG.match(value))


def check_slug(kind: str, value: str) -> str:
    if not _SLUG.match(value):
        raise TreError(f"{kind} id {value!r} must be 1-63 characters of a-z, 0-9, '.', '_' or '-'")
    return value


def check_roles(roles: list[str]) -> None:
    """Every role known, or one sentence naming the first that is not and the closest one
    (`--role reseacher` was answered "unknown role(s) ['reseacher']", a Python list)."""
    known = list(Role.__members__)
    for role in roles:
        if role not in known:
            close = difflib.get_close_matches(role.lower(), known, n=1)
            guess = f" (did you mean {close[0]!r}?)" if close else ""
            raise TreError(f"unknown role {role!r}{guess}; roles are {', '.join(known)}")


def get_user(session: Session, user_id: str, role: str = "ROLE") -> User:
    """The user, or 404 saying how one is made: users are made only on the control-plane
    host (`tre admin user`), and the README's walkthrough once seated a DAC member it had
    never made, answered by a bare "no user 'dana'"."""
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"no user {user_id!r}: create it first (tre admin user {user_id} --role {role})")
    return user


def create_user(
    session: Session,
    actor: str,
    user_id: str,
    roles: list[str],
    display_name: str = "",
    email: str | None = None,
) -> User:
    check_slug("user", user_id)
    check_roles(roles)
    if session.get(User, user_id) is not None:
        raise Conflict(f"user {user_id!r} already exists")
    user = User(id=user_id, display_name=display_name or user_id, email=email)
    user.roles = [UserRole(role=r) for r in sorted(set(roles))]
    session.add(user)
    session.flush()
    record_event(session, actor=actor, action="admin.user_created", details={"user": user_id, "roles": roles})
    return user


def _is_active_admin(user: User) -> bool:
    return not user.disabled and Role.admin.value in user.role_names


def enabled_admins(session: Session) -> list[str]:
    """Ids of the enabled users holding ``admin`` (`_is_active_admin`), in id order."""
    query = (
        select(User.id)
        .join(UserRole, UserRole.user_id == User.id)
        .where(UserRole.role == Role.admin.value, User.disabled.is_(False))
        .order_by(User.id)
    )
    return list(session.scalars(query))


def _keep_an_admin(session: Session, user: User, action: str) -> None:
    """Refuse a change that would leave no enabled admin: nobody could then manage users,
    grants or datasets, and nothing over the API could undo it."""
    if not _is_active_admin(user):
        return
    others = session.scalars(
        select(User).where(User.id != user.id, User.disabled.is_(False)).with_for_update()
    )
    if not any(_is_active_admin(u) for u in others):
        raise Conflict(
            f"refusing to {action} {user.id!r}: it is the last enabled admin; make another user admin first"
        )


def set_user_roles(
    session: Session, actor: str, user_id: str, roles: list[str], *, policies_dir: Path, force: bool = False
) -> User:
    """Replace a user's roles (admin). Taking ``dac`` from an able reviewer is refused (``409
    quorum-unmeetable``) when a committee or an open request could then not reach its quorum,
    unless ``force`` (`tre.review_capacity`)."""
    user = get_user(session, user_id)
    check_roles(roles)
    if Role.admin.value not in roles:
        _keep_an_admin(session, user, "take the admin role from")
    before = sorted(user.role_names)
    wanted = sorted(set(roles))

    def change() -> None:
        user.roles = [UserRole(role=r) for r in wanted]

    what = f"changing the roles of {user_id!r} to {', '.join(wanted) or 'none'}"
    lost = _reviewer_change(session, user, what, change, policies_dir, force)
    record_event(
        session,
        actor=actor,
        action="admin.user_roles_changed",
        details={"user": user_id, "before": before, "after": wanted, **_forced(lost, force)},
    )
    return user


def set_user_disabled(
    session: Session, actor: str, user_id: str, disabled: bool, *, policies_dir: Path, force: bool = False
) -> User:
    """Disable or enable a user (admin). Disabling an able reviewer is refused like taking
    their ``dac`` role (`set_user_roles`) unless ``force``."""
    user = get_user(session, user_id)
    if disabled:
        _keep_an_admin(session, user, "disable")
    if user.disabled == disabled:
        raise Conflict(f"user {user_id!r} is already {'disabled' if disabled else 'enabled'}")

    def change() -> None:
        user.disabled = disabled
        if not disabled:
            # Tokens issued before the enable (before the disable too) stay refused: the
            # user signs in again (`tre.auth.generation`).
            start_new_epoch(user)

    lost = _reviewer_change(session, user, f"disabling {user_id!r}", change, policies_dir, force)
    record_event(
        session,
        actor=actor,
        action="admin.user_disabled" if disabled else "admin.user_enabled",
        details={"user": user_id, **_forced(lost, force)},
    )
    return user


def _reviewer_change(
    session: Session, user: User, what: str, change: Callable[[], None], policies_dir: Path, force: bool
) -> review_capacity.Shortfall | None:
    """Apply a change to ``user``; guarded (`tre.review_capacity`) when they can review now,
    since only then can it take review capacity away. None: not guarded."""
    if not review_capacity.is_able_reviewer(session, user.id):
        change()
        session.flush()
        return None
    return review_capacity.guarded(session, policies_dir, what, change, force=force)


def _forced(lost: review_capacity.Shortfall | None, force: bool) -> dict[str, object]:
    """Audit details of a change that left quorums unmeetable (only when it did: forced)."""
    if not lost:
        return {}
    return {"forced": force, "quorum_meetable": False, **lost.as_details()}


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.id)))


def list_visible_projects(session: Session, principal: Principal) -> list[Project]:
    projects = session.scalars(select(Project).order_by(Project.id))
    return [p for p in projects if can_see_project(session, principal, p.id)]


def get_visible_project(session: Session, principal: Principal, project_id: str) -> Project:
    """A project the caller may see; 404 alike for one that does not exist and one that is not theirs."""
    project = session.get(Project, project_id)
    if project is None or not can_see_project(session, principal, project_id):
        raise no_such("project", project_id)
    return project


def list_visible_datasets(session: Session, principal: Principal) -> list[Dataset]:
    visible = visible_dataset_ids(session, principal)
    rows = session.scalars(select(Dataset).order_by(Dataset.id))
    return [d for d in rows if visible is None or d.id in visible]


def list_grants(session: Session, project_id: str | None = None) -> list[AccessGrant]:
    query = select(AccessGrant).order_by(AccessGrant.granted_at)
    if project_id:
        query = query.where(AccessGrant.project_id == project_id)
    return list(session.scalars(query))


def get_project(session: Session, project_id: str) -> Project:
    project = session.get(Project, project_id)
    if project is None:
        raise no_such("project", project_id)
    return project


QUOTA_FIELDS = (
    "max_cpu",
    "max_memory_mb",
    "max_gpu",
    "max_time_s",
    "max_output_mb",
    "max_concurrent_jobs",
    "max_code_mb",
    "max_code_files",
)


def create_project(
    session: Session,
    actor: str,
    project_id: str,
    name: str,
    description: str = "",
    quota: dict[str, Any] | None = None,
) -> Project:
    check_slug("project", project_id)
    if session.get(Project, project_id) is not None:
        raise Conflict(f"project {project_id!r} already exists")
    project = Project(id=project_id, name=name or project_id, description=description)
    for key, value in (quota or {}).items():
        if key not in QUOTA_FIELDS:
            raise TreError(f"unknown quota field {key!r}; fields are {', '.join(QUOTA_FIELDS)}")
        if value is not None:
            setattr(project, key, value)
    session.add(project)
    session.flush()
    record_event(
        session,
        actor=actor,
        action="admin.project_created",
        project_id=project_id,
        details={"name": name, "quota": {k: getattr(project, k) for k in QUOTA_FIELDS}},
    )
    return project


def set_quota(session: Session, actor: str, project_id: str, quota: dict[str, Any]) -> Project:
    """Change some quota fields of a project (admin); later admissions use the new values."""
    project = get_project(session, project_id)
    before = {k: getattr(project, k) for k in QUOTA_FIELDS}
    for key, value in quota.items():
        if key not in QUOTA_FIELDS:
            raise TreError(f"unknown quota field {key!r}; fields are {', '.join(QUOTA_FIELDS)}")
        if value is not None:
            setattr(project, key, value)
    session.flush()
    record_event(
        session,
        actor=actor,
        action="admin.project_quota_changed",
        project_id=project_id,
        details={"before": before, "after": {k: getattr(project, k) for k in QUOTA_FIELDS}},
    )
    return project


def add_member(session: Session, actor: str, project_id: str, user_id: str, *, force: bool = False) -> None:
    """Make a user a member of a project (admin). A DAC member who joins may no longer review
    the project's requests (a conflict of interest), so joining is refused (``409
    quorum-unmeetable``) when one of its open requests could then not reach its quorum,
    unless ``force`` (`tre.review_capacity`)."""
    get_project(session, project_id)
    user = get_user(session, user_id, "researcher")
    if session.get(ProjectMember, (project_id, user_id)) is not None:
        raise Conflict(f"{user_id!r} is already a member of {project_id!r}")

    def change() -> None:
        session.add(ProjectMember(project_id=project_id, user_id=user_id))

    lost = None
    if review_capacity.is_able_reviewer(session, user.id):
        what = f"making {user_id!r} a member of {project_id!r} (a conflict of interest for its requests)"
        lost = review_capacity.guarded(session, None, what, change, force=force, project_id=project_id)
    else:
        change()
    record_event(
        session,
        actor=actor,
        action="admin.member_added",
        project_id=project_id,
        details={"user": user_id, **_forced(lost, force)},
    )


def remove_member(session: Session, actor: str, project_id: str, user_id: str) -> None:
    member = session.get(ProjectMember, (project_id, user_id))
    if member is None:
        raise NotFound(f"{user_id!r} is not a member of {project_id!r}")
    session.delete(member)
    record_event(
        session, actor=actor, action=MEMBER_REMOVED, project_id=project_id, details={"user": user_id}
    )


def get_dataset(session: Session, dataset_id: str) -> Dataset:
    ds = session.get(Dataset, dataset_id)
    if ds is None:
        raise no_such("dataset", dataset_id)
    return ds


# Host locations a dataset must never expose. A job reads its datasets with the worker's uid
# (host root in the embedded mode), so registering "/" or the state directory would hand
# every granted project the token- and audit-signing keys, the database and other projects'
# job outputs; /etc, /root and the kernel file systems hold host credentials.
SYSTEM_PATHS = tuple(Path(p) for p in ("/proc", "/sys", "/dev", "/etc", "/boot", "/root", "/run"))


def check_dataset_path(path: Path, protected: Iterable[Path] = ()) -> Path:
    """The resolved dataset folder, refused if it is, holds or lies inside a protected place."""
    try:
        if "\x00" in str(path):
            raise ValueError("NUL character")
        resolved = path.resolve()
    except (OSError, ValueError, RuntimeError) as exc:
        # A NUL byte, a loop, or a place the worker may not look into (/proc/1/root): bad input.
        raise TreError(f"dataset path {str(path)[:200]!r} cannot be used: {type(exc).__name__}") from exc
    for place in (*SYSTEM_PATHS, *protected):
        guarded = place.resolve()
        if resolved == guarded or guarded in resolved.parents or resolved in guarded.parents:
            raise TreError(
                f"dataset path {resolved} overlaps {guarded}, which jobs must never read; "
                "register the folder that holds only the data"
            )
    return resolved


def register_dataset(
    session: Session,
    actor: str,
    dataset_id: str,
    name: str,
    path: Path,
    description: str = "",
    policy: str = "default",
    protected: Iterable[Path] = (),
    conditions: Iterable[str] = (),
    access_rights: str = "NON_PUBLIC",
    policies_dir: Path | None = None,
    data_dir: Path | None = None,
) -> Dataset:
    """Register a folder of DICOM files (``data_dir``: the server's data folder, named when
    the path is not a folder); ``protected`` adds places (the state directory) it
    may not overlap, on top of `SYSTEM_PATHS`. ``conditions`` (codes such as ``icd10:C34``)
    and ``access_rights`` describe it in the catalogue (tre.catalogue). With
    ``policies_dir`` the policy must load from it now: a misspelt name or a broken file is
    refused here, naming the file and line, rather than at the first job or release."""
    check_slug("dataset", dataset_id)
    policy_digest: str | None = None  # the exact rules the dataset starts under, for auditors
    if policies_dir is not None:
        try:
            policy_digest = load_policy(policy, policies_dir).digest
        except PolicyError as exc:
            raise Unprocessable(f"policy {policy!r} cannot be used: {exc}") from exc
    try:
        codes = sorted({normalise_condition(c) for c in conditions})
        rights = normalise_access_rights(access_rights)
    except ValueError as exc:
        raise TreError(str(exc)) from exc
    if session.get(Dataset, dataset_id) is not None:
        raise Conflict(f"dataset {dataset_id!r} already exists")
    path = check_dataset_path(path, protected)
    try:
        meta = summarise_dicom_folder(path, data_dir=data_dir)
    except OSError as exc:
        raise TreError(f"dataset path {path} cannot be read: {exc.strerror or type(exc).__name__}") from exc
    ds = Dataset(
        id=dataset_id,
        name=name or dataset_id,
        path=str(path),
        description=description,
        policy=policy,
        meta=meta,
        conditions=codes,
        access_rights=rights,
    )
    session.add(ds)
    session.flush()
    refresh_facts(session, ds)  # the catalogue's facts, so the first count query is fast
    record_event(
        session,
        actor=actor,
        action="admin.dataset_registered",
        dataset_id=dataset_id,
        details={
            "path": str(path),
            "policy": policy,
            **({"policy_digest": policy_digest} if policy_digest else {}),
            "meta": meta,
            "conditions": codes,
            "access_rights": rights,
        },
    )
    return ds


def grant_access(
    session: Session,
    actor: str,
    project_id: str,
    dataset_id: str,
    expires_at: datetime | None = None,
    days: int | None = None,
    reason: str = "",
) -> AccessGrant:
    get_project(session, project_id)
    get_dataset(session, dataset_id)
    if expires_at is None:
        expires_at = utcnow() + timedelta(days=days if days is not None else 365)
    if expires_at <= utcnow():
        raise TreError("a grant's expiry must be in the future")
    grant = AccessGrant(
        project_id=project_id, dataset_id=dataset_id, granted_by=actor, expires_at=expires_at, reason=reason
    )
    session.add(grant)
    session.flush()
    record_event(
        session,
        actor=actor,
        action="access.granted",
        project_id=project_id,
        dataset_id=dataset_id,
        details={"grant": grant.id, "expires_at": expires_at.isoformat(), "reason": reason},
    )
    return grant


def revoke_grant(session: Session, actor: str, grant_id: str, reason: str = "") -> AccessGrant:
    grant = session.get(AccessGrant, grant_id)
    if grant is None:
        raise NotFound(f"no grant {grant_id!r}")
    if grant.revoked_at is not None:
        raise Conflict(f"grant {grant_id!r} was already revoked")
    grant.revoked_at = utcnow()
    grant.revoked_by = actor
    record_event(
        session,
        actor=actor,
        action="access.revoked",
        project_id=grant.project_id,
        dataset_id=grant.dataset_id,
        details={"grant": grant_id, "reason": reason},
    )
    return grant


def active_grant(session: Session, project_id: str, dataset_id: str) -> AccessGrant | None:
    now = utcnow()
    grants = session.scalars(
        select(AccessGrant).where(AccessGrant.project_id == project_id, AccessGrant.dataset_id == dataset_id)
    )
    return next((g for g in grants if g.active_at(now)), None)


def grant_status(session: Session, project_id: str, dataset_id: str) -> str:
    """'active', or why not: 'revoked', 'expired', 'none' (for a precise admission error)."""
    now = utcnow()
    grants = list(
        session.scalars(
            select(AccessGrant).where(
                AccessGrant.project_id == project_id, AccessGrant.dataset_id == dataset_id
            )
        )
    )
    if any(g.active_at(now) for g in grants):
        return "active"
    if any(g.revoked_at is not None for g in grants):
        return "revoked"
    if grants:
        return "expired"
    return "none"
