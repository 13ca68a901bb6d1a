"""Job operations behind the API: submit, look up (with visibility rules), cancel, logs."""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from egress_review.logscreen import STATUS_ONLY_NOTICE, LogScreen, Screening
from tre.audit import record_event
from tre.auth.principal import Principal
from tre.config import Settings
from tre.errors import Conflict, Forbidden, NotFound, PolicyUnavailable
from tre.jobs import logbudget
from tre.jobs.admission import JobRequest, admit
from tre.jobs.paths import log_path
from tre.registry import user_project_ids
from tre.store.base import utcnow
from tre.store.models import Job, JobState


def submit(session: Session, settings: Settings, principal: Principal, req: JobRequest) -> Job:
    try:
        admit(session, settings, principal.user_id, req)
    except Exception as exc:
        record_event(
            session,
            actor=principal.user_id,
            action="job.denied",
            project_id=req.project_id,
            details={"image": req.image, "datasets": req.dataset_ids, "reason": str(exc)},
        )
        # The denial must be audited even though the request fails: commit it now.
        session.commit()
        raise
    job = Job(
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
        executor=settings.executor,
        state=JobState.queued.value,
    )
    session.add(job)
    session.flush()
    record_event(
        session,
        actor=principal.user_id,
        action="job.submitted",
        project_id=job.project_id,
        job_id=job.id,
        details={
            "image": job.image,
            "command": job.command,
            "datasets": job.dataset_ids,
            "cpu": job.cpu,
            "memory_mb": job.memory_mb,
            "gpu": job.gpu,
            "time_limit_s": job.time_limit_s,
        },
    )
    record_event(session, actor="system", action="job.admitted", project_id=job.project_id, job_id=job.id)
    return job


def can_see_project(session: Session, principal: Principal, project_id: str) -> bool:
    """Admins and auditors see every project; anyone else only the projects they belong to."""
    if principal.has("admin", "auditor"):
        return True
    return project_id in user_project_ids(session, principal.user_id)


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
) -> list[Job]:
    query = select(Job).order_by(Job.created_at.desc()).limit(limit)
    if not principal.has("admin", "auditor"):
        query = query.where(Job.project_id.in_(user_project_ids(session, principal.user_id)))
    if project_id:
        query = query.where(Job.project_id == project_id)
    if state:
        query = query.where(Job.state == state)
    return list(session.scalars(query))


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


def job_log_screen(session: Session, settings: Settings, job: Job) -> tuple[LogScreen, int]:
    """The screen for this job's datasets' policies, and the project's daily budget (bytes).

    No policy, no log: fail closed with a reason."""
    from egress_review import checking
    from egress_review.logscreen import LogScreen

    datasets = checking.job_datasets(session, job)
    try:
        applied = checking.policies_for(datasets, settings.resolved_policies_dir)
    except Exception as exc:  # noqa: BLE001 - any policy failure withholds the log
        raise PolicyUnavailable(f"the job's log is withheld: {exc}") from exc
    policies = [a.policy for a in applied]
    identifiers = frozenset(checking.identifiers_for(datasets))
    key = (tuple(p.digest for p in policies), identifiers)
    with _SCREENINGS_LOCK:
        screen = _SCREENS.get(key)
    if screen is None:
        # Building the matchers over thousands of identifiers is the slow part: once per
        # (policies, identifiers), not once per poll.
        screen = LogScreen.for_policies(policies, set(identifiers))
        with _SCREENINGS_LOCK:
            _SCREENS[key] = screen
            while len(_SCREENS) > 16:
                _SCREENS.popitem(last=False)
    daily = min(p.job.researcher_log_project_daily_kib for p in policies) * 1024
    return screen, daily


def visible_log(
    session: Session, settings: Settings, principal: Principal, job: Job, offset: int
) -> tuple[bytes, int]:
    """The log as this caller may see it: raw for staff, screened and budgeted for researchers.

    The log is an output channel (a job can print what it read), so researchers get it through
    the airlock's knowledge of the data (egress_review.logscreen), judged from the start of
    the log whatever the offset, and within the per-job and per-project daily budgets
    (tre.jobs.logbudget).
    """
    if principal.has("admin", "auditor"):
        raw, next_offset, _ = read_log(settings, job.id, offset)
        return raw, next_offset
    # The state is read before the log: if the job had ended then, the file is complete.
    ended = JobState(job.state).terminal
    screen, daily_limit = job_log_screen(session, settings, job)
    size = log_size(settings, job.id)
    if screen.visibility == "full":
        raw, next_offset, _ = read_log(settings, job.id, offset)
        return raw, next_offset
    if screen.visibility == "status_only":
        return (STATUS_ONLY_NOTICE if offset == 0 and size else b""), max(offset, size)
    screening = _screened(settings, job.id, screen, ended)
    allowed = logbudget.charge(session, job.id, job.project_id, screening, offset, daily_limit)
    body = screen.render(screening, offset, allowed.shown_to)
    next_offset = max(offset, allowed.shown_to)
    if allowed.exhausted:
        return body + logbudget.daily_notice(daily_limit), max(next_offset, size)
    if screening.cut and allowed.shown_to >= screening.decided_to and offset <= screening.decided_to:
        return body + screen.limit_notice(), max(next_offset, size)
    return body, next_offset


# Judging a log costs about 1-2 ms per KiB, and a follower polls twice a second: the last
# judgements are kept per (job, log size, ended, screen), which a log that has not grown
# since the last poll (or is read again) reuses.
_SCREENINGS: OrderedDict[tuple[object, ...], Screening] = OrderedDict()
_SCREENS: OrderedDict[tuple[object, ...], LogScreen] = OrderedDict()
_SCREENINGS_LOCK = threading.Lock()
SCREENING_CACHE = 64


def _screened(settings: Settings, job_id: str, screen: LogScreen, ended: bool) -> Screening:
    log, _, at_end = read_log(settings, job_id, 0, screen.limit_bytes + 1)
    final = ended and at_end
    # The screen object itself is part of the key: it is kept alive in _SCREENS (or by the
    # key), so its identity cannot be reused by another screen while the entry exists.
    key = (job_id, final, screen, hashlib.sha256(log).digest())
    with _SCREENINGS_LOCK:
        hit = _SCREENINGS.get(key)
        if hit is not None:
            _SCREENINGS.move_to_end(key)
            return hit
    screening = screen.screen_log(log, final)
    with _SCREENINGS_LOCK:
        _SCREENINGS[key] = screening
        while len(_SCREENINGS) > SCREENING_CACHE:
            _SCREENINGS.popitem(last=False)
    return screening


def log_size(settings: Settings, job_id: str) -> int:
    try:
        return log_path(settings, job_id).stat().st_size
    except FileNotFoundError:
        return 0
