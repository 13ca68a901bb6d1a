"""Admission control: every reason a job may not run, checked before it is queued.

Order matters for the message a researcher sees: membership first (don't leak which
datasets exist to outsiders), then the input jobs (tre.jobs.lineage), then grants (of the
datasets named and of every dataset the inputs derive from), then image policy (over the
same datasets), then the image's approval for the project (ingress review), then quota.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Row, Select, Table, and_, bindparam, func, literal, select
from sqlalchemy.orm import Session

from tre.code.service import check_job_code
from tre.config import Settings
from tre.errors import AdmissionDenied
from tre.images.catalog import require_approved
from tre.jobs.lineage import Lineage, resolve_inputs
from tre.policy import JobRules, policies_for_datasets
from tre.store.base import utcnow
from tre.store.models import AccessGrant, Dataset, Job, JobState, Project, ProjectMember


@dataclass
class JobRequest:
    project_id: str
    image: str
    command: list[str]
    dataset_ids: list[str] = field(default_factory=list)
    cpu: float = 1.0
    memory_mb: int = 1024
    gpu: int = 0
    time_limit_s: int = 600
    output_limit_mb: int = 256
    code_hash: str | None = None
    # Earlier jobs of the same project whose outputs the job reads at /inputs/<id>.
    input_job_ids: list[str] = field(default_factory=list)
    # An ended job this one carries on (read at /inputs/<id> too, whatever way it ended).
    resume_job_id: str | None = None


def admit(session: Session, settings: Settings, user_id: str, req: JobRequest) -> Lineage:
    """Refuse the job with the first reason that applies, in the documented order.

    Three Core statements instead of the ORM's eight look-ups (the project, membership and
    active-job count; the datasets with this project's grants; the approved images): on a
    busy API admission was a fifth of a submission's CPU time (docs/api-load.md).

    Returns the lineage of the job's inputs (empty without inputs), for the caller to store."""
    # On the session's connection: Core statements need none of the ORM's execution layer.
    params = {"project_id": req.project_id, "user_id": user_id}
    project = session.connection().execute(_PROJECT_QUERY, params).one_or_none()
    if project is None or not project.is_member:
        # Same answer for "no such project" and "not yours": no probing of project names.
        raise AdmissionDenied(f"you are not a member of project {req.project_id!r}")
    check_command(req.command)
    lineage = Lineage()
    if req.input_job_ids or req.resume_job_id:
        lineage = resolve_inputs(
            session, settings, req.project_id, req.input_job_ids, resumed=req.resume_job_id
        )
    datasets = _check_grants(session, req.project_id, req.dataset_ids)
    # The inputs' outputs are those datasets' data: the same grant rules, the same policies.
    named = set(req.dataset_ids)
    derived = [d for d in lineage.dataset_ids if d not in named]
    datasets += _check_grants(session, req.project_id, derived, via_inputs=True)
    for applied in policies_for_datasets(datasets, settings.resolved_policies_dir):
        lineage.policies[applied.name] = applied.policy.digest
        if not applied.policy.job.image_allowed(req.image):
            raise AdmissionDenied(_image_refused(req.image, applied.name, req.project_id, applied.policy.job))
    # Ingress review: an admin approved exactly this image for this project (tre.images).
    require_approved(session, req.project_id, req.image)
    _check_quota(project, req)
    if req.code_hash is not None:
        orm_project = session.get(Project, req.project_id)
        assert orm_project is not None  # read above, in this transaction
        check_job_code(session, orm_project, req.code_hash)
    return lineage


_PROJECTS = cast(Table, Project.__table__)
_MEMBERS = cast(Table, ProjectMember.__table__)
_JOBS = cast(Table, Job.__table__)
_DATASETS = cast(Table, Dataset.__table__)
_GRANTS = cast(Table, AccessGrant.__table__)
_ACTIVE_STATES = (JobState.queued.value, JobState.running.value)


