"""Job operations behind the API: submit, look up (with visibility rules), cancel, logs."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, cast

from sqlalchemy import RowMapping, Table, insert, select
from sqlalchemy.orm import Session, make_transient_to_detached

from tre.access import can_see_project, reads_raw_logs, visible_project_ids
from tre.audit import record_event
from tre.audit.events import job_facts, record_job_ended
from tre.audit.log import AuditEvent, record_events
from tre.auth.principal import Principal
from tre.config import Settings
from tre.errors import Conflict, Forbidden, NotFound, TreError
from tre.jobs.admission import JobRequest, admit
from tre.jobs.lineage import Lineage, record_lineage
from tre.jobs.paths import log_path
from tre.store.base import utcnow
from tre.store.models import Job, JobState


def check(session: Session, settings: Settings, principal: Principal, req: JobRequest) -> None:
    """Admission without queueing: the CLI asks before it packs and uploads a job's code, so
    that a mistyped dataset, image or project is refused in a second rather than after an
    upload of up to the project's code quota. Audited either way (a refusal as `job.denied`
    marked ``check``, an admission as `job.checked`): a researcher probing admission is
    visible to auditors like one submitting."""
    _admit_or_refuse(session, settings, principal, req, check=True)
    record_event(
        session,
        actor=principal.user_id,
        action="job.checked",
        project_id=req.project_id,
        details={"image": req.image, "datasets": req.dataset_ids, "code_hash": req.code_hash},
    )


def _admit_or_refuse(
    session: Session, settings: Settings, principal: Principal, req: JobRequest, check: bool = False
) -> Lineage:
    """`admit`, with a refusal carrying its `job.denied` entry.

    The entry is written after the request's rollback, in a unit of work of its own, and kept
    on disk when the store cannot take it then (`TreError.refusals`): written in the request's
    transaction (until round 15) it was lost with a commit that failed, and that commit also
    kept whatever the request had written before admission refused it."""
    try:
        return admit(session, settings, principal.user_id, req)
    except TreError as exc:
        exc.refusals = (
            *exc.refusals,
            AuditEvent(
                principal.user_id,
                "job.denied",
                project_id=req.project_id,
                details={
                    "image": req.image,
                    "datasets": req.dataset_ids,
                    "code_hash": req.code_hash,
                    **({"input_jobs": list(req.input_job_ids)} if req.input_job_ids else {}),
                    "reason": str(exc),
                    **({"check": True} if check else {}),
                },
            ),
        )
        raise


def submit(session: Session, settings: Settings, principal: Principal, req: JobRequest) -> Job:
    lineage = _admit_or_refuse(session, settings, principal, req)
    job = _insert_job(
        session,
        project_id=req.project_id,
        submitted_by=principal.user_id,
        image=req.image,
        command=req.command,
        dataset_ids=req.dataset_ids,
        cpu=req.cpu,
        memory_mb=req.memory_mb,
        gpu=req.gpu,
        time_limit_s=req.time_limit_s,
        output_limit_mb=req.output_limit_mb,
        code_hash=req.code_hash,
        executor=settings.executor,
        state=JobState.queued.value,
    )
    record_lineage(session, job, lineage)
    # One batch: one lock of the tree, one signed checkpoint for both entries.
    record_events(
        session,
        [
            AuditEvent(
                principal.user_id,
                "job.submitted",
                project_id=job.project_id,
                job_id=job.id,
                details={"command": job.command, **job_facts(job)},
            ),
            AuditEvent(
                "system",
                "job.admitted",
                project_id=job.project_id,
                job_id=job.id,
                details={"policies": lineage.policies},
            ),
        ],
    )
    return job


_JOBS = cast(Table, Job.__table__)
_INSERT_JOB = insert(_JOBS)


def _insert_job(session: Session, **given: object) -> Job:
    """INSERT the job with one Core statement and return it as a persistent `Job`.

    Why not ``session.add`` + flush: the ORM's unit of work cost about a tenth of a
    submission's CPU under load (docs/api-load.md). The row gets the model's own column
    defaults (id, timestamps, limits), so it is exactly the row a flush would have written,
    and the returned object is attached to the session like a loaded one (callers such as
    TES and federation keep using it).
    """
    row: dict[str, object] = {}
    for column in _JOBS.columns:
        if column.key in given:
            row[column.key] = given[column.key]
        elif column.default is not None:
            default = column.default
            row[column.key] = default.arg(None) if default.is_callable else default.arg  # type: ignore[attr-defined]
        else:
            row[column.key] = None
    unknown = set(given) - set(row)
    if unknown:
        raise TypeError(f"jobs has no column {sorted(unknown)}")
    session.connection().execute(_INSERT_JOB, row)
    job = Job(**row)
    make_transient_to_detached(job)
    session.add(job)
    return job


def get_visible_job(session: Session, principal: Principal, job_id: str) -> Job:
    job = session.get(Job, job_id)
    # 404 rather than 403 for other projects' jobs: ids are not an oracle.
    if job is None or not can_see_project(session, principal, job.project_id):
        raise NotFound(f"no job {job_id!r}")
    return job


def list_visible_jobs(
    session: Session,
    principal: Principal,
    project_id: str | None = None,
    state: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[Job]:
    # Newest first, ties broken by id so pages neither repeat nor skip a job.
    query = select(Job).order_by(Job.created_at.desc(), Job.id.desc()).limit(limit).offset(offset)
    visible = visible_project_ids(session, principal)
    if visible is not None:
        query = query.where(Job.project_id.in_(visible))
    if project_id:
        query = query.where(Job.project_id == project_id)
    if state:
        query = query.where(Job.state == state)
    return list(session.scalars(query))


_JOBS = cast(Table, Job.__table__)


def list_visible_job_rows(
    session: Session,
    principal: Principal,
    columns: Sequence[str],
    project_id: str | None = None,
    state: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[RowMapping]:
    """`list_visible_jobs` as plain rows of ``columns``, for the API's listing: a Core query
    of the columns the answer shows, without building an ORM object per job (the same
    visibility rule and order)."""
    query = (
        select(*(_JOBS.c[name] for name in columns))
        .order_by(_JOBS.c.created_at.desc(), _JOBS.c.id.desc())
        .limit(limit)
        .offset(offset)
    )
    visible = visible_project_ids(session, principal)
    if visible is not None:
        query = query.where(_JOBS.c.project_id.in_(visible))
    if project_id:
        query = query.where(_JOBS.c.project_id == project_id)
    if state:
        query = query.where(_JOBS.c.state == state)
    return list(session.execute(query).mappings())


def cancel(session: Session, principal: Principal, job_id: str) -> Job:
    job = get_visible_job(session, principal, job_id)
    if job.submitted_by != principal.user_id and not principal.has("admin"):
        raise Forbidden("only the submitter or an admin can cancel a job")
    if JobState(job.state).terminal:
        raise Conflict(f"job {job_id} already ended ({job.state})")
    job.cancel_requested = True
    if job.state == JobState.queued.value:
        job.state = JobState.cancelled.value
        job.reason = f"cancelled by {principal.user_id} before it started"
        job.finished_at = utcnow()
    record_event(
        session,
        actor=principal.user_id,
        action="job.cancel_requested",
        project_id=job.project_id,
        job_id=job.id,
    )
    if job.state == JobState.cancelled.value:  # never started: this is its final-state entry
        final = {"state": job.state, "exit_code": None, "reason": job.reason, "outputs": 0}
        record_job_ended(session, job, final)
    return job


def read_log(
    settings: Settings, job_id: str, offset: int = 0, limit: int = 1 << 20
) -> tuple[bytes, int, bool]:
    """Raw log bytes from ``offset``: (data, next offset, whether that is the end of the file)."""
    path: Path = log_path(settings, job_id)
    if not path.exists():
        return b"", offset, True
    with path.open("rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if offset >= size:
            # Past the end (a follower ahead of a slow writer, or a hostile offset): nothing.
            return b"", offset, True
        fh.seek(offset)
        data = fh.read(limit)
        at_end = fh.read(1) == b""
    return data, offset + len(data), at_end


class LogScreener(Protocol):
    """A researcher's view of a job's log from ``offset``: (what to show, next offset).

    The airlock implements it (`egress_review.joblog.researcher_log`): it knows the data's
    identifiers, the policies' screening rules and the budgets. The composition root (the
    API) passes it in, so the core never imports the airlock.
    """

    def __call__(self, session: Session, settings: Settings, job: Job, offset: int) -> tuple[bytes, int]: ...


def visible_log(
    session: Session,
    settings: Settings,
    principal: Principal,
    job: Job,
    offset: int,
    screen: LogScreener,
) -> tuple[bytes, int]:
    """The log as this caller may see it: raw for staff, screened and budgeted for researchers
    (the log is an output channel: a job can print what it read)."""
    if reads_raw_logs(session, principal, job.project_id):
        raw, next_offset, _ = read_log(settings, job.id, offset)
        return raw, next_offset
    return screen(session, settings, job, offset)


def log_size(settings: Settings, job_id: str) -> int:
    try:
        return log_path(settings, job_id).stat().st_size
    except FileNotFoundError:
        return 0
