"""Jobs: submit, list, inspect, logs, outputs, cancel. Researchers see only their projects."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import PlainTextResponse
from pydantic import TypeAdapter
from sqlalchemy import RowMapping
from sqlalchemy.orm import Session

from egress_review import outputnames
from egress_review.joblog import researcher_log
from tre.access import reads_raw_logs, sees_exact_run, sees_raw_output_names
from tre.api.bounds import MAX_LOG_OFFSET
from tre.api.deps import DbSession, any_role, get_settings_dep, require_roles, writes_on_read
from tre.api.openapi import body_of
from tre.api.schemas import SLUG_PATTERN, JobIn, JobOut, JobOutputOut, JobViewOut
from tre.audit.events import record_read
from tre.auth.principal import Principal
from tre.config import Settings
from tre.jobs import end_spool, service
from tre.jobs.admission import JobRequest
from tre.jobs.shown_run import shown_job_fields
from tre.jobs.shown_size import shown_size
from tre.store.models import Job, JobState

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"])
submitters = require_roles("researcher", "admin")
readers = any_role()


@router.post("", response_model=JobViewOut, status_code=201)
def submit_job(
    session: DbSession,
    body: JobIn,
    p: Principal = Depends(submitters),
    settings: Settings = Depends(get_settings_dep),
) -> Response:
    """Queue a job after admission (``tre.jobs.admission``); the answer is the queued job.

    Returned as JSON bytes from the one `JobOut` built here: FastAPI would otherwise validate
    and serialise the model a second time against ``response_model`` (docs/api-load.md)."""
    job = service.submit(session, settings, p, JobRequest(**body.model_dump()))
    content = _job_view(session, p, job).model_dump_json()
    # Committed here, in this thread, rather than by `get_session` after a trip back through
    # the event loop: the submission's audit append holds the tree lock until the commit
    # (PostgreSQL: a row lock every API process's appends queue on), and under load that trip
    # is most of the time the lock is held. Nothing below can fail the request.
    session.commit()
    return Response(content=content, status_code=201, media_type="application/json")


@router.post("/check", status_code=204, response_class=Response)
def check_job(
    session: DbSession,
    body: JobIn,
    p: Principal = Depends(submitters),
    settings: Settings = Depends(get_settings_dep),
) -> Response:
    """Admission of the job as `POST /api/v1/jobs` would decide it, without queueing it: 204
    when it would be admitted, the refusal's problem otherwise. `tre submit --code` asks this
    before it packs and uploads the code."""
    service.check(session, settings, p, JobRequest(**body.model_dump()))
    return Response(status_code=204)


DEFAULT_PAGE = 50
# The columns the listing reads; ``end_pending`` is not one (`_end_pending`).
_JOB_COLUMNS = tuple(name for name in JobOut.model_fields if name != "end_pending")
_JOB_LIST = TypeAdapter(list[JobOut])


@router.get(
    "",
    response_model=list[JobOut],
    responses={
        200: {
            "description": "A page of jobs, newest first.",
            "headers": {
                "X-Next-Offset": {
                    "schema": {"type": "integer", "minimum": 0},
                    "description": "Present when the page is full: the ``offset`` of the next page.",
                }
            },
        }
    },
)
def list_jobs(
    session: DbSession,
    project_id: str | None = Query(None, pattern=SLUG_PATTERN, max_length=63),
    state: JobState | None = None,
    limit: int = Query(DEFAULT_PAGE, ge=1, le=1000, description="Jobs per page (default 50)."),
    offset: int = Query(0, ge=0, le=1_000_000, description="Skip this many (newest first), to page."),
    p: Principal = Depends(readers),
    settings: Settings = Depends(get_settings_dep),
) -> Response:
    """The caller's visible jobs, newest first, ``limit`` at a time; page with ``offset`` (the
    ``X-Next-Offset`` header gives the next one while pages are full).

    Serialised straight from a Core query of the answer's columns (validated and dumped by
    pydantic-core in one pass each) rather than an ORM object and a model per job: a full
    page cost milliseconds of CPU per request (docs/api-load.md)."""
    rows = service.list_visible_job_rows(
        session, p, _JOB_COLUMNS, project_id, state.value if state else None, limit, offset
    )
    exact: dict[str, bool] = {}

    def shown(row: RowMapping) -> dict[str, Any]:
        fields = dict(row)
        project = fields["project_id"]
        if project not in exact:
            exact[project] = sees_exact_run(session, p, project)
        return {
            **fields,
            **shown_job_fields(fields, exact=exact[project]),
            "end_pending": _end_pending(settings, fields["id"], fields["state"]),
        }

    body = _JOB_LIST.dump_json(_JOB_LIST.validate_python([shown(row) for row in rows]))
    headers = {"X-Next-Offset": str(offset + len(rows))} if len(rows) == limit else None
    return Response(content=body, media_type="application/json", headers=headers)


@router.get("/{job_id}", response_model=JobViewOut)
def get_job(
    session: DbSession,
    job_id: str,
    p: Principal = Depends(readers),
    settings: Settings = Depends(get_settings_dep),
) -> JobViewOut:
    """The job, with the earlier jobs it reads and the datasets their outputs derive from."""
    job = service.get_visible_job(session, p, job_id)
    return _job_view(session, p, job, _end_pending(settings, job.id, job.state))


def _end_pending(settings: Settings, job_id: str, state: str) -> bool:
    """Whether a job the database still calls running has ended, its end kept on this
    server's disk until the database takes it (`tre.jobs.end_spool`; the embedded worker's,
    or a worker's on this state directory). Why: it showed "running" for as long as the
    database was away or full, which neither a researcher nor an operator could tell from a
    job still at work. Its outcome is not shown until it is recorded (another worker may
    have ended it as lost meanwhile, and then the kept end is dropped)."""
    return state == JobState.running.value and end_spool.is_spooled(settings, job_id)


@router.get(
    "/{job_id}/logs",
    response_class=PlainTextResponse,
    responses=body_of(
        "text/plain",
        "The log from ``offset`` (screened for researchers).",
        headers={
            "X-Next-Offset": {
                "type": "integer",
                "minimum": 0,
                "description": "The offset to ask for next: bytes of the raw log for staff (and under a "
                "`full` policy), lines of the screened view for a researcher (never raw bytes).",
            },
            "X-Job-State": {"type": "string", "enum": [s.value for s in JobState]},
            "X-Job-End-Pending": {
                "type": "string",
                "enum": ["true", "false"],
                "description": "Whether a job the state calls running has ended, its end kept on "
                "the server's disk until the database takes it (`end_pending` of the job).",
            },
        },
    ),
)
@writes_on_read  # charges the project's daily log budget (log_reveals)
def get_logs(
    session: DbSession,
    job_id: str,
    offset: int = Query(0, ge=0, le=MAX_LOG_OFFSET),
    p: Principal = Depends(readers),
    settings: Settings = Depends(get_settings_dep),
) -> Response:
    """A chunk of the log from ``offset``; ``X-Next-Offset``, ``X-Job-State`` and
    ``X-Job-End-Pending`` let the CLI follow (`tre logs -f` showed "running" for a job whose end
    waited on disk).

    Researchers see the screened log (lines naming the data withheld), staff the raw one.
    A researcher's offsets count lines of what they were shown (`egress_review.joblog`): raw
    byte offsets told the size of what was withheld.
    """
    job = service.get_visible_job(session, p, job_id)
    data, next_offset = service.visible_log(session, settings, p, job, offset, screen=researcher_log)
    kind = "raw" if reads_raw_logs(session, p, job.project_id) else "screened"
    record_read(
        session,
        actor=p.user_id,
        action="job.log_read",
        project_id=job.project_id,
        job_id=job.id,
        details={"log": kind},
    )
    return Response(
        content=data,
        media_type="text/plain; charset=utf-8",
        headers={
            "X-Next-Offset": str(next_offset),
            "X-Job-State": job.state,
            "X-Job-End-Pending": "true" if _end_pending(settings, job.id, job.state) else "false",
        },
    )


OUTPUT_PAGE = 1000
_OUTPUT_LIST = TypeAdapter(list[JobOutputOut])


@router.get(
    "/{job_id}/outputs",
    response_model=list[JobOutputOut],
    responses={
        200: {
            "description": "A page of the job's outputs in index order.",
            "headers": {
                "X-Total-Count": {
                    "schema": {"type": "integer", "minimum": 0},
                    "description": "How many outputs the job has recorded.",
                },
                "X-Next-Offset": {
                    "schema": {"type": "integer", "minimum": 0},
                    "description": "Present while outputs remain: the ``offset`` of the next page.",
                },
            },
        }
    },
)
def list_outputs(
    session: DbSession,
    job_id: str,
    limit: int = Query(OUTPUT_PAGE, ge=1, le=OUTPUT_PAGE, description="Outputs per page (default 1000)."),
    offset: int = Query(0, ge=0, le=1_000_000, description="The index to start from, to page."),
    p: Principal = Depends(readers),
    settings: Settings = Depends(get_settings_dep),
) -> Response:
    """The job's outputs in index order, ``limit`` at a time from index ``offset``
    (``X-Total-Count``; ``X-Next-Offset`` while more remain). Researchers see a name only when
    it passes the screening of the datasets' policy (never under ``status_only``) and sizes
    rounded up (``tre.jobs.shown_size``: a size is a number the job chose); staff see every
    name and exact sizes.

    A cohort job records tens of thousands of outputs: one answer is bounded (about 150 KB),
    read by one indexed query, and the names are screened once per job (`outputnames`)."""
    job = service.get_visible_job(session, p, job_id)
    record_read(session, actor=p.user_id, action="job.outputs_read", project_id=job.project_id, job_id=job.id)
    view = outputnames.name_view(session, settings, p, job)
    total, _ = outputnames.output_stamp(session, job.id)
    rows = outputnames.output_page(session, settings.keys_dir, job.id, offset, limit)
    exact = sees_raw_output_names(session, p, job.project_id)
    # Not the real hash to a researcher: a keyed handle (tre.jobs.output_handles).
    hashes = outputnames.hash_view(session, settings.keys_dir, p, job.project_id, job.id)
    page = [
        JobOutputOut(
            index=offset + i,
            path=o.path if view.shows(o.path) else None,
            name_withheld=not view.shows(o.path),
            size=shown_size(o.size, exact=exact),
            size_rounded=not exact,
            sha256=hashes.shown(o.sha256),
            sha256_keyed=hashes.keyed,
        )
        for i, o in enumerate(rows)
    ]
    headers = {"X-Total-Count": str(total)}
    if offset + len(rows) < total:
        headers["X-Next-Offset"] = str(offset + len(rows))
    return Response(content=_OUTPUT_LIST.dump_json(page), media_type="application/json", headers=headers)


@router.post("/{job_id}/cancel", response_model=JobViewOut)
def cancel_job(
    session: DbSession,
    job_id: str,
    p: Principal = Depends(submitters),
) -> JobViewOut:
    return _job_view(session, p, service.cancel(session, p, job_id))


def _job_view(session: Session, p: Principal, job: Job, end_pending: bool = False) -> JobViewOut:
    """``job`` as the caller sees it: its exit code, reason and times coarsened for a
    researcher (`tre.jobs.shown_run`: numbers the job chose)."""
    view = JobViewOut.model_validate(job)
    exact = sees_exact_run(session, p, job.project_id)
    return view.model_copy(
        update={**shown_job_fields(view.model_dump(), exact=exact), "end_pending": end_pending}
    )