def _project_query() -> Select[Any]:
    """The project's quota, whether the user is a member, and its queued or running jobs."""
    member = (
        select(literal(1))
        .where(_MEMBERS.c.project_id == _PROJECTS.c.id, _MEMBERS.c.user_id == bindparam("user_id"))
        .exists()
    )
    active = (
        select(func.count())
        .select_from(_JOBS)
        .where(_JOBS.c.project_id == _PROJECTS.c.id, _JOBS.c.state.in_(_ACTIVE_STATES))
        .scalar_subquery()
    )
    return select(
        _PROJECTS.c.id,
        _PROJECTS.c.max_cpu,
        _PROJECTS.c.max_memory_mb,
        _PROJECTS.c.max_gpu,
        _PROJECTS.c.max_time_s,
        _PROJECTS.c.max_output_mb,
        _PROJECTS.c.max_concurrent_jobs,
        member.label("is_member"),
        active.label("active_jobs"),
    ).where(_PROJECTS.c.id == bindparam("project_id"))


# Built once: building and cache-keying a statement costs more Python time than running it.
_PROJECT_QUERY = _project_query()
_GRANTS_QUERY = (
    select(_DATASETS.c.id, _DATASETS.c.policy, _GRANTS.c.expires_at, _GRANTS.c.revoked_at)
    .select_from(
        _DATASETS.outerjoin(
            _GRANTS,
            and_(_GRANTS.c.dataset_id == _DATASETS.c.id, _GRANTS.c.project_id == bindparam("project_id")),
        )
    )
    .where(_DATASETS.c.id.in_(bindparam("ids", expanding=True)))
)


@dataclass
class _DatasetPolicy:
    id: str
    policy: str


def _check_grants(
    session: Session, project_id: str, dataset_ids: list[str], via_inputs: bool = False
) -> list[_DatasetPolicy]:
    """Each requested dataset must exist and have an active grant to the project; the
    datasets (with their policies) in request order. ``via_inputs``: the datasets are the
    lineage of the job's input jobs, and the refusal says so."""
    if not dataset_ids:
        return []
    rows = (
        session.connection()
        .execute(_GRANTS_QUERY, {"project_id": project_id, "ids": sorted(set(dataset_ids))})
        .all()
    )
    policies: dict[str, str] = {}
    grants: dict[str, list[tuple[datetime, datetime | None]]] = {}
    for row in rows:
        policies[row.id] = row.policy
        if row.expires_at is not None:
            grants.setdefault(row.id, []).append((row.expires_at, row.revoked_at))
    now = utcnow()
    suffix = ", which the input jobs' outputs derive from" if via_inputs else ""
    for dataset_id in dataset_ids:
        status = _grant_status(grants.get(dataset_id, []), now) if dataset_id in policies else "none"
        if status == "none":
            # The same words as for a dataset that does not exist: no probing of dataset names.
            # The member is told which datasets the project may use (what `tre grant list`
            # shows them anyway), so a typo ('lidcc') names its fix.
            usable = "" if via_inputs else _usable_datasets(session, project_id, now)
            raise AdmissionDenied(_no_access(project_id, dataset_id) + suffix + usable)
        if status != "active":
            why = {
                "expired": "has only an expired access grant for",
                "revoked": "had its access grant revoked for",
            }[status]
            raise AdmissionDenied(f"project {project_id!r} {why} dataset {dataset_id!r}{suffix}")
    return [_DatasetPolicy(d, policies[d]) for d in dataset_ids]


def _grant_status(grants: list[tuple[datetime, datetime | None]], now: datetime) -> str:
    """As `tre.registry.grant_status`, from rows already read."""
    if any(revoked is None and expires > now for expires, revoked in grants):
        return "active"
    if any(revoked is not None for _, revoked in grants):
        return "revoked"
    return "expired" if grants else "none"


_PINNED = re.compile(r"@sha256:[0-9a-f]{64}$")


def _image_refused(image: str, policy_name: str, project_id: str, rules: JobRules) -> str:
    """Why the policy refuses ``image``, and what to give instead.

    Why: a tag ('registry.tre.local/image:latest') read 'not on the allowlist', which a
    newcomer takes for an image an admin must list; what it lacks is its digest (newcomer
    round 22)."""
    name = image.strip()
    if rules.require_digest and not _PINNED.search(name):
        # Only where the same name pinned would be allowed is the digest what it lacks: an
        # image the allowlist never admits ('docker.io/evil:latest') is refused as such.
        repository = name.rsplit(":", 1)[0] if ":" in name.rsplit("/", 1)[-1] else name
        if rules.image_allowed(f"{repository}@sha256:{'0' * 64}"):
            return (
                f"image {image!r} is not pinned by a digest, which policy {policy_name!r} requires: "
                f"give NAME@sha256:DIGEST as tre image list --usable -p {project_id} shows it"
            )
    return f"image {image!r} is not on the allowlist of policy {policy_name!r}"


