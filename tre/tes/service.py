"""TES operations on tre's jobs: create (through the CLI's own admission), find, list, cancel.

A task is a job plus its `TesTask` row; only jobs submitted through TES are tasks. The
visibility rules are the jobs': a researcher sees only their projects' tasks, and anything
else answers the same 404 as a task that does not exist.
"""

from __future__ import annotations

import base64
import binascii
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from tre.access import is_member, visible_project_ids
from tre.audit import record_event
from tre.auth.principal import Principal
from tre.code.archive import pack_folder
from tre.code.service import project_limits, record_upload
from tre.code.store import CodeStore, StoredCode
from tre.config import Settings
from tre.errors import NotFound, TreError
from tre.jobs import service as jobs
from tre.store.models import Job, JobState, Project, TesTask
from tre.tes.models import TesState
from tre.tes.models import TesTask as TesTaskDoc
from tre.tes.states import state_condition
from tre.tes.submission import TaskPlan, plan_task

DEFAULT_PAGE_SIZE = 256
MAX_PAGE_SIZE = 2047  # TES: "must be less than 2048"


UNKNOWN_PAGE_MESSAGE = "page_token is not one this server gave out"


class BadPageToken(TreError):
    status = 400
    title = "Bad page token"
    slug = "bad-page-token"


def create_task(session: Session, settings: Settings, principal: Principal, doc: TesTaskDoc) -> Job:
    plan = plan_task(doc)
    if plan.code_files:
        plan.request.code_hash = store_inline_code(session, settings, principal, plan).sha256
    job = jobs.submit(session, settings, principal, plan.request)
    session.add(
        TesTask(
            job_id=job.id,
            name=doc.name or "",
            description=doc.description or "",
            tags=dict(doc.tags or {}),
            inputs=[i.model_dump(exclude_none=True, mode="json") for i in doc.inputs or []],
            outputs=[o.model_dump(exclude_none=True, mode="json") for o in doc.outputs or []],
            executors=[e.model_dump(exclude_none=True, mode="json") for e in doc.executors],
            resources=doc.resources.model_dump(exclude_none=True) if doc.resources else None,
            volumes=list(doc.volumes or []),
        )
    )
    session.flush()
    # The job's own entries (job.submitted, job.admitted) say what runs; this one keeps what
    # only the TES document says: its name, tags (a federation's routing) and where the author
    # wanted outputs sent (they were not).
    record_event(
        session,
        actor=principal.user_id,
        action="tes.task_created",
        project_id=job.project_id,
        job_id=job.id,
        details={
            "name": doc.name or "",
            "tags": dict(doc.tags or {}),
            "output_urls_not_used": [o.url for o in doc.outputs or []],
        },
    )
    return job


def store_inline_code(
    session: Session, settings: Settings, principal: Principal, plan: TaskPlan
) -> StoredCode:
    """Pack the inline inputs as one deterministic archive and store it for the project, as
    ``tre submit --code`` uploads a folder; the same checks and quota apply."""
    project_id = plan.request.project_id
    project = session.get(Project, project_id)
    if project is None or not is_member(session, project_id, principal.user_id):
        # Nothing is stored for a non-member: admission refuses (and audits) with its own words.
        jobs.submit(session, settings, principal, plan.request)
        raise AssertionError("admission admitted a non-member")  # pragma: no cover
    limits = project_limits(project)
    with tempfile.TemporaryDirectory(prefix="tes-code-") as tmp:
        tree = Path(tmp) / "tree"
        tree.mkdir()
        for rel, data in sorted(plan.code_files.items()):
            target = tree / rel
            if target.parent.exists() and not target.parent.is_dir():
                raise TreError(f"inline input /code/{rel} lies below another inline input's file")
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():
                raise TreError(f"inline input /code/{rel} is also a folder of other inputs")
            target.write_bytes(data)
        packed = Path(tmp) / "code.tar.gz"
        with packed.open("w+b") as fh:
            pack_folder(tree, fh, limits)
        stored = CodeStore(settings).store_file(packed, limits)
    record_upload(session, principal, project_id, stored)
    return stored


def get_task(session: Session, principal: Principal, task_id: str) -> tuple[Job, TesTask]:
    job = jobs.get_visible_job(session, principal, task_id)
    row = session.get(TesTask, job.id)
    if row is None:
        raise NotFound(f"no task {task_id!r}")
    return job, row


def cancel_task(session: Session, principal: Principal, task_id: str) -> None:
    """Ask the task to stop; cancelling a task already cancelled is not an error."""
    job, _ = get_task(session, principal, task_id)
    if job.state == JobState.cancelled.value:
        return
    jobs.cancel(session, principal, job.id)


@dataclass(frozen=True)
class TaskFilter:
    name_prefix: str | None = None
    state: TesState | None = None
    # (key, value) pairs; an empty value matches any task carrying the key.
    tags: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class TaskPage:
    rows: list[tuple[Job, TesTask]]
    next_page_token: str | None


def list_tasks(
    session: Session, principal: Principal, flt: TaskFilter, page_size: int, page_token: str | None
) -> TaskPage:
    """Newest first; the token is the position after the last task shown (keyset paging, so
    tasks created meanwhile do not shift a page)."""
    query = (
        select(Job, TesTask)
        .join(TesTask, TesTask.job_id == Job.id)
        .order_by(Job.created_at.desc(), Job.id.desc())
    )
    visible = visible_project_ids(session, principal)
    if visible is not None:
        query = query.where(Job.project_id.in_(visible))
    if flt.name_prefix:
        query = query.where(TesTask.name.startswith(flt.name_prefix, autoescape=True))
    if flt.state is not None:
        query = query.where(state_condition(flt.state))
    if page_token:
        created, last_id = decode_page_token(page_token)
        query = query.where(or_(Job.created_at < created, and_(Job.created_at == created, Job.id < last_id)))
    rows: list[tuple[Job, TesTask]] = []
    more = False
    # Tags are JSON: judged here rather than in SQL, streaming until the page is full.
    for job, row in session.execute(query.execution_options(yield_per=500)):
        if not tags_match(row.tags or {}, flt.tags):
            continue
        if len(rows) == page_size:
            more = True
            break
        rows.append((job, row))
    token = encode_page_token(rows[-1][0].created_at, rows[-1][0].id) if more and rows else None
    return TaskPage(rows=rows, next_page_token=token)


def tags_match(tags: dict[str, str], wanted: tuple[tuple[str, str], ...]) -> bool:
    return all(key in tags and (not value or tags[key] == value) for key, value in wanted)


def encode_page_token(created_at: datetime, last_id: str) -> str:
    """The position after the last task of a page (keyset paging; the hub's listing too)."""
    raw = f"{created_at.isoformat()}|{last_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        created, job_id = raw.split("|", 1)
        when = datetime.fromisoformat(created)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise BadPageToken(UNKNOWN_PAGE_MESSAGE) from exc
    if when.tzinfo is None or len(job_id) > 32:
        raise BadPageToken(UNKNOWN_PAGE_MESSAGE)
    return when, job_id
