"""GA4GH TES 1.1 at ``/ga4gh/tes/v1``: the routes, with tre's tokens, roles and airlock.

The TES logic lives in `tre.tes`; this module is the composition root that hands it the
airlock's researcher log screening and output-name screening (docs/tes.md).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy.orm import Session

from egress_review import outputnames
from egress_review.joblog import researcher_log
from tre import __version__
from tre.access import sees_raw_output_names
from tre.api.deps import DbSession, any_role, get_settings_dep, require_roles
from tre.auth.principal import Principal
from tre.config import Settings
from tre.jobs.shown_size import shown_size
from tre.store.models import Job
from tre.tes import service
from tre.tes.models import (
    ServiceOrganization,
    TesCancelTaskResponse,
    TesCreateTaskResponse,
    TesListTasksResponse,
    TesServiceInfo,
    TesServiceType,
    TesState,
    TesTask,
    TesTaskView,
    View,
)
from tre.tes.submission import BACKEND_PARAMETERS
from tre.tes.views import AIRLOCK_NOTICE, ShownOutput, egress_states, task_view

PREFIX = "/ga4gh/tes/v1"
router = APIRouter(prefix=PREFIX, tags=["GA4GH TES"])
submitters = require_roles("researcher", "admin")
readers = any_role()
MAX_FULL_PAGE = 64
# A job records at most 100,000 outputs (tre.executors.fstree.MAX_ENTRIES): read in index
# order by SQL, without loading the job's relationship and sorting it in Python.
MAX_LISTED_OUTPUTS = 100_000


def shown_outputs(session: Session, settings: Settings, principal: Principal, job: Job) -> list[ShownOutput]:
    view = outputnames.name_view(session, settings, principal, job)
    exact = sees_raw_output_names(session, principal, job.project_id)  # else rounded: tre.jobs.shown_size
    return [
        ShownOutput(index=i, path=o.path, name_shown=view.shows(o.path), size=shown_size(o.size, exact=exact))
        for i, o in enumerate(
            outputnames.output_page(session, settings.keys_dir, job.id, 0, MAX_LISTED_OUTPUTS)
        )
    ]


@router.get("/service-info", response_model=TesServiceInfo, response_model_exclude_none=True)
def service_info(request: Request, p: Principal = Depends(readers)) -> TesServiceInfo:
    """Who this TES is; ``storage`` and ``description`` say that outputs stay in the airlock."""
    return TesServiceInfo(
        id="org.tre.tes",
        name="tre",
        type=TesServiceType(group="org.ga4gh", artifact="tes", version="1.1.0"),
        description=(
            "A trusted research environment's TES: tasks run sandboxed next to approved datasets "
            "(tre://dataset/<id> at /data), with no network; inline inputs become read-only code "
            f"at /code; {AIRLOCK_NOTICE}."
        ),
        organization=ServiceOrganization(name="tre", url=str(request.base_url).rstrip("/")),
        documentationUrl=str(request.base_url).rstrip("/") + "/docs",
        environment="tre",
        version=__version__,
        storage=["tre://dataset/"],
        tesResources_backend_parameters=list(BACKEND_PARAMETERS),
    )


@router.post("/tasks", response_model=TesCreateTaskResponse)
def create_task(
    session: DbSession,
    body: TesTask,
    p: Principal = Depends(submitters),
    settings: Settings = Depends(get_settings_dep),
) -> TesCreateTaskResponse:
    job = service.create_task(session, settings, p, body)
    return TesCreateTaskResponse(id=job.id)


@router.get("/tasks", response_model=TesListTasksResponse, response_model_exclude_none=True)
def list_tasks(
    session: DbSession,
    name_prefix: str | None = Query(None, max_length=256),
    state: TesState | None = None,
    tag_key: list[Annotated[str, Query(max_length=1024)]] = Query(default=[], max_length=64),
    tag_value: list[Annotated[str, Query(max_length=1024)]] = Query(default=[], max_length=64),
    page_size: int = Query(service.DEFAULT_PAGE_SIZE, ge=1, le=service.MAX_PAGE_SIZE),
    page_token: str | None = Query(None, max_length=512),
    view: View = View.MINIMAL,
    p: Principal = Depends(readers),
    settings: Settings = Depends(get_settings_dep),
) -> TesListTasksResponse:
    """Newest first. ``tag_key[i]`` pairs with ``tag_value[i]``; a missing or empty value
    matches any task carrying the key."""
    pairs = tuple((k, tag_value[i] if i < len(tag_value) else "") for i, k in enumerate(tag_key))
    flt = service.TaskFilter(name_prefix=name_prefix, state=state, tags=pairs)
    if view == View.FULL:
        # Each FULL task screens its log: fewer per page (TES lets a server return fewer).
        page_size = min(page_size, MAX_FULL_PAGE)
    page = service.list_tasks(session, p, flt, page_size, page_token)
    egress = egress_states(session, [job.id for job, _ in page.rows]) if view != View.MINIMAL else None
    return TesListTasksResponse(
        tasks=[
            task_view(session, settings, p, job, row, view, researcher_log, shown_outputs, egress)
            for job, row in page.rows
        ],
        next_page_token=page.next_page_token,
    )


@router.get("/tasks/{task_id}", response_model=TesTaskView, response_model_exclude_none=True)
def get_task(
    session: DbSession,
    task_id: str,
    view: View = View.MINIMAL,
    p: Principal = Depends(readers),
    settings: Settings = Depends(get_settings_dep),
) -> TesTaskView:
    job, row = service.get_task(session, p, task_id)
    return task_view(session, settings, p, job, row, view, researcher_log, shown_outputs)


@router.post("/tasks/{task_id}:cancel", response_model=TesCancelTaskResponse)
def cancel_task(
    session: DbSession,
    task_id: str,
    p: Principal = Depends(submitters),
) -> TesCancelTaskResponse:
    service.cancel_task(session, p, task_id)
    return TesCancelTaskResponse()