_USABLE_QUERY = (
    select(_GRANTS.c.dataset_id)
    .where(
        _GRANTS.c.project_id == bindparam("project_id"),
        _GRANTS.c.revoked_at.is_(None),
        _GRANTS.c.expires_at > bindparam("now"),
    )
    .distinct()
)


def _usable_datasets(session: Session, project_id: str, now: datetime) -> str:
    """'; the datasets it may use: a, b' (or that it has none): the same for every name
    refused, a dataset that exists or not, since a member sees the project's grants anyway.

    Why: a mistyped dataset ('lidcc') read only 'has no access', which a newcomer takes for
    a missing grant to ask an admin for (newcomer round 22)."""
    found = session.connection().execute(_USABLE_QUERY, {"project_id": project_id, "now": now}).scalars()
    names = sorted(str(n) for n in found)
    if not names:
        return "; it may use no dataset yet: an admin grants access with tre grant add"
    shown = ", ".join(names[:MAX_DATASETS_NAMED]) + (", ..." if len(names) > MAX_DATASETS_NAMED else "")
    return f"; the datasets it may use: {shown}"


# A refusal names at most this many of the project's datasets (one line on a terminal).
MAX_DATASETS_NAMED = 10


def _no_access(project_id: str, dataset_id: str) -> str:
    return f"project {project_id!r} has no access to dataset {dataset_id!r}"


# What execve and the executors accept (MAX_ARG_STRLEN is 128 KiB per argument).
MAX_COMMAND_ARGS = 4096
MAX_COMMAND_ARG_CHARS = 65_536
MAX_COMMAND_CHARS = 256 * 1024


def check_command(command: list[str]) -> None:
    """Refuse, with the reason, a command no executor can start: the API bounds its size too,
    but admission is the one place every submission passes (the CLI's demo included), and an
    empty program name used to be queued and then crash the executor."""
    if not command:
        raise AdmissionDenied("the job has no command")
    if not isinstance(command, list) or not all(isinstance(a, str) for a in command):
        raise AdmissionDenied("the command must be a list of strings")
    if not command[0].strip():
        raise AdmissionDenied("the command's program (its first element) is empty")
    if command[0] != command[0].strip():
        raise AdmissionDenied("the command's program must not start or end with white space")
    if any("\x00" in a for a in command):
        raise AdmissionDenied("the command must not contain NUL characters")
    if len(command) > MAX_COMMAND_ARGS:
        raise AdmissionDenied(f"the command has more than {MAX_COMMAND_ARGS} arguments")
    if any(len(a) > MAX_COMMAND_ARG_CHARS for a in command):
        raise AdmissionDenied(f"a command argument is longer than {MAX_COMMAND_ARG_CHARS} characters")
    if sum(len(a) for a in command) > MAX_COMMAND_CHARS:
        raise AdmissionDenied(f"the command is longer than {MAX_COMMAND_CHARS} characters in all")


def _check_quota(project: Row[Any], req: JobRequest) -> None:
    limits = [
        ("cpu", req.cpu, project.max_cpu, ""),
        ("memory", req.memory_mb, project.max_memory_mb, " MiB"),
        ("gpu", req.gpu, project.max_gpu, ""),
        ("time limit", req.time_limit_s, project.max_time_s, " s"),
        ("output limit", req.output_limit_mb, project.max_output_mb, " MiB"),
    ]
    for name, asked, allowed, unit in limits:
        if asked < 0 or (name != "gpu" and asked <= 0):
            raise AdmissionDenied(f"{name} must be positive (asked {asked}{unit})")
        if asked > allowed:
            raise AdmissionDenied(
                f"{name} {asked}{unit} is over project {project.id!r} quota of {allowed}{unit}"
            )
    active = int(project.active_jobs or 0)
    if active >= project.max_concurrent_jobs:
        raise AdmissionDenied(
            f"project {project.id!r} already has {active} queued or running jobs "
            f"(quota {project.max_concurrent_jobs})"
        )
